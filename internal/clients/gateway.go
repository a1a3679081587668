package clients

import "strings"

// GatewayConfig is how to reach the Nimbus gateway.
type GatewayConfig struct {
	URL string
}

// Resolve fills the URL from NIMBUS_GATEWAY_URL when unset. An empty URL is
// allowed here; resources that need the gateway report it themselves.
func (c GatewayConfig) Resolve(getenv Getenv) (GatewayConfig, error) {
	out := GatewayConfig{URL: firstNonEmpty(c.URL, getenv, "NIMBUS_GATEWAY_URL")}
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
