package clients

import (
	"log/slog"
	"strings"

	consulapi "github.com/hashicorp/consul/api"
)

// DefaultConsulAddress is Consul's own default.
const DefaultConsulAddress = "http://127.0.0.1:8500"

// ConsulConfig is how to reach Consul. Empty fields fall back to the
// environment variables that the Consul CLI reads.
type ConsulConfig struct {
	Address    string
	Token      string
	Datacenter string
	TLS        TLSFiles
	// SkipVerifySet records that SkipVerify was configured explicitly.
	SkipVerifySet bool
	// Principal names the policy that refusals point to.
	Principal Principal
}

var (
	consulAttrTLS = tlsNames{CACert: "consul.ca_file", ClientCert: "consul.cert_file", ClientKey: "consul.key_file"}
	consulEnvTLS  = tlsNames{CACert: "CONSUL_CACERT", ClientCert: "CONSUL_CLIENT_CERT", ClientKey: "CONSUL_CLIENT_KEY"}
)

// Resolve fills unset fields from the environment and defaults, and checks
// the result. Consul's convention of a bare host:port (with CONSUL_HTTP_SSL
// choosing https) is accepted. Errors are *ConfigError.
func (c ConsulConfig) Resolve(getenv Getenv) (ConsulConfig, error) {
	out := c
	out.Address = firstNonEmpty(c.Address, getenv, "CONSUL_HTTP_ADDR")
	out.Token = firstNonEmpty(c.Token, getenv, "CONSUL_HTTP_TOKEN")
	out.TLS.CACert = firstNonEmpty(c.TLS.CACert, getenv, "CONSUL_CACERT")
	out.TLS.ClientCert = firstNonEmpty(c.TLS.ClientCert, getenv, "CONSUL_CLIENT_CERT")
	out.TLS.ClientKey = firstNonEmpty(c.TLS.ClientKey, getenv, "CONSUL_CLIENT_KEY")
	out.TLS.ServerName = firstNonEmpty(c.TLS.ServerName, getenv, "CONSUL_TLS_SERVER_NAME")
	if !c.SkipVerifySet {
		// CONSUL_HTTP_SSL_VERIFY=false means skip verification.
		v, ok, err := envBool(getenv, "CONSUL_HTTP_SSL_VERIFY", "consul.skip_verify")
		if err != nil {
			return out, err
		}
		if ok {
			out.TLS.SkipVerify, out.SkipVerifySet = !v, true
		}
	}

	switch {
	case out.Address == "":
		out.Address = DefaultConsulAddress
	case !strings.Contains(out.Address, "://"):
		useTLS, _, err := envBool(getenv, "CONSUL_HTTP_SSL", "consul.address")
		if err != nil {
			return out, err
		}
		scheme := "http://"
		if useTLS {
			scheme = "https://"
		}
		out.Address = scheme + out.Address
	}
	u, err := parseHTTPURL(out.Address, "consul.address", "CONSUL_HTTP_ADDR", DefaultConsulAddress)
	if err != nil {
		return out, err
	}
	out.Address = strings.TrimRight(u.String(), "/")
	if strings.ContainsAny(out.Token, " \t\r\n") {
		return out, &ConfigError{Attribute: "consul.token", EnvVar: "CONSUL_HTTP_TOKEN", Problem: "the token contains white space; check for a stray newline"}
	}
	return out, nil
}

// NewConsul builds a Consul API client from a resolved config.
func NewConsul(c ConsulConfig, policy RetryPolicy, logger *slog.Logger) (*consulapi.Client, error) {
	tlsCfg, err := c.TLS.tlsConfig(consulAttrTLS, consulEnvTLS)
	if err != nil {
		return nil, err
	}
	scheme, address, _ := strings.Cut(c.Address, "://")
	// consul/api ignores TLSConfig when HttpClient is set, so TLS lives on
	// our transport.
	return consulapi.NewClient(&consulapi.Config{
		Address:    address,
		Scheme:     scheme,
		Token:      c.Token,
		Datacenter: c.Datacenter,
		HttpClient: explainDenied(NewHTTPClient(policy, tlsCfg, logger), "Consul", c.Principal),
	})
}
