package provider

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
)

// checkNetworkMode checks the Nomad network mode of a function's job, as
// the Nomad UI shows it.
func checkNetworkMode(env *testenv.Env, jobID, want string) resource.TestCheckFunc {
	return func(*terraform.State) error {
		job, _, err := env.Nomad.Jobs().Info(jobID, nil)
		if err != nil {
			return err
		}
		if got := job.TaskGroups[0].Networks[0].Mode; got != want {
			return fmt.Errorf("job %s has network mode %q, want %q", jobID, got, want)
		}
		return nil
	}
}

func TestAccFunctionEgress(t *testing.T) {
	requireAcceptance(t)
	env := testenv.Get(t)
	const fn = "nimbus_function.fn"
	body := func(egress string) string {
		b := fmt.Sprintf(`
  name          = "sealed"
  runtime       = "provided"
  source        = %q
  min_instances = 1`, fixtures.goSource)
		if egress != "" {
			b += fmt.Sprintf("\n  egress = %q", egress)
		}
		return b
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testProviders,
		Steps: []resource.TestStep{
			{
				// The default: its own namespace, with public egress.
				Config: functionConfig(env, body("")),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(fn, tfjsonpath.New("egress"), knownvalue.StringExact("public")),
				},
				Check: resource.ComposeTestCheckFunc(
					checkNetworkMode(env, "nimbus-fn-sealed", "cni/nimbus"),
					checkInvokes(env, "nimbus-fn-sealed", `{"action":"echo","value":"sealed"}`, "echo", "sealed"),
				),
			},
			{
				// No egress: the instances move to the closed network, and
				// still answer.
				Config: functionConfig(env, body("none")),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(fn, tfjsonpath.New("egress"), knownvalue.StringExact("none")),
				},
				Check: resource.ComposeTestCheckFunc(
					checkNetworkMode(env, "nimbus-fn-sealed", "cni/nimbus-none"),
					checkInvokes(env, "nimbus-fn-sealed", `{"action":"echo","value":"sealed"}`, "echo", "sealed"),
				),
			},
			{
				ResourceName:            fn,
				ImportState:             true,
				ImportStateId:           "sealed",
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"source", "timeouts"},
			},
			{
				// Host networking cannot hold egress back: refused at plan.
				Config:      strings.Replace(functionConfig(env, body("none")), `provider "nimbus" {`, "provider \"nimbus\" {\n  host_network = true", 1),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`(?s)egress = "none" needs isolated networking.*host_network`),
			},
		},
	})
}
