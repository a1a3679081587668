package clients

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/hashicorp/go-retryablehttp"
)

// RetryPolicy bounds how hard a client tries before it reports an error.
// The defaults keep an unreachable address to a few seconds, not a hang.
type RetryPolicy struct {
	MaxRetries  int
	WaitMin     time.Duration
	WaitMax     time.Duration
	DialTimeout time.Duration
	// CheckRetry decides which failures to retry; nil retries connection
	// errors, 429 and 5xx (retryablehttp's default).
	CheckRetry retryablehttp.CheckRetry
}

// DefaultRetryPolicy retries 3 times over roughly two seconds.
var DefaultRetryPolicy = RetryPolicy{
	MaxRetries:  3,
	WaitMin:     200 * time.Millisecond,
	WaitMax:     1500 * time.Millisecond,
	DialTimeout: 3 * time.Second,
}

// TLSFiles names the PEM files of a TLS client configuration.
type TLSFiles struct {
	CACert     string
	ClientCert string
	ClientKey  string
	ServerName string
	SkipVerify bool
}

func (f TLSFiles) empty() bool {
	return f.CACert == "" && f.ClientCert == "" && f.ClientKey == "" && f.ServerName == "" && !f.SkipVerify
}

// tlsConfig loads the files. attr and env name the settings in errors.
func (f TLSFiles) tlsConfig(attr, env tlsNames) (*tls.Config, error) {
	if f.empty() {
		return nil, nil
	}
	//nolint:gosec // InsecureSkipVerify is the user's explicit choice (skip_verify).
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         f.ServerName,
		InsecureSkipVerify: f.SkipVerify,
	}
	if f.CACert != "" {
		pem, err := os.ReadFile(f.CACert)
		if err != nil {
			return nil, &ConfigError{Attribute: attr.CACert, EnvVar: env.CACert, Problem: fmt.Sprintf("cannot read CA certificate: %v", err)}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &ConfigError{Attribute: attr.CACert, EnvVar: env.CACert, Problem: fmt.Sprintf("%s holds no PEM certificate", f.CACert)}
		}
		cfg.RootCAs = pool
	}
	switch {
	case f.ClientCert != "" && f.ClientKey == "":
		return nil, &ConfigError{Attribute: attr.ClientKey, EnvVar: env.ClientKey, Problem: "a client certificate is set but its key is not; set both or neither"}
	case f.ClientCert == "" && f.ClientKey != "":
		return nil, &ConfigError{Attribute: attr.ClientCert, EnvVar: env.ClientCert, Problem: "a client key is set but its certificate is not; set both or neither"}
	case f.ClientCert != "":
		pair, err := tls.LoadX509KeyPair(f.ClientCert, f.ClientKey)
		if err != nil {
			return nil, &ConfigError{Attribute: attr.ClientCert, EnvVar: env.ClientCert, Problem: fmt.Sprintf("cannot load the client certificate and key: %v", err)}
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// tlsNames are the attribute or environment variable names of TLSFiles' fields.
type tlsNames struct{ CACert, ClientCert, ClientKey string }

// sharedTransports pool the connections of every client without TLS that
// one process makes, by dial timeout. A provider configured again and
// again in one process, as acceptance tests run it, would otherwise keep a
// pool of idle connections per configuration, and reach the agents'
// limits on connections per client address (Nomad's is 100).
var sharedTransports sync.Map // time.Duration → *http.Transport

func transportFor(dialTimeout time.Duration, tlsCfg *tls.Config) *http.Transport {
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

// NewHTTPClient returns an *http.Client whose transport retries connection
// errors, 429 and 5xx (never other 4xx) with exponential backoff. Retries are
// logged at debug level through logger, which may be nil.
func NewHTTPClient(policy RetryPolicy, tlsCfg *tls.Config, logger *slog.Logger) *http.Client {
	transport := transportFor(policy.DialTimeout, tlsCfg)

	rc := retryablehttp.NewClient()
	rc.HTTPClient = &http.Client{Transport: transport}
	rc.RetryMax = policy.MaxRetries
	rc.RetryWaitMin = policy.WaitMin
	rc.RetryWaitMax = policy.WaitMax
	rc.CheckRetry = retryablehttp.DefaultRetryPolicy
	if policy.CheckRetry != nil {
		rc.CheckRetry = policy.CheckRetry
	}
	rc.Backoff = retryablehttp.DefaultBackoff
	// Return the last response rather than a generic "giving up" error, so
	// callers (nomad/api, consul/api) can decode the server's own message.
	rc.ErrorHandler = retryablehttp.PassthroughErrorHandler
	if logger == nil {
		rc.Logger = nil
	} else {
		rc.Logger = debugLogger{logger}
	}
	return rc.StandardClient()
}

// debugLogger demotes retryablehttp's chatter to debug: a retried request is
// not an error until the retries run out, and then the caller reports it.
type debugLogger struct{ l *slog.Logger }

func (d debugLogger) Error(msg string, kv ...any) { d.l.Debug(msg, kv...) }
func (d debugLogger) Info(msg string, kv ...any)  { d.l.Debug(msg, kv...) }
func (d debugLogger) Debug(msg string, kv ...any) { d.l.Debug(msg, kv...) }
func (d debugLogger) Warn(msg string, kv ...any)  { d.l.Debug(msg, kv...) }
