// Package clients builds the HTTP, Nomad and Consul clients that both the
// provider and the runtime use. Every client goes through go-retryablehttp so
// that transient failures (connection errors, 429, 5xx) are retried with
// backoff and nothing else is.
package clients
