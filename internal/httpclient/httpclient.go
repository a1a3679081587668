// Package httpclient builds every HTTP client of the provider and the
// runtime: the one place that makes transports, sets timeouts and decides
// what is retried.
//
//   - New returns a client that retries connection errors, 429 and 5xx
//     (go-retryablehttp), waiting a backoff.Policy's delays between
//     attempts: for the Nomad and Consul APIs, the artifact store, a
//     function's package.
//   - NewPlain returns a client that never retries, for requests that must
//     not be sent twice or whose failure the caller handles: an invocation
//     proxied to an instance or to a handler's own server.
//
// It is kept light on purpose: nimbus-host links it, and internal/clients,
// which adds the Nomad and Consul APIs, builds its clients with it.
package httpclient

import (
	"cmp"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/hashicorp/go-retryablehttp"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/backoff"
)

// RetryPolicy bounds how hard a client tries before it reports an error.
// The defaults keep an unreachable address to a few seconds, not a hang.
type RetryPolicy struct {
	MaxRetries int
	// WaitMin and WaitMax are the backoff.Policy between attempts (its
	// Initial and Max); a 429 or 503 with Retry-After waits as asked.
	WaitMin, WaitMax time.Duration
	DialTimeout      time.Duration
	// Timeout bounds each attempt, reading the body included. Zero sets no
	// bound of the client's own: only for callers whose every request
	// carries a context deadline, or whose requests last by design as long
	// as the server holds them (a scheduled invocation runs as long as its
	// function's timeout).
	Timeout time.Duration
	// CheckRetry decides which failures to retry; nil retries connection
	// errors, 429 and 5xx (retryablehttp's default).
	CheckRetry retryablehttp.CheckRetry
}

// DefaultRetryPolicy retries 3 times over roughly two seconds. Its Timeout
// outlasts the longest blocking query Consul or Nomad holds (10 minutes,
// plus Consul's jitter of a sixteenth) and ends a connection that hangs.
var DefaultRetryPolicy = RetryPolicy{
	MaxRetries:  3,
	WaitMin:     200 * time.Millisecond,
	WaitMax:     1500 * time.Millisecond,
	DialTimeout: 3 * time.Second,
	Timeout:     11 * time.Minute,
}

// New returns an *http.Client whose transport retries connection errors,
// 429 and 5xx (never other 4xx) with exponential backoff. Retries are
// logged at debug level through logger, which may be nil. A nil tlsCfg
// shares the process's pool of connections for policy.DialTimeout.
func New(policy RetryPolicy, tlsCfg *tls.Config, logger *slog.Logger) *http.Client {
	rc := retryablehttp.NewClient()
	rc.HTTPClient = &http.Client{Transport: pooledTransport(policy.DialTimeout, tlsCfg), Timeout: policy.Timeout}
	rc.RetryMax = policy.MaxRetries
	rc.RetryWaitMin = policy.WaitMin
	rc.RetryWaitMax = policy.WaitMax
	rc.CheckRetry = retryablehttp.DefaultRetryPolicy
	if policy.CheckRetry != nil {
		rc.CheckRetry = policy.CheckRetry
	}
	rc.Backoff = retryWait
	// Return the last response rather than a generic "giving up" error, so
	// callers (nomad/api, consul/api, a package's fetch) can decode the
	// server's own message.
	rc.ErrorHandler = retryablehttp.PassthroughErrorHandler
	if logger == nil {
		rc.Logger = nil
	} else {
		rc.Logger = debugLogger{logger}
	}
	return rc.StandardClient()
}

// retryWait is the wait before retry attempt+1: what a 429 or 503 asks for
// in Retry-After (as go-retryablehttp reads it), else backoff.Policy
// {lo, hi}'s delay, the same doubling as go-retryablehttp's own.
func retryWait(lo, hi time.Duration, attempt int, resp *http.Response) time.Duration {
	if resp != nil && resp.Header.Get("Retry-After") != "" {
		return retryablehttp.DefaultBackoff(lo, hi, attempt, resp)
	}
	return backoff.Policy{Initial: lo, Max: hi}.Delay(attempt)
}

// Plain describes a client that does not retry.
type Plain struct {
	// Timeout bounds each request, reading the body included. Zero is
	// only for callers that give every request a context deadline; say so
	// where such a client is built.
	Timeout time.Duration
	// DialTimeout bounds connecting; zero leaves it to Timeout or the
	// request's deadline.
	DialTimeout time.Duration
	// MaxIdleConnsPerHost is the pool of idle connections kept for each
	// address (Go's default of 2 when zero).
	MaxIdleConnsPerHost int
	// IdleConnTimeout closes connections idle that long (90 s when zero).
	IdleConnTimeout time.Duration
	// DisableCompression sends bodies as they are and asks for no gzip:
	// for proxies that pass bodies through.
	DisableCompression bool
}

// NewPlain returns a client that sends each request once. It connects
// directly, never through a proxy named in the environment: its
// addresses are instances and local processes.
func NewPlain(p Plain) *http.Client {
	return &http.Client{
		Timeout: p.Timeout,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: p.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost: p.MaxIdleConnsPerHost,
			IdleConnTimeout:     cmp.Or(p.IdleConnTimeout, 90*time.Second),
			DisableCompression:  p.DisableCompression,
			TLSHandshakeTimeout: 10 * time.Second,
			// No ExpectContinueTimeout: a proxied request's own
			// "Expect: 100-continue" must not hold its body back for a
			// second from a server that never answers 100.
		},
	}
}

// sharedTransports pool the connections of every retrying client without
// TLS that one process makes, by dial timeout. A provider configured again
// and again in one process, as acceptance tests run it, would otherwise
// keep a pool of idle connections per configuration, and reach the
// agents' limits on connections per client address (Nomad's is 100).
var sharedTransports sync.Map // time.Duration → *http.Transport

func pooledTransport(dialTimeout time.Duration, tlsCfg *tls.Config) *http.Transport {
	if tlsCfg == nil {
		if t, ok := sharedTransports.Load(dialTimeout); ok {
			return t.(*http.Transport)
		}
	}
	transport := cleanhttp.DefaultPooledTransport()
	transport.DialContext = (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext
	transport.TLSClientConfig = tlsCfg
	if tlsCfg != nil {
		return transport
	}
	t, _ := sharedTransports.LoadOrStore(dialTimeout, transport)
	return t.(*http.Transport)
}

// debugLogger demotes retryablehttp's chatter to debug: a retried request is
// not an error until the retries run out, and then the caller reports it.
type debugLogger struct{ l *slog.Logger }

func (d debugLogger) Error(msg string, kv ...any) { d.l.Debug(msg, kv...) }
func (d debugLogger) Info(msg string, kv ...any)  { d.l.Debug(msg, kv...) }
func (d debugLogger) Debug(msg string, kv ...any) { d.l.Debug(msg, kv...) }
func (d debugLogger) Warn(msg string, kv ...any)  { d.l.Debug(msg, kv...) }
