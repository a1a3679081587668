// Command httpecho is a tiny static HTTP server that tests run as a Nomad
// exec task: /healthz answers 200, / answers with the allocation's id.
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
	"time"
)

func main() {
	addr := "127.0.0.1:" + os.Getenv("NOMAD_PORT_http")
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintf(w, "hello from %s as uid %d\n", os.Getenv("NOMAD_ALLOC_ID"), os.Getuid())
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Printf("listening on %s", addr)
	log.Fatal(srv.ListenAndServe())
}
