package agents

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"
)

// Tokens are the secrets that bootstrap an ACL-enabled agent pair. They
// live in the state directory (mode 0600) and never in the repository.
type Tokens struct {
	// ConsulManagement is Consul's initial management token.
	ConsulManagement string `json:"consul_management"`
	// ConsulAgent is the Consul agent's own token (its node registration).
	ConsulAgent string `json:"consul_agent"`
	// NomadAgentConsul is the token Nomad's agent uses with Consul, to
	// register and deregister task services.
	NomadAgentConsul string `json:"nomad_agent_consul"`
	// NomadManagement is Nomad's bootstrap (management) token.
	NomadManagement string `json:"nomad_management"`
}

// tokensFile is where LoadOrCreateTokens keeps them.
const tokensFile = "acl-tokens.json" //nolint:gosec // a file name, not a credential

// LoadTokens reads the tokens kept in dir; ok is false when there are none
// (the agents there run without ACLs, or never ran).
func LoadTokens(dir string) (t Tokens, ok bool, err error) {
	path := filepath.Join(dir, tokensFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return t, false, nil
	}
	if err != nil {
		return t, false, err
	}
	if err := json.Unmarshal(data, &t); err != nil {
		return t, false, fmt.Errorf("%s is not valid: %w; remove it together with the agents' state", path, err)
	}
	return t, true, nil
}

// LoadOrCreateTokens reads the tokens kept in dir, or creates new random
// ones there: a restarted stack keeps the tokens its state was made with.
func LoadOrCreateTokens(dir string) (Tokens, error) {
	t, ok, err := LoadTokens(dir)
	if ok || err != nil {
		return t, err
	}
	t = Tokens{ConsulManagement: NewSecretID(), ConsulAgent: NewSecretID(), NomadAgentConsul: NewSecretID(), NomadManagement: NewSecretID()}
	data, _ := json.MarshalIndent(t, "", "  ")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return t, err
	}
	return t, os.WriteFile(filepath.Join(dir, tokensFile), data, 0o600)
}

// NewSecretID returns a random UUID, the form Consul and Nomad give secrets.
func NewSecretID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// consulAgentPolicy is the Consul agent's own; the Nomad agents' Consul
// policy ships with Nimbus's (examples/platform/policies/consul).
const consulAgentPolicy = `# The Consul agent registers its own node.
node_prefix "" {
  policy = "write"
}
service_prefix "" {
  policy = "read"
}
`

// SetUpConsulACL creates the agents' Consul tokens with the secrets the
// configuration names. It is idempotent: tokens that exist are kept.
func SetUpConsulACL(ctx context.Context, c *consulapi.Client, t Tokens) error {
	nomadAgentPolicy, err := PolicyFile("examples/platform/policies/consul/nomad-agent.hcl")
	if err != nil {
		return err
	}
	for _, tok := range []struct{ name, secret, rules string }{
		{"consul-agent", t.ConsulAgent, consulAgentPolicy},
		{"nomad-agent", t.NomadAgentConsul, nomadAgentPolicy},
	} {
		if err := EnsureConsulToken(ctx, c, tok.name, tok.secret, tok.rules); err != nil {
			return err
		}
	}
	return nil
}

// EnsureConsulToken makes a policy called name with rules (updating it if
// it exists) and a token with the given secret that carries only it.
func EnsureConsulToken(ctx context.Context, c *consulapi.Client, name, secret, rules string) error {
	q := (&consulapi.QueryOptions{}).WithContext(ctx)
	w := (&consulapi.WriteOptions{}).WithContext(ctx)
	// Consul answers a read of a missing policy with "ACL not found", like
	// a refusal; listing tells them apart.
	policies, _, err := c.ACL().PolicyList(q)
	if err != nil {
		return fmt.Errorf("listing Consul policies: %w", err)
	}
	var policy *consulapi.ACLPolicy
	for _, p := range policies {
		if p.Name == name {
			if policy, _, err = c.ACL().PolicyRead(p.ID, q); err != nil {
				return fmt.Errorf("reading Consul policy %s: %w", name, err)
			}
		}
	}
	if policy == nil {
		if policy, _, err = c.ACL().PolicyCreate(&consulapi.ACLPolicy{Name: name, Rules: rules}, w); err != nil {
			return fmt.Errorf("creating Consul policy %s: %w", name, err)
		}
	} else if policy.Rules != rules {
		policy.Rules = rules
		if policy, _, err = c.ACL().PolicyUpdate(policy, w); err != nil {
			return fmt.Errorf("updating Consul policy %s: %w", name, err)
		}
	}
	tokens, _, err := c.ACL().TokenList(q)
	if err != nil {
		return fmt.Errorf("listing Consul tokens: %w", err)
	}
	for _, tok := range tokens {
		if tok.SecretID == secret {
			return nil
		}
	}
	_, _, err = c.ACL().TokenCreate(&consulapi.ACLToken{
		SecretID:    secret,
		Description: name,
		Policies:    []*consulapi.ACLTokenPolicyLink{{ID: policy.ID}},
	}, w)
	if err != nil {
		return fmt.Errorf("creating Consul token %s: %w", name, err)
	}
	return nil
}

// BootstrapNomadACL bootstraps Nomad's ACL system with secret as the
// management token, once the agent has a leader. Bootstrapping an agent
// that already was, with the same secret, is not an error.
func BootstrapNomadACL(ctx context.Context, p *Process, c *nomadapi.Client, secret string) error {
	return Poll(ctx, p, "Nomad's ACL bootstrap", func() (bool, error) {
		_, _, err := c.ACLTokens().BootstrapOpts(secret, nil)
		if err == nil {
			return true, nil
		}
		if strings.Contains(err.Error(), "bootstrap already done") {
			self, _, selfErr := c.ACLTokens().Self(&nomadapi.QueryOptions{AuthToken: secret})
			if selfErr == nil && self.Type == "management" {
				return true, nil
			}
			return false, fmt.Errorf("Nomad's ACLs were bootstrapped with another token than the one in the state directory: %w", err)
		}
		return false, err
	})
}

// PolicyFile reads a policy that Nimbus ships in examples/platform/policies,
// by its path in the repository. The harness applies exactly these files,
// so the tests prove them.
func PolicyFile(file string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	data, err := os.ReadFile(filepath.Join(root, file))
	return string(data), err
}
