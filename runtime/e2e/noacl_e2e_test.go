package e2e

import (
	"net/http"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
)

// TestWithoutACLs keeps clusters without ACLs supported: on agents that
// enforce none, and a gateway with no tokens, a function deploys, starts
// from zero on its first invocation and answers.
func TestWithoutACLs(t *testing.T) {
	env, gw := ownEnvironment(t, testenv.Options{WithoutACL: true})
	if env.ACL || env.Principals.Deployer.NomadToken != "" {
		t.Fatal("the environment was meant to run without ACLs")
	}
	// Without a token, both agents let anyone read and write.
	if _, _, err := env.Nomad.Jobs().List(nil); err != nil {
		t.Fatalf("Nomad refused an anonymous job list: %v", err)
	}
	if _, err := env.Consul.KV().Put(&consulapi.KVPair{Key: "anyone/may", Value: []byte("write")}, nil); err != nil {
		t.Fatalf("Consul refused an anonymous write: %v", err)
	}
	deployTo(t, env, gw, model.Function{Name: "open", Runtime: model.RuntimeProvided, MinInstances: 0, MaxInstances: 1, Timeout: 10 * time.Second}, fx.goSource, 0)
	a := invoke(t, gw, "open", `{"action":"echo","value":"no acls"}`)
	if a.status != http.StatusOK || a.body["echo"] != "no acls" {
		t.Fatalf("invoke without ACLs: %d %s", a.status, a.raw)
	}
}
