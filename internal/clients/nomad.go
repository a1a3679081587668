package clients

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"

	nomadapi "github.com/hashicorp/nomad/api"
)

// DefaultNomadAddress is Nomad's own default.
const DefaultNomadAddress = "http://127.0.0.1:4646"

// NomadConfig is how to reach Nomad. Empty fields fall back to the
// environment variables that the Nomad CLI reads.
type NomadConfig struct {
	Address   string
	Token     string
	Region    string
	Namespace string
	TLS       TLSFiles
	// SkipVerifySet records that SkipVerify was configured explicitly, so an
	// explicit false is not overridden by NOMAD_SKIP_VERIFY.
	SkipVerifySet bool
	// Principal names the policy that refusals point to.
	Principal Principal
}

var (
	nomadAttrTLS = tlsNames{CACert: "nomad.ca_file", ClientCert: "nomad.cert_file", ClientKey: "nomad.key_file"}
	nomadEnvTLS  = tlsNames{CACert: "NOMAD_CACERT", ClientCert: "NOMAD_CLIENT_CERT", ClientKey: "NOMAD_CLIENT_KEY"}
)

// Resolve fills unset fields from the environment and defaults, and checks
// the result. Errors are *ConfigError.
func (c NomadConfig) Resolve(getenv Getenv) (NomadConfig, error) {
	out := c
	out.Address = firstNonEmpty(c.Address, getenv, "NOMAD_ADDR")
	if out.Address == "" {
		out.Address = DefaultNomadAddress
	}
	out.Token = firstNonEmpty(c.Token, getenv, "NOMAD_TOKEN")
	out.Region = firstNonEmpty(c.Region, getenv, "NOMAD_REGION")
	out.Namespace = firstNonEmpty(c.Namespace, getenv, "NOMAD_NAMESPACE")
	out.TLS.CACert = firstNonEmpty(c.TLS.CACert, getenv, "NOMAD_CACERT")
	out.TLS.ClientCert = firstNonEmpty(c.TLS.ClientCert, getenv, "NOMAD_CLIENT_CERT")
	out.TLS.ClientKey = firstNonEmpty(c.TLS.ClientKey, getenv, "NOMAD_CLIENT_KEY")
	out.TLS.ServerName = firstNonEmpty(c.TLS.ServerName, getenv, "NOMAD_TLS_SERVER_NAME")
	if !c.SkipVerifySet {
		v, ok, err := envBool(getenv, "NOMAD_SKIP_VERIFY", "nomad.skip_verify")
		if err != nil {
			return out, err
		}
		if ok {
			out.TLS.SkipVerify, out.SkipVerifySet = v, true
		}
	}

	u, err := parseHTTPURL(out.Address, "nomad.address", "NOMAD_ADDR", DefaultNomadAddress)
	if err != nil {
		return out, err
	}
	out.Address = strings.TrimRight(u.String(), "/")
	if strings.ContainsAny(out.Token, " \t\r\n") {
		return out, &ConfigError{Attribute: "nomad.token", EnvVar: "NOMAD_TOKEN", Problem: "the token contains white space; check for a stray newline"}
	}
	return out, nil
}

// NewNomad builds a Nomad API client from a resolved config.
func NewNomad(c NomadConfig, policy RetryPolicy, logger *slog.Logger) (*nomadapi.Client, error) {
	tlsCfg, err := c.TLS.tlsConfig(nomadAttrTLS, nomadEnvTLS)
	if err != nil {
		return nil, err
	}
	// TLS is configured on our own transport: nomad/api only knows how to
	// configure its default one, and would ignore TLSConfig here.
	return nomadapi.NewClient(&nomadapi.Config{
		Address:    c.Address,
		SecretID:   c.Token,
		Region:     c.Region,
		Namespace:  c.Namespace,
		HttpClient: explainDenied(NewHTTPClient(policy, tlsCfg, logger), "Nomad", c.Principal),
	})
}

// NomadNotFound reports whether Nomad answered 404 Not Found. Only the
// status code counts: an error that merely mentions 404 (a connection error
// to an address holding "404", say) is not a missing object.
func NomadNotFound(err error) bool {
	// nomad/api returns UnexpectedResponseError as a value; accept a
	// pointer too in case a caller or a later version wraps one.
	var v nomadapi.UnexpectedResponseError
	if errors.As(err, &v) {
		return v.StatusCode() == http.StatusNotFound
	}
	var p *nomadapi.UnexpectedResponseError
	return errors.As(err, &p) && p != nil && p.StatusCode() == http.StatusNotFound
}
