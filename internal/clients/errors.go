package clients

import "fmt"

// ConfigError is an invalid setting. It names the provider attribute and the
// environment variable that set it, so the user knows where to fix it.
type ConfigError struct {
	Attribute string // e.g. "nomad.address"
	EnvVar    string // e.g. "NOMAD_ADDR"; empty when no variable applies
	Problem   string
}

func (e *ConfigError) Error() string {
	where := fmt.Sprintf("set %s in the provider configuration", e.Attribute)
	if e.EnvVar != "" {
		where += fmt.Sprintf(" or the %s environment variable", e.EnvVar)
	}
	return fmt.Sprintf("invalid %s: %s; %s", e.Attribute, e.Problem, where)
}
