package e2e

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/gatewayjob"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
)

// TestGatewayJobTakesItsTokensTheNomadWay runs the shipped gateway job
// (examples/platform) on the ACL-enabled agents. It holds no token in its
// spec: its Nomad rights come from the policy attached to its workload
// identity, its Consul token from the job's own Nomad variable. It proves
// both by scaling a function from zero and routing to the new instance.
func TestGatewayJobTakesItsTokensTheNomadWay(t *testing.T) {
	env, _ := gateway(t)
	if !env.ACL {
		t.Fatal("this test needs the ACL-enabled environment")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	url, err := gatewayjob.Run(ctx, env.Nomad, gatewayjob.Options{
		ConsulToken: env.Principals.Gateway.ConsulToken, Port: env.GatewayPort(),
		OperatorKey: env.GatewayToken, SigningKey: strings.Repeat("s", 64),
		NomadAddr: env.NomadAddr, ConsulAddr: env.ConsulAddr,
		NATSURL: env.NATS.URL, NATSUser: env.NATS.Gateway.User, NATSPassword: env.NATS.Gateway.Password,
		// The shared gateway serves the environment's function listener.
		FunctionListen: net.JoinHostPort(env.Network.Public.Gateway().String(), strconv.Itoa(exposedPort(t, env))),
	})
	t.Cleanup(func() { _, _, _ = env.Nomad.Jobs().Deregister(gatewayjob.ID, true, nil) })
	if err != nil {
		t.Fatal(err)
	}

	job, _, err := env.Nomad.Jobs().Info(gatewayjob.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	spec, _ := json.Marshal(job)
	for _, secret := range []string{env.Principals.Gateway.ConsulToken, env.Principals.Gateway.NomadToken, env.GatewayToken, strings.Repeat("s", 64), env.NATS.Gateway.Password} {
		if strings.Contains(string(spec), secret) {
			t.Error("the gateway job's spec holds a token or key")
		}
	}
	for _, name := range []string{"NOMAD_TOKEN", "CONSUL_HTTP_TOKEN", "NIMBUS_GATEWAY_OPERATOR_KEY", "NIMBUS_GATEWAY_SIGNING_KEY", "NIMBUS_GATEWAY_NATS_PASSWORD"} {
		if _, ok := job.TaskGroups[0].Tasks[0].Env[name]; ok {
			t.Errorf("the gateway job sets %s in its spec", name)
		}
	}

	deploy(t, model.Function{Name: "via-job", Runtime: model.RuntimeProvided, MinInstances: 0, MaxInstances: 1, Timeout: 10 * time.Second})
	// The job's gateway takes the operator key from its variable.
	jobGateway := env.GatewayAt(url)
	awaitFunction(t, jobGateway, "via-job")
	a := invoke(t, jobGateway, "via-job", `{"action":"echo","value":"identity"}`)
	if a.status != http.StatusOK || a.body["echo"] != "identity" {
		t.Fatalf("the gateway job did not serve a function from zero: %d %s", a.status, a.raw)
	}
	// It stores Event invocations in JetStream, with the NATS user from
	// its variable: the function's queue shows in its state.
	if status, answer := sendEvent(t, jobGateway, "via-job", `{"action":"echo","value":"queued"}`); status != http.StatusAccepted {
		t.Fatalf("an Event invocation through the gateway job: %d %s", status, answer)
	}
	if queued, raw := asyncQueued(t, jobGateway, "via-job"); queued < 0 {
		t.Errorf("the gateway job reports no event queue for via-job (no NATS?): %s", raw)
	}
}
