package e2e

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/agents"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
)

// putVariable stores a Nomad Variable as the operator would.
func putVariable(t *testing.T, nomad *nomadapi.Client, path string, items map[string]string) {
	t.Helper()
	if _, _, err := nomad.Variables().Update(&nomadapi.Variable{Path: path, Items: items}, nil); err != nil {
		t.Fatal(err)
	}
}

// TestSecretsReachOnlyTheirFunction: a function reads its secret from a
// Nomad Variable; the value is nowhere in the job; another function's job
// cannot read it; a rotated value reaches new instances.
func TestSecretsReachOnlyTheirFunction(t *testing.T) {
	env, gw := gateway(t)
	path := model.SecretsRoot("vault")
	first := "first-" + agents.NewSecretID()
	putVariable(t, env.Nomad, path, map[string]string{"password": first, "user": "app"})
	t.Cleanup(func() { _, _ = env.Nomad.Variables().Delete(path, nil) })

	src, _ := filepath.Abs("testdata/envreader")
	fn := model.Function{Name: "vault", Runtime: model.RuntimePython, Handler: "app.handler", MinInstances: 0, MaxInstances: 1, Timeout: 30 * time.Second,
		Secrets: map[string]protocol.SecretRef{"DB_PASSWORD": {Path: path, Key: "password"}, "DB_USER": {Path: path, Key: "user"}}}
	deployFrom(t, fn, src, 0)

	read := func() map[string]any {
		t.Helper()
		a := invoke(t, gw, "vault", `{"names":["DB_PASSWORD","DB_USER","NIMBUS_SECRETS"]}`)
		if a.status != http.StatusOK {
			t.Fatalf("invoke: %d %s", a.status, a.raw)
		}
		return a.body
	}
	got := read()
	if got["DB_PASSWORD"] != first || got["DB_USER"] != "app" {
		t.Fatalf("the handler saw %v; want its secrets from %s", got, path)
	}
	if got["NIMBUS_SECRETS"] != nil {
		t.Errorf("the host's own settings reached the handler: %v", got["NIMBUS_SECRETS"])
	}

	// The job, as `nomad job inspect` shows it, holds references only.
	job, _, err := env.Nomad.Jobs().Info(nomadjob.JobID("vault"), nil)
	if err != nil {
		t.Fatal(err)
	}
	spec, _ := json.Marshal(job)
	if strings.Contains(string(spec), first) {
		t.Error("the secret's value is in the Nomad job")
	}
	if !strings.Contains(string(spec), path) {
		t.Error("the job does not reference the variable's path")
	}

	// Another function's job that names the same variable is refused by
	// Nomad: its identity may read only its own job's variables. The
	// provider refuses such a path at plan time; this job bypasses it.
	thief := model.Function{Name: "thief", Runtime: model.RuntimePython, Handler: "app.handler", MinInstances: 1, MaxInstances: 1,
		Secrets: map[string]protocol.SecretRef{"STOLEN": {Path: path, Key: "password"}}}
	if err := thief.WithDefaults().Validate(); err == nil || !strings.Contains(err.Error(), "not readable by the function's instances") {
		t.Errorf("validation must refuse another function's path, got %v", err)
	}
	deployFrom(t, thief, src, 0)
	if msg := waitTemplateRefused(t, env.Nomad, nomadjob.JobID("thief")); msg == "" {
		t.Error("Nomad rendered another function's secret for the thief")
	} else {
		t.Logf("Nomad refused the thief's template: %s", msg)
	}

	// Rotation: new instances get the new value.
	second := "second-" + agents.NewSecretID()
	putVariable(t, env.Nomad, path, map[string]string{"password": second, "user": "app"})
	zero := 0
	if _, _, err := env.Nomad.Jobs().Scale(nomadjob.JobID("vault"), nomadjob.GroupName, &zero, "test: replace instances", false, nil, nil); err != nil {
		t.Fatal(err)
	}
	waitNoInstances(t, env.Nomad, nomadjob.JobID("vault"))
	if got := read(); got["DB_PASSWORD"] != second {
		t.Errorf("after rotation a new instance saw %v, want the new value", got["DB_PASSWORD"])
	}
}

// waitTemplateRefused waits for Nomad to report that the job's template
// could not read its variable, and returns the report; "" if the task
// started instead or nothing was reported in time.
func waitTemplateRefused(t *testing.T, nomad *nomadapi.Client, jobID string) string {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for time.Now().Before(deadline) {
		allocs, _, err := nomad.Jobs().Allocations(jobID, true, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, stub := range allocs {
			for _, ts := range stub.TaskStates {
				for _, ev := range ts.Events {
					if ev.Type == nomadapi.TaskStarted {
						return ""
					}
					text := ev.DisplayMessage + " " + ev.Details["kill_reason"]
					if strings.Contains(text, "403") || strings.Contains(text, "Permission denied") || strings.Contains(text, "Missing: nomad.var") {
						return strings.TrimSpace(text)
					}
				}
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	return ""
}

func waitNoInstances(t *testing.T, nomad *nomadapi.Client, jobID string) {
	t.Helper()
	for i := 0; i < 300; i++ {
		allocs, _, err := nomad.Jobs().Allocations(jobID, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		running := 0
		for _, a := range allocs {
			if a.ClientStatus == nomadapi.AllocClientStatusRunning || a.ClientStatus == nomadapi.AllocClientStatusPending {
				running++
			}
		}
		if running == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s still has instances", jobID)
}
