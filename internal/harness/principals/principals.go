// Package principals creates Nimbus's principals (the deployer and the
// gateway) on ACL-enabled agents, with exactly the policies that ship in
// examples/platform/policies, so every test and the local stack prove them.
package principals

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/clients"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/agents"
)

// Credentials are one principal's tokens.
type Credentials struct {
	NomadToken  string
	ConsulToken string
}

// Set holds the principals' credentials.
type Set struct {
	Deployer Credentials
	// Gateway's Nomad token is for a gateway run as a plain process; the
	// gateway job uses its workload identity instead (AttachGatewayToJob).
	Gateway Credentials
}

// Options adjust what the gateway may read.
type Options struct {
	// TriggerPrefixes are the KV prefixes that KV triggers watch; the
	// gateway gets read on each, in the policy nimbus-gateway-triggers.
	TriggerPrefixes []string
}

// Create makes the policies and a token per principal. nomad and consul
// must carry management tokens. Names and files come from the principals
// that the provider's and gateway's refusals point to (clients.DeployerNomad,
// ...), so the messages name exactly what was applied.
func Create(ctx context.Context, nomad *nomadapi.Client, consul *consulapi.Client, opts Options) (Set, error) {
	var s Set
	inNomad := func(name, rules string) (string, error) { return NomadToken(ctx, nomad, name, rules) }
	inConsul := func(name, rules string) (string, error) { return ConsulToken(ctx, consul, name, rules) }
	for _, t := range []struct {
		secret    *string
		principal clients.Principal
		token     func(name, rules string) (string, error)
		extra     string
	}{
		{&s.Deployer.NomadToken, clients.DeployerNomad, inNomad, ""},
		{&s.Gateway.NomadToken, clients.GatewayNomad, inNomad, ""},
		{&s.Deployer.ConsulToken, clients.DeployerConsul, inConsul, ""},
		{&s.Gateway.ConsulToken, clients.GatewayConsul, inConsul, TriggerRules(opts.TriggerPrefixes)},
	} {
		rules, err := agents.PolicyFile(t.principal.File)
		if err != nil {
			return s, err
		}
		if *t.secret, err = t.token(t.principal.Policy, rules+t.extra); err != nil {
			return s, err
		}
	}
	return s, nil
}

// TriggerRules grants read on each watched prefix and nothing more: the
// rules of the nimbus-gateway-triggers policy.
func TriggerRules(prefixes []string) string {
	var b strings.Builder
	for _, p := range prefixes {
		fmt.Fprintf(&b, "\nkey_prefix %s {\n  policy = \"read\"\n}\n", strconv.Quote(p))
	}
	return b.String()
}

// AttachGatewayToJob attaches the gateway's Nomad policy to the workload
// identity of the job jobID, so the gateway job needs no Nomad token.
func AttachGatewayToJob(ctx context.Context, nomad *nomadapi.Client, namespace, jobID string) error {
	rules, err := agents.PolicyFile(clients.GatewayNomad.File)
	if err != nil {
		return err
	}
	_, err = nomad.ACLPolicies().Upsert(&nomadapi.ACLPolicy{
		Name:        "nimbus-gateway-job",
		Description: "Nimbus gateway (workload identity of job " + jobID + ")",
		Rules:       rules,
		JobACL:      &nomadapi.JobACL{Namespace: namespace, JobID: jobID},
	}, (&nomadapi.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("attaching the gateway policy to job %s: %w", jobID, err)
	}
	return nil
}

// NomadToken makes (or updates) a policy with rules and returns a new
// client token carrying only it. Tests also use it for deliberately
// under-privileged tokens.
func NomadToken(ctx context.Context, nomad *nomadapi.Client, name, rules string) (string, error) {
	w := (&nomadapi.WriteOptions{}).WithContext(ctx)
	if _, err := nomad.ACLPolicies().Upsert(&nomadapi.ACLPolicy{Name: name, Rules: rules}, w); err != nil {
		return "", fmt.Errorf("Nomad policy %s: %w", name, err)
	}
	tok, _, err := nomad.ACLTokens().Create(&nomadapi.ACLToken{Name: name, Type: "client", Policies: []string{name}}, w)
	if err != nil {
		return "", fmt.Errorf("Nomad token %s: %w", name, err)
	}
	return tok.SecretID, nil
}

// ConsulToken makes a policy with rules and returns a token carrying only
// it; for deliberately under-privileged tokens in tests.
func ConsulToken(ctx context.Context, consul *consulapi.Client, name, rules string) (string, error) {
	secret := agents.NewSecretID()
	return secret, agents.EnsureConsulToken(ctx, consul, name, secret, rules)
}
