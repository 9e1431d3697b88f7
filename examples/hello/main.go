// Command hello is the example service of the sluice README: it greets on
// $PORT and reports healthy on /healthz (unless BROKEN is set, to show a
// failing in-place redeploy).
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
)

func main() {
	greeting := os.Getenv("GREETING")
	if greeting == "" {
		greeting = "hello"
	}
	version := os.Getenv("SLUICE_VERSION")
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s from %s\n", greeting, version)
	})
	http.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if os.Getenv("BROKEN") != "" {
			http.Error(w, "broken on purpose", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	addr := "127.0.0.1:" + os.Getenv("PORT")
	log.Printf("hello %s listening on %s", version, addr)
	log.Fatal(http.ListenAndServe(addr, nil))
}
