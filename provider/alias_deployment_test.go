package provider

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
)

// deployedConfig is a published function "rollout" whose environment says
// whether it is a bad release ("flaky": every second call fails), and its
// alias "live" following the latest version with deployment.
func deployedConfig(env *testenv.Env, src, setting, deployment string) string {
	return functionConfig(env, fmt.Sprintf(`
  name    = "rollout"
  runtime = "provided"
  source  = %q
  publish = true
  timeout = "10s"
  environment = {
    USER_SETTING = %q
  }`, src, setting)) + fmt.Sprintf(`
resource "nimbus_alias" "live" {
  name                = "live"
  function            = nimbus_function.fn.name
  function_version    = nimbus_function.fn.version
  wait_for_deployment = true
  deployment {
    %s
  }
}
`, deployment)
}

// callers invoke target steadily, as an alias's callers do during a
// deployment, until stop; they never fail the test themselves.
type callers struct {
	stop chan struct{}
	done sync.WaitGroup
}

func startCallers(env *testenv.Env, target string) *callers {
	c := &callers{stop: make(chan struct{})}
	c.done.Add(1)
	go func() {
		defer c.done.Done()
		// Bounded: at most 10 minutes of calls, 50 a second.
		deadline := time.After(10 * time.Minute)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-c.stop:
				return
			case <-deadline:
				return
			case <-tick.C:
				_, _ = invokeTarget(env, target, `{"action":"flaky"}`)
			}
		}
	}()
	return c
}

func (c *callers) end() {
	if c != nil {
		close(c.stop)
		c.done.Wait()
	}
}

// aliasDeployments reads the alias_deployments the gateway reports for a
// function.
func aliasDeployments(env *testenv.Env, function string) ([]kvstore.DeploymentState, error) {
	resp, err := gateway(env).Do(http.MethodGet, "/v1/functions/"+function, nil)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	var state struct {
		Deployments []kvstore.DeploymentState `json:"alias_deployments"`
	}
	return state.Deployments, json.NewDecoder(resp.Body).Decode(&state)
}

// checkDeployment checks, as an operator would, the deployment the gateway
// reports and the scaling events Nomad shows on the new version's job.
func checkDeployment(env *testenv.Env, status, to string, event string) resource.TestCheckFunc {
	return func(*terraform.State) error {
		deployments, err := aliasDeployments(env, "rollout")
		if err != nil || len(deployments) != 1 {
			return fmt.Errorf("GET /v1/functions/rollout reports deployments %+v (err %v)", deployments, err)
		}
		if d := deployments[0]; d.Status != status || d.To != to || d.Alias != "live" {
			return fmt.Errorf("the deployment stands %+v; want %s to version %s", d, status, to)
		}
		n := 0
		_, _ = fmt.Sscan(to, &n)
		scale, _, err := env.Nomad.Jobs().ScaleStatus(nomadjob.VersionJobID("rollout", n), nil)
		if err != nil {
			return err
		}
		var messages []string
		for _, e := range scale.TaskGroups[nomadjob.GroupName].Events {
			messages = append(messages, e.Message)
		}
		if !strings.Contains(strings.Join(messages, "\n"), event) {
			return fmt.Errorf("the scaling events of version %s's job do not say %q: %q", to, event, messages)
		}
		return nil
	}
}

// An alias moves to a new version step by step. A healthy linear
// deployment reaches all the invocations, and the apply waits for it. A
// canary that fails half of its calls is rolled back by the gateway on its
// own: the apply fails with the reason, the alias answers from the old
// version alone, and the next plan shows the drift.
func TestAccAliasProgressiveDelivery(t *testing.T) {
	requireAcceptance(t)
	env := testenv.Get(t)
	linear := `type = "linear"
    percentage = 50
    interval = "2s"
    error_rate_above = 20`
	canary := `type = "canary"
    percentage = 50
    interval = "2m"
    error_rate_above = 20
    window = "1m"
    min_requests = 10`
	var load *callers
	t.Cleanup(func() { load.end() })
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testProviders,
		Steps: []resource.TestStep{
			{
				Config: deployedConfig(env, fixtures.goSource, "good", linear),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("nimbus_alias.live", tfjsonpath.New("function_version"), knownvalue.StringExact("1")),
				},
			},
			{
				// A healthy release, linear: 50%, then all, waited for.
				Config: deployedConfig(env, fixtures.goSourceV2, "good", linear),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("nimbus_alias.live", tfjsonpath.New("function_version"), knownvalue.StringExact("2")),
				},
				Check: resource.ComposeTestCheckFunc(
					checkDeployment(env, kvstore.DeploymentSucceeded, "2", "deployment succeeded"),
					checkDeployment(env, kvstore.DeploymentSucceeded, "2", "step 1 of 2, 50% of its invocations to version 2"),
					checkSplit(env, "rollout:live", 50, "2", 1, 0),
				),
			},
			{
				// A bad release, under steady calls: rolled back, and the
				// apply says why.
				PreConfig:   func() { load = startCallers(env, "rollout:live") },
				Config:      deployedConfig(env, fixtures.goSourceV2, "flaky", canary),
				ExpectError: regexp.MustCompile(`(?s)The\s+deployment\s+of\s+version\s+3\s+to\s+alias\s+live\s+rolled\s+back.*version\s+3\s+failed.*above\s+error_rate_above.*serves\s+version\s+2\s+again`),
			},
			{
				// Nothing changed since: the alias answers from version 2
				// alone, the gateway and Nomad say why, and the rollback
				// shows as drift.
				PreConfig: func() {
					load.end()
					load = nil
					for _, check := range []resource.TestCheckFunc{
						checkSplit(env, "rollout:live", 50, "2", 1, 0),
						checkDeployment(env, kvstore.DeploymentRolledBack, "3", "rolled back to version 2"),
					} {
						if err := check(nil); err != nil {
							t.Errorf("after the rollback: %v", err)
						}
					}
				},
				Config:             deployedConfig(env, fixtures.goSourceV2, "flaky", canary),
				PlanOnly:           true,
				ExpectNonEmptyPlan: true,
			},
		},
	})
}
