package provider

import (
	"fmt"
	"regexp"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
)

func kvLimits(env *testenv.Env, check func(kvstore.Limits) error) resource.TestCheckFunc {
	return func(*terraform.State) error {
		pair, _, err := env.Consul.KV().Get(kvstore.LimitsKey("default"), nil)
		if err != nil || pair == nil {
			return fmt.Errorf("no limits in KV (err %v)", err)
		}
		l, err := kvstore.DecodeLimits(pair.Value)
		if err != nil {
			return err
		}
		return check(l)
	}
}

func TestAccLimitsAndReservations(t *testing.T) {
	requireAcceptance(t)
	env := testenv.Get(t)
	fn := func(reserved int) string {
		return fmt.Sprintf(`
resource "nimbus_function" "reserved" {
  name                 = "reserving"
  runtime              = "provided"
  source               = %q
  reserved_concurrency = %d
}
`, fixtures.goSource, reserved)
	}
	limits := func(body string) string {
		return "resource \"nimbus_limits\" \"default\" {\n" + body + "\n}\n"
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testProviders,
		CheckDestroy: func(*terraform.State) error {
			if pair, _, err := env.Consul.KV().Get(kvstore.LimitsKey("default"), nil); err != nil || pair != nil {
				return fmt.Errorf("limits left in KV after destroy (err %v)", err)
			}
			return nil
		},
		Steps: []resource.TestStep{
			{
				Config: providerConfig(env) + limits("  max_concurrency = 300\n  max_instances = 20"),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("nimbus_limits.default", tfjsonpath.New("id"), knownvalue.StringExact("default")),
				},
				Check: kvLimits(env, func(l kvstore.Limits) error {
					if l.MaxConcurrency != 300 || l.MaxInstances != 20 || l.MaxMemoryMB != 0 {
						return fmt.Errorf("limits in KV: %+v", l)
					}
					return nil
				}),
			},
			{
				Config: providerConfig(env) + limits("  max_concurrency = 300\n  max_memory_mb = 4096") + fn(150),
				Check: resource.ComposeTestCheckFunc(
					kvLimits(env, func(l kvstore.Limits) error {
						if l.MaxMemoryMB != 4096 || l.MaxInstances != 0 {
							return fmt.Errorf("updated limits in KV: %+v", l)
						}
						return nil
					}),
					func(*terraform.State) error {
						pair, _, err := env.Consul.KV().Get(kvstore.FunctionKey("reserving"), nil)
						if err != nil || pair == nil {
							return fmt.Errorf("no function record (err %v)", err)
						}
						rec, _ := kvstore.DecodeFunction(pair.Value)
						if rec.ReservedConcurrency != 150 {
							return fmt.Errorf("reserved_concurrency in KV: %d", rec.ReservedConcurrency)
						}
						return nil
					},
				),
			},
			{
				// Reserving 250 of 300 would leave 50: refused at plan, with the numbers.
				Config:      providerConfig(env) + limits("  max_concurrency = 300\n  max_memory_mb = 4096") + fn(250),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`(?s)Too much reserved concurrency.*total\s+250.*leaving\s+50.*at\s+least\s+100`),
			},
			{
				// Lowering max_concurrency under the reservations: refused at plan.
				Config:      providerConfig(env) + limits("  max_concurrency = 200\n  max_memory_mb = 4096") + fn(150),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`(?s)Too little unreserved concurrency.*reserving:\s+150.*leaving\s+50`),
			},
			{
				ResourceName:      "nimbus_limits.default",
				ImportState:       true,
				ImportStateId:     "default",
				ImportStateVerify: true,
			},
		},
	})
}
