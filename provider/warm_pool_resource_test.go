package provider

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
)

// A warm pool declared in Terraform: its job runs size instances, a cold
// start of a function it fits is served by one, resizing changes the
// job, and removing the resource removes the job and its record.
func TestAccWarmPool(t *testing.T) {
	requireAcceptance(t)
	env := testenv.Get(t)
	const jobID = "nimbus-pool-provided-192"
	pool := func(size int) string {
		return providerConfig(env) + fmt.Sprintf(`
resource "nimbus_warm_pool" "go" {
  runtime   = "provided"
  memory_mb = 192
  size      = %d
}
`, size)
	}
	fn := fmt.Sprintf(`
resource "nimbus_function" "fn" {
  name      = "from-pool"
  runtime   = "provided"
  source    = %q
  memory_mb = 128
}
`, fixtures.goSource)
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testProviders,
		CheckDestroy: func(*terraform.State) error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			job, _, err := env.Nomad.Jobs().Info(jobID, (&nomadapi.QueryOptions{}).WithContext(ctx))
			if err == nil && (job.Stop == nil || !*job.Stop) {
				return fmt.Errorf("the pool's job %s is still running after destroy", jobID)
			}
			if pair, _, err := env.Consul.KV().Get(kvstore.PoolKey(jobID), nil); err != nil || pair != nil {
				return fmt.Errorf("the pool's record is left in KV (err %v)", err)
			}
			return nil
		},
		Steps: []resource.TestStep{
			{
				Config: pool(1) + fn,
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("nimbus_warm_pool.go", tfjsonpath.New("job_id"), knownvalue.StringExact(jobID)),
				},
				Check: resource.ComposeTestCheckFunc(poolCount(env, jobID, 1), servedFromPool(env, "from-pool")),
			},
			{
				Config: pool(2) + fn,
				Check:  poolCount(env, jobID, 2),
			},
			{
				ResourceName:      "nimbus_warm_pool.go",
				ImportState:       true,
				ImportStateId:     jobID,
				ImportStateVerify: true,
			},
		},
	})
}

// Bad settings are refused at plan, each naming what is allowed.
func TestAccWarmPoolRefusedAtPlan(t *testing.T) {
	requireAcceptance(t)
	env := testenv.Get(t)
	for name, c := range map[string]struct{ body, want string }{
		"http runtime":   {"runtime = \"http\"\n  memory_mb = 128\n  size = 1", `(?s)runtime.*must be one of.*"provided" "python3" "nodejs"`},
		"tiny memory":    {"runtime = \"python3\"\n  memory_mb = 32\n  size = 1", `(?s)memory_mb.*must be between 64 and 10240`},
		"empty pool":     {"runtime = \"nodejs\"\n  memory_mb = 128\n  size = 0", `(?s)size.*must be between 1 and 100`},
		"oversized pool": {"runtime = \"nodejs\"\n  memory_mb = 128\n  size = 101", `(?s)size.*must be between 1 and 100`},
	} {
		t.Run(name, func(t *testing.T) {
			resource.Test(t, resource.TestCase{
				ProtoV6ProviderFactories: testProviders,
				Steps: []resource.TestStep{{
					Config:      providerConfig(env) + "resource \"nimbus_warm_pool\" \"bad\" {\n  " + c.body + "\n}\n",
					PlanOnly:    true,
					ExpectError: regexp.MustCompile(c.want),
				}},
			})
		})
	}
}

func poolCount(env *testenv.Env, jobID string, want int) resource.TestCheckFunc {
	return func(*terraform.State) error {
		job, _, err := env.Nomad.Jobs().Info(jobID, nil)
		if err != nil {
			return err
		}
		if n := *job.TaskGroups[0].Count; n != want {
			return fmt.Errorf("the pool's job runs %d instances, want %d", n, want)
		}
		entries, _, err := env.Consul.Health().Service(jobID, "", true, nil)
		if err != nil || len(entries) < want {
			return fmt.Errorf("%d healthy pool instances, want %d (err %v)", len(entries), want, err)
		}
		return nil
	}
}

// servedFromPool invokes the function at 0 instances through the gateway
// and expects the pool to serve the cold start.
func servedFromPool(env *testenv.Env, function string) resource.TestCheckFunc {
	return func(*terraform.State) error {
		var last string
		// The gateway confirms new pool instances with Nomad first.
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			resp, err := gateway(env).Do(http.MethodGet, "/metrics", nil)
			if err != nil {
				return err
			}
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if regexp.MustCompile(`nimbus_warm_pool_idle\{pool="nimbus-pool-provided-192"\} 1`).Match(body) {
				break
			}
		}
		resp, err := gateway(env).Do(http.MethodPost, "/v1/functions/"+function+"/invoke", strings.NewReader(`{"action":"echo","value":"pool"}`))
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		last = resp.Header.Get("X-Nimbus-Cold-Path")
		if resp.StatusCode != http.StatusOK || last != "pool" {
			return fmt.Errorf("the cold start of %s: %s, X-Nimbus-Cold-Path %q; want 200 from the pool", function, resp.Status, last)
		}
		return nil
	}
}
