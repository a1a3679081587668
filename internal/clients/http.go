package clients

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"os"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/httpclient"
)

// RetryPolicy bounds how hard a client tries before it reports an error:
// httpclient's, the one policy of every retrying client.
type RetryPolicy = httpclient.RetryPolicy

// DefaultRetryPolicy retries 3 times over roughly two seconds
// (httpclient.DefaultRetryPolicy).
var DefaultRetryPolicy = httpclient.DefaultRetryPolicy

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

// NewHTTPClient returns an *http.Client whose transport retries connection
// errors, 429 and 5xx (never other 4xx) with exponential backoff. Retries are
// logged at debug level through logger, which may be nil. It is
// httpclient.New, which builds every client of the provider and the runtime.
func NewHTTPClient(policy RetryPolicy, tlsCfg *tls.Config, logger *slog.Logger) *http.Client {
	return httpclient.New(policy, tlsCfg, logger)
}
