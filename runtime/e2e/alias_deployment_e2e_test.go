package e2e

import (
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
)

// deploymentState reads an alias's deployment state from Consul KV, as the
// gateways keep it.
func deploymentState(t *testing.T, env *testenv.Env, function, alias string) (kvstore.DeploymentState, bool) {
	t.Helper()
	pair, _, err := env.Consul.KV().Get(kvstore.DeploymentKey(function, alias), nil)
	if err != nil {
		t.Fatal(err)
	}
	if pair == nil {
		return kvstore.DeploymentState{}, false
	}
	st, err := kvstore.DecodeDeployment(pair.Value)
	if err != nil {
		t.Fatal(err)
	}
	return st, true
}

// A gateway killed in the middle of an alias's deployment does not start it
// over: the gateway that takes the lock next (here, the same one
// restarted) resumes at the step the state in Consul names, and the
// deployment reaches its end.
func TestAliasDeploymentResumesAfterGatewayRestart(t *testing.T) {
	env, gw := gateway(t)
	alias := kvstore.AliasRecord{Name: "live", Function: "resumes", FunctionVersion: "2", PreviousVersion: "1", DeploymentID: "resume-1",
		Deployment: &kvstore.AliasDeployment{Type: kvstore.DeployLinear, Percentage: 25, Interval: "3s"}}
	if _, err := env.Consul.KV().Put(&consulapi.KVPair{Key: kvstore.AliasKey(alias.Function, alias.Name), Value: alias.Encode()}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = env.Consul.KV().Delete(kvstore.AliasKey(alias.Function, alias.Name), nil)
		_, _ = env.Consul.KV().Delete(kvstore.DeploymentKey(alias.Function, alias.Name), nil)
	})

	var before kvstore.DeploymentState
	waitFor(t, 30*time.Second, "the deployment to reach its second step", func() bool {
		st, ok := deploymentState(t, env, "resumes", "live")
		before = st
		return ok && st.ID == alias.DeploymentID && st.Step >= 2
	})
	gw.Kill()
	t.Logf("killed the gateway at step %d of %d (%.0f%% to version 2)", before.Step, before.Steps, 100*before.Weight)
	// While no gateway runs, nothing moves.
	time.Sleep(4 * time.Second)
	if st, _ := deploymentState(t, env, "resumes", "live"); st.Step != before.Step || st.Status != kvstore.DeploymentRunning {
		t.Fatalf("with no gateway running the deployment moved: %+v", st)
	}
	if err := gw.Restart(); err != nil {
		t.Fatal(err)
	}

	steps := []int{before.Step}
	var last kvstore.DeploymentState
	waitFor(t, time.Minute, "the resumed deployment to succeed", func() bool {
		st, _ := deploymentState(t, env, "resumes", "live")
		if st.Step != steps[len(steps)-1] {
			steps = append(steps, st.Step)
		}
		last = st
		return st.Status != kvstore.DeploymentRunning
	})
	t.Logf("steps seen from the kill on: %v", steps)
	// One step at a time, each lasting its interval: never back, never
	// skipping one.
	for i := 1; i < len(steps); i++ {
		if steps[i] != steps[i-1]+1 {
			t.Errorf("after the restart the deployment moved from step %d to step %d: %v", steps[i-1], steps[i], steps)
		}
	}
	if last.Status != kvstore.DeploymentSucceeded || last.Step != 4 || last.Steps != 4 || last.Weight != 1 {
		t.Errorf("the resumed deployment ended %+v; want succeeded at step 4 of 4", last)
	}
	if !last.Started.Equal(before.Started) || last.ID != before.ID {
		t.Errorf("the deployment started over after the restart: started %s, was %s", last.Started, before.Started)
	}
	// A finished deployment holds no lock (nor a Consul session) any more.
	waitFor(t, 15*time.Second, "the finished deployment's lock to be released", func() bool {
		pair, _, err := env.Consul.KV().Get(kvstore.DeploymentLocksPrefix+"resumes/live", nil)
		return err == nil && (pair == nil || pair.Session == "")
	})
}
