// Command httpserver is an http-runtime handler: a plain HTTP server on $PORT.
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"
)

func main() {
	mux := http.NewServeMux()
	mux.HandleFunc("/hello/{name}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Greeting", "yes")
		_, _ = fmt.Fprintf(w, "hello %s, q=%s, method=%s", r.PathValue("name"), r.URL.Query().Get("q"), r.Method)
	})
	mux.HandleFunc("/sleep", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		time.Sleep(time.Duration(n) * time.Millisecond)
		_, _ = fmt.Fprintf(w, "slept %d", n)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"raw":%q}`, body)
	})
	srv := &http.Server{Addr: "127.0.0.1:" + os.Getenv("PORT"), Handler: mux, ReadHeaderTimeout: time.Second}
	_ = srv.ListenAndServe()
}
