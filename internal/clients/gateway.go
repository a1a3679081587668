package clients

import (
	"strings"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/accesskey"
)

// GatewayConfig is how to reach the Nimbus gateway.
type GatewayConfig struct {
	URL string
	// Token is the provider's key at the gateway (a bearer token).
	Token string
}

// Resolve fills the URL from NIMBUS_GATEWAY_URL when unset. An empty URL is
// allowed here; resources that need the gateway report it themselves.
func (c GatewayConfig) Resolve(getenv Getenv) (GatewayConfig, error) {
	out := GatewayConfig{URL: firstNonEmpty(c.URL, getenv, "NIMBUS_GATEWAY_URL"), Token: firstNonEmpty(c.Token, getenv, "NIMBUS_GATEWAY_TOKEN")}
	if out.Token != "" {
		if _, _, err := accesskey.ParseToken(out.Token); err != nil {
			return out, &ConfigError{Attribute: "gateway_token", EnvVar: "NIMBUS_GATEWAY_TOKEN", Problem: err.Error()}
		}
	}
	if out.URL == "" {
		return out, nil
	}
	u, err := parseHTTPURL(out.URL, "gateway_url", "NIMBUS_GATEWAY_URL", "http://127.0.0.1:8080")
	if err != nil {
		return out, err
	}
	out.URL = strings.TrimRight(u.String(), "/")
	return out, nil
}
