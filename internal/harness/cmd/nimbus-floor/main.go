// Command nimbus-floor is the benchmarks' floor: a minimal static HTTP
// server on $PORT, on every address of its network namespace, with nothing
// of Nimbus in it. nimbus-bench runs it as a Nomad job to measure what
// Nomad and the network mode cost before any Nimbus code runs.
package main

import (
	"net/http"
	"os"
	"time"
)

func main() {
	srv := &http.Server{
		Addr:              ":" + os.Getenv("PORT"),
		ReadHeaderTimeout: time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte("ok\n"))
		}),
	}
	if err := srv.ListenAndServe(); err != nil {
		os.Exit(1)
	}
}
