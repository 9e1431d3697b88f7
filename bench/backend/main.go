// Command backend is the tiny HTTP server bench/router.sh puts behind each
// proxy: it answers every request with a fixed 64-byte body naming itself.
// It listens on $PORT (as sluice's local runtime sets it) or on -addr.
package main

import (
	"flag"
	"log/slog"
	"net/http"
	"os"
	"strings"
)

// bodySize is the size of every response body, as in the figures.
const bodySize = 64

func main() {
	addr := flag.String("addr", "", "listen address; default 127.0.0.1:$PORT")
	name := flag.String("name", "", "name put at the start of every body; default $BACKEND_NAME, else $SLUICE_VERSION")
	flag.Parse()
	if *addr == "" {
		*addr = "127.0.0.1:" + os.Getenv("PORT")
	}
	if *name == "" {
		*name = os.Getenv("BACKEND_NAME")
	}
	if *name == "" {
		*name = os.Getenv("SLUICE_VERSION") // set by sluice's local runtime
	}
	body := []byte(padTo(*name+" ", bodySize-1) + "\n")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write(body)
	})
	if err := http.ListenAndServe(*addr, h); err != nil {
		slog.Error("serve", "addr", *addr, "err", err)
		os.Exit(1)
	}
}

func padTo(s string, n int) string {
	if len(s) >= n {
		return s[:n]
	}
	return s + strings.Repeat("x", n-len(s))
}
