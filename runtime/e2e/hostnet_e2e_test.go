package e2e

import (
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
)

// TestHostNetworkFallback covers clusters whose clients have no CNI: with
// host networking chosen explicitly, functions still deploy, start from
// zero and answer; the gateway warns that they are not isolated and says
// so in the function's status; and ACLs still refuse every attempt a
// hostile instance makes on the agents, which it can now reach.
func TestHostNetworkFallback(t *testing.T) {
	env, gw := ownEnvironment(t, testenv.Options{HostNetwork: true})
	if env.Network != nil || !env.ACL {
		t.Fatal("the environment was meant to have ACLs and no Nimbus networks")
	}
	deployTo(t, env, gw, model.Function{Name: "plain", Runtime: model.RuntimeProvided, MinInstances: 0, MaxInstances: 1, Timeout: 10 * time.Second}, fx.goSource, 0)
	a := invoke(t, gw, "plain", `{"action":"echo","value":"host network"}`)
	if a.status != http.StatusOK || a.body["echo"] != "host network" {
		t.Fatalf("invoke with host networking: %d %s", a.status, a.raw)
	}
	job, _, err := env.Nomad.Jobs().Info(nomadjob.JobID("plain"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if mode := job.TaskGroups[0].Networks[0].Mode; mode != "host" || job.Meta[nomadjob.MetaNetwork] != nomadjob.NetworkHost {
		t.Errorf("the job has network mode %q and meta %q, want host", mode, job.Meta[nomadjob.MetaNetwork])
	}
	if view := gatewayView(t, gw, "plain"); view["isolated_network"] != false {
		t.Errorf("the function's status shows isolated_network %v, want false", view["isolated_network"])
	}
	log, _ := os.ReadFile(gw.LogPath)
	if !strings.Contains(string(log), `"msg":"function runs with host networking`) || !strings.Contains(string(log), `"level":"WARN"`) {
		t.Errorf("the gateway did not warn that the function runs with host networking:\n%s", log)
	}

	attackFromInside(t, env, gw, func(env *testenv.Env, gw *testenv.Gateway, f model.Function, src string) {
		deployTo(t, env, gw, f, src, 0)
	})
}
