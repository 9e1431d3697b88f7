// Command backend is the tiny HTTP server bench/router.sh puts behind each
// proxy: it reads the request body, if any, and answers with a fixed
// 64-byte body naming itself, or, for the path /big, with 1 MiB. It listens
// on $PORT (as sluice's local runtime sets it) or on -addr.
package main

import (
	"flag"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
)

// bodySize is the size of every response body, as in the figures;
// bigSize the size of the responses to /big.
const (
	bodySize = 64
	bigSize  = 1 << 20
)

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
	big := []byte(padTo(*name+" ", bigSize-1) + "\n")
	bigLen := strconv.Itoa(len(big))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if r.URL.Path == "/big" {
			w.Header().Set("Content-Length", bigLen)
			w.Write(big)
			return
		}
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
