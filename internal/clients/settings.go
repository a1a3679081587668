package clients

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Getenv reads an environment variable; os.Getenv in production, a map in tests.
type Getenv func(string) string

// firstNonEmpty returns the configured value, else the environment's.
func firstNonEmpty(configured string, getenv Getenv, env string) string {
	if configured != "" {
		return configured
	}
	return getenv(env)
}

// envBool parses an optional boolean environment variable.
func envBool(getenv Getenv, env, attr string) (bool, bool, error) {
	raw := strings.TrimSpace(getenv(env))
	if raw == "" {
		return false, false, nil
	}
	v, err := strconv.ParseBool(raw)
	if err != nil {
		return false, false, &ConfigError{Attribute: attr, EnvVar: env, Problem: fmt.Sprintf("%s=%q is not a boolean (use true or false)", env, raw)}
	}
	return v, true, nil
}

// parseHTTPURL checks that raw is an absolute http(s) URL with a host.
func parseHTTPURL(raw, attr, env, example string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, &ConfigError{Attribute: attr, EnvVar: env, Problem: fmt.Sprintf("%q is not an http:// or https:// URL with a host (for example %s)", raw, example)}
	}
	return u, nil
}
