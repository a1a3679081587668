package gateway_test

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
)

// TestSandboxedFunctionHasNoRightsOnTheCluster runs a hostile tenant's
// function and lets it attack Nomad and Consul from inside its instance.
// With ACLs on and no token, every attempt must be answered 403 by the
// agent, and the function must find no credentials to use instead.
func TestSandboxedFunctionHasNoRightsOnTheCluster(t *testing.T) {
	env, gw := gateway(t)
	if !env.ACL {
		t.Fatal("this test needs the ACL-enabled environment")
	}
	deploy(t, model.Function{Name: "victim", Runtime: model.RuntimeProvided, MinInstances: 1, MaxInstances: 1, Timeout: 10 * time.Second})
	src, _ := filepath.Abs("testdata/intruder")
	deployFrom(t, model.Function{Name: "intruder", Runtime: model.RuntimePython, Handler: "app.handler", MinInstances: 0, MaxInstances: 1, Timeout: 60 * time.Second}, src, 0)

	event, _ := json.Marshal(map[string]string{"nomad": env.NomadAddr, "consul": env.ConsulAddr, "victim": "victim", "self": "intruder"})
	a := invoke(t, gw, "intruder", string(event))
	if a.status != http.StatusOK {
		t.Fatalf("the intruder did not run: %d %s", a.status, a.raw)
	}
	var report struct {
		Attempts    map[string]any  `json:"attempts"`
		Credentials map[string]bool `json:"credentials"`
	}
	if err := json.Unmarshal([]byte(a.raw), &report); err != nil || len(report.Attempts) == 0 {
		t.Fatalf("unreadable report %q: %v", a.raw, err)
	}
	names := make([]string, 0, len(report.Attempts))
	for name := range report.Attempts {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		got := report.Attempts[name]
		switch {
		case name == "nomad task API: list jobs" && got == "absent":
			t.Logf("%-45s no Task API socket in the task", name)
		case got == float64(http.StatusForbidden):
			t.Logf("%-45s 403", name)
		default:
			t.Errorf("%s: the agent answered %v; a function without a token must get 403", name, got)
		}
	}
	for what, found := range report.Credentials {
		if found {
			t.Errorf("the function found %s: instances must carry no Nomad or Consul credentials", what)
		}
	}

	// Nothing the intruder tried took effect.
	if pair, _, err := env.Consul.KV().Get(kvstore.RoutesPrefix+"intruder", nil); err != nil || pair != nil {
		t.Errorf("the intruder's route exists (%v)", err)
	}
	if pair, _, err := env.Consul.KV().Get(kvstore.FunctionKey("victim"), nil); err != nil || pair == nil {
		t.Errorf("the victim's record is gone (%v)", err)
	}
	if job, _, err := env.Nomad.Jobs().Info("intruder", nil); err == nil && job != nil {
		t.Errorf("the intruder registered a job")
	}
	if n := groupCount(t, env, "victim"); n != 1 {
		t.Errorf("the victim's count is %d, want 1", n)
	}
}
