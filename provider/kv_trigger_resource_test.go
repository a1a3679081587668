package provider

import (
	"fmt"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
)

func TestAccKVTrigger(t *testing.T) {
	requireAcceptance(t)
	env := testenv.Get(t)
	src, _ := filepath.Abs("testdata/pyfn")
	config := func(batch int) string {
		return providerConfig(env) + fmt.Sprintf(`
resource "nimbus_function" "on_change" {
  name    = "on-change"
  runtime = "python3"
  handler = "app.handler"
  source  = %q
}

resource "nimbus_kv_trigger" "orders" {
  name       = "orders"
  function   = nimbus_function.on_change.name
  prefix     = "acc-orders/"
  events     = ["put"]
  batch_size = %d
}
`, src, batch)
	}
	record := func(check func(kvstore.KVTrigger) error) resource.TestCheckFunc {
		return func(*terraform.State) error {
			pair, _, err := env.Consul.KV().Get(kvstore.KVTriggerKey("orders"), nil)
			if err != nil || pair == nil {
				return fmt.Errorf("no trigger in KV (err %v)", err)
			}
			tr, err := kvstore.DecodeKVTrigger(pair.Value)
			if err != nil {
				return err
			}
			return check(tr)
		}
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testProviders,
		CheckDestroy: func(*terraform.State) error {
			if pair, _, err := env.Consul.KV().Get(kvstore.KVTriggerKey("orders"), nil); err != nil || pair != nil {
				return fmt.Errorf("trigger left in KV (err %v)", err)
			}
			return nil
		},
		Steps: []resource.TestStep{
			{
				Config: config(100),
				Check: resource.ComposeTestCheckFunc(
					record(func(tr kvstore.KVTrigger) error {
						if tr.Prefix != "acc-orders/" || tr.BatchSize != 100 || tr.StartingPosition != "latest" || tr.MaxRetries != 3 || len(tr.Events) != 1 {
							return fmt.Errorf("trigger in KV: %+v", tr)
						}
						return nil
					}),
					// A write under the prefix invokes the function.
					func(*terraform.State) error {
						// A write before the trigger takes its starting point
						// ("latest") is not a change to it.
						for i := 0; ; i++ {
							if pair, _, _ := env.Consul.KV().Get(kvstore.KVTriggerState+"orders", nil); pair != nil {
								break
							}
							if i == 600 {
								return fmt.Errorf("the trigger did not take its starting point within 30s")
							}
							time.Sleep(50 * time.Millisecond)
						}
						before, _ := usageOf(gateway(env), "on-change")
						if _, err := env.Consul.KV().Put(&consulapi.KVPair{Key: "acc-orders/1", Value: []byte("new")}, nil); err != nil {
							return err
						}
						// Delivery, and a cold start from zero.
						for i := 0; i < 600; i++ {
							if n, _ := usageOf(gateway(env), "on-change"); n > before {
								return nil
							}
							time.Sleep(100 * time.Millisecond)
						}
						return fmt.Errorf("writing under the prefix did not invoke the function within 60s")
					},
				),
			},
			{
				Config: config(10),
				Check: record(func(tr kvstore.KVTrigger) error {
					if tr.BatchSize != 10 {
						return fmt.Errorf("batch size in KV: %d", tr.BatchSize)
					}
					return nil
				}),
			},
			{
				ResourceName:      "nimbus_kv_trigger.orders",
				ImportState:       true,
				ImportStateId:     "orders",
				ImportStateVerify: true,
			},
		},
	})
	_, _ = env.Consul.KV().DeleteTree("acc-orders/", nil)

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testProviders,
		Steps: []resource.TestStep{{
			Config: providerConfig(env) + `
resource "nimbus_kv_trigger" "bad" {
  name       = "bad"
  function   = "fn"
  prefix     = "nimbus/functions/"
  batch_size = 5000
}`,
			PlanOnly:    true,
			ExpectError: regexp.MustCompile(`(?s)Invalid prefix.*Nimbus's\s+own.*batch_size`),
		}},
	})
	// Prefixes that contain nimbus/ rather than lie in it watch it too.
	for _, prefix := range []string{"nimbus", "n", ""} {
		resource.Test(t, resource.TestCase{
			ProtoV6ProviderFactories: testProviders,
			Steps: []resource.TestStep{{
				Config: providerConfig(env) + fmt.Sprintf(`
resource "nimbus_kv_trigger" "loop" {
  name     = "loop"
  function = "fn"
  prefix   = %q
}`, prefix),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`(?s)Invalid prefix.*invoke\s+itself\s+forever`),
			}},
		})
	}
}
