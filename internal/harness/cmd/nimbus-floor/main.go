// Command nimbus-floor is the benchmarks' floor: a minimal static HTTP
// server on $PORT, on every address of its network namespace, with nothing
// of Nimbus in it. nimbus-bench runs it as a Nomad job to measure what
// Nomad and the network mode cost before any Nimbus code runs.
package main

import (
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"time"
)

// With UPSTREAM set to a URL it is instead a plain reverse proxy to it: the
// floor of adding one HTTP hop, which is what any gateway adds.
func main() {
	var handler http.Handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	if upstream := os.Getenv("UPSTREAM"); upstream != "" {
		u, err := url.Parse(upstream)
		if err != nil {
			os.Exit(2)
		}
		proxy := httputil.NewSingleHostReverseProxy(u)
		proxy.Transport = &http.Transport{MaxIdleConnsPerHost: 64}
		handler = proxy
	}
	srv := &http.Server{
		Addr:              os.Getenv("LISTEN") + ":" + os.Getenv("PORT"),
		ReadHeaderTimeout: time.Second,
		Handler:           handler,
	}
	if err := srv.ListenAndServe(); err != nil {
		os.Exit(1)
	}
}
