package gateway_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
)

// TestWithoutACLs keeps clusters without ACLs supported: on agents that
// enforce none, and a gateway with no tokens, a function deploys, starts
// from zero on its first invocation and answers.
func TestWithoutACLs(t *testing.T) {
	env, err := testenv.Start(testenv.Options{WithoutACL: true, HostVolumes: fx.hostVolumes})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Stop()
	if env.ACL || env.Principals.Deployer.NomadToken != "" {
		t.Fatal("the environment was meant to run without ACLs")
	}
	if _, _, err := env.Nomad.ACLTokens().Self(nil); err == nil {
		t.Fatal("Nomad answered an ACL token lookup: ACLs are on")
	}
	gw, err := env.StartGateway(fx.gatewayBin)
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Stop()
	deployTo(t, env, gw, model.Function{Name: "open", Runtime: model.RuntimeProvided, MinInstances: 0, MaxInstances: 1, Timeout: 10 * time.Second}, fx.goSource, 0)
	a := invoke(t, gw, "open", `{"action":"echo","value":"no acls"}`)
	if a.status != http.StatusOK || a.body["echo"] != "no acls" {
		t.Fatalf("invoke without ACLs: %d %s", a.status, a.raw)
	}
}
