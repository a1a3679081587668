// Package gatewayjob runs the gateway as the Nomad job that
// examples/platform ships, with its tokens the Nomad way: its Nomad rights
// through the gateway policy attached to the job's workload identity, its
// Consul token from the Nomad variable that only the job can read. The
// local stack and the tests both run it, so the shipped job is proven.
package gatewayjob

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/agents"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/principals"
)

// ID is the gateway job's id in the shipped spec.
const ID = "nimbus-gateway"

// Options adapt the shipped job to an environment.
type Options struct {
	// ConsulToken is the gateway's Consul token, stored in the job's
	// variable. Empty on agents without ACLs.
	ConsulToken string
	// Port replaces the job's static port (8080) when not 0.
	Port int
	// NomadAddr and ConsulAddr replace the job's agent addresses when set.
	NomadAddr, ConsulAddr string
	// Meta is added to the job's meta (a build digest makes a new version).
	Meta map[string]string
	// FunctionListen replaces the function listener's address when set.
	FunctionListen string
	// OperatorKey (a bearer token) and SigningKey go into the job's
	// variable beside the Consul token (operator_key, signing_key).
	OperatorKey, SigningKey string
	// NATSURL and the gateway's NATS user go there too (nats_url,
	// nats_user, nats_password): asynchronous invocations are stored in
	// JetStream. Empty: the gateway holds them in memory.
	NATSURL, NATSUser, NATSPassword string
}

// Run registers the gateway job and waits until it serves; it returns the
// gateway's URL.
func Run(ctx context.Context, nomad *nomadapi.Client, opts Options) (string, error) {
	if opts.ConsulToken != "" {
		if err := principals.AttachGatewayToJob(ctx, nomad, "default", ID); err != nil {
			return "", err
		}
		v := &nomadapi.Variable{Path: "nomad/jobs/" + ID, Items: nomadapi.VariableItems{
			"consul_token": opts.ConsulToken, "operator_key": opts.OperatorKey, "signing_key": opts.SigningKey,
		}}
		if opts.NATSURL != "" {
			v.Items["nats_url"], v.Items["nats_user"], v.Items["nats_password"] = opts.NATSURL, opts.NATSUser, opts.NATSPassword
		}
		if _, _, err := nomad.Variables().Update(v, (&nomadapi.WriteOptions{}).WithContext(ctx)); err != nil {
			return "", fmt.Errorf("storing the gateway's Consul token in Nomad variable %s: %w", v.Path, err)
		}
	}
	root, err := agents.RepoRoot()
	if err != nil {
		return "", err
	}
	spec, err := os.ReadFile(filepath.Join(root, "examples", "platform", "nimbus-gateway.nomad.hcl"))
	if err != nil {
		return "", err
	}
	job, err := nomad.Jobs().ParseHCL(string(spec), true)
	if err != nil {
		return "", fmt.Errorf("parsing the gateway job: %w", err)
	}
	port := job.TaskGroups[0].Networks[0].ReservedPorts[0].Value
	if opts.Port != 0 {
		port = opts.Port
		job.TaskGroups[0].Networks[0].ReservedPorts[0].Value = port
	}
	task := job.TaskGroups[0].Tasks[0]
	if opts.NomadAddr != "" {
		task.Env["NOMAD_ADDR"] = opts.NomadAddr
	}
	if opts.ConsulAddr != "" {
		task.Env["CONSUL_HTTP_ADDR"] = opts.ConsulAddr
	}
	if opts.FunctionListen != "" {
		args, _ := task.Config["args"].([]interface{})
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "-function-listen" {
				args[i+1] = opts.FunctionListen
			}
		}
	}
	if opts.ConsulToken == "" {
		// Without ACLs no job identity reads variables: the keys go into
		// the environment.
		task.Templates = nil
		task.Env["NIMBUS_GATEWAY_OPERATOR_KEY"] = opts.OperatorKey
		task.Env["NIMBUS_GATEWAY_SIGNING_KEY"] = opts.SigningKey
	}
	for k, v := range opts.Meta {
		job.Meta[k] = v
	}
	if _, _, err := nomad.Jobs().Register(job, (&nomadapi.WriteOptions{}).WithContext(ctx)); err != nil {
		return "", fmt.Errorf("registering the gateway job: %w", err)
	}
	// A new version replaces the old allocation; wait for one that runs it.
	// A failed deployment ends the wait at once, so this is not a Poll.
	for {
		dep, _, err := nomad.Jobs().LatestDeployment(ID, (&nomadapi.QueryOptions{}).WithContext(ctx))
		if err == nil && (dep == nil || dep.Status == nomadapi.DeploymentStatusSuccessful) {
			break
		}
		if err == nil && dep.Status == nomadapi.DeploymentStatusFailed {
			return "", fmt.Errorf("the gateway job failed to deploy: %s (nomad job status %s)", dep.StatusDescription, ID)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("the gateway job did not become healthy: %w (nomad job status %s)", ctx.Err(), ID)
		case <-time.After(200 * time.Millisecond):
		}
	}
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	return url, agents.Poll(ctx, nil, "the gateway job to answer on "+url, func() (bool, error) {
		resp, err := http.Get(url + "/healthz") //nolint:gosec // a loopback URL of our own
		if err != nil {
			return false, err
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Errorf("/healthz answered %s", resp.Status)
	})
}
