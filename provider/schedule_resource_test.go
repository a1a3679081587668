package provider

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
)

func usageOf(gw *testenv.Gateway, function string) (int64, error) {
	resp, err := gw.Do(http.MethodGet, "/v1/usage", nil)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	var u struct {
		Functions []struct {
			Function    string `json:"function"`
			Invocations int64  `json:"invocations"`
			Errors      int64  `json:"errors"`
		} `json:"functions"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&u); err != nil {
		return 0, err
	}
	for _, f := range u.Functions {
		if f.Function == function {
			return f.Invocations - f.Errors, nil
		}
	}
	return 0, nil
}

func TestAccSchedule(t *testing.T) {
	requireAcceptance(t)
	env := testenv.Get(t)
	src, _ := filepath.Abs("testdata/pyfn")
	config := func(schedule string) string {
		return providerConfig(env) + fmt.Sprintf(`
resource "nimbus_function" "ticker" {
  name    = "ticker"
  runtime = "python3"
  handler = "app.handler"
  source  = %q
}

resource "nimbus_schedule" "tick" {
  name     = "tick"
  function = nimbus_function.ticker.name
  payload  = jsonencode({ name = "schedule" })
%s
}
`, src, schedule)
	}
	periodic := func(check func(spec string, enabled bool) error) resource.TestCheckFunc {
		return func(*terraform.State) error {
			job, _, err := env.Nomad.Jobs().Info("nimbus-sched-tick", nil)
			if err != nil {
				return err
			}
			if job.Periodic == nil || !*job.Periodic.ProhibitOverlap || *job.Type != "batch" {
				return fmt.Errorf("nimbus-sched-tick is not a periodic batch job without overlap")
			}
			// A run is confined like a function: its own namespace, and the
			// gateway only at the function listener the client names.
			if mode := job.TaskGroups[0].Networks[0].Mode; mode != "cni/nimbus" {
				return fmt.Errorf("schedule runs have network mode %q, want cni/nimbus", mode)
			}
			return check(*job.Periodic.Spec, *job.Periodic.Enabled)
		}
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testProviders,
		CheckDestroy: func(*terraform.State) error {
			jobs, _, err := env.Nomad.Jobs().PrefixList("nimbus-sched-tick")
			if err != nil || len(jobs) != 0 {
				return fmt.Errorf("schedule jobs left after destroy: %d (err %v)", len(jobs), err)
			}
			return nil
		},
		Steps: []resource.TestStep{
			{
				Config: config(`  cron = "0 3 * * *"
  time_zone = "Europe/Berlin"`),
				Check: resource.ComposeTestCheckFunc(
					periodic(func(spec string, enabled bool) error {
						if spec != "0 3 * * *" || !enabled {
							return fmt.Errorf("spec %q enabled %v", spec, enabled)
						}
						return nil
					}),
					// Force a launch as an operator would; the run invokes the function.
					func(*terraform.State) error {
						before, err := usageOf(gateway(env), "ticker")
						if err != nil {
							return err
						}
						if _, _, err := env.Nomad.Jobs().PeriodicForce("nimbus-sched-tick", nil); err != nil {
							return err
						}
						// Two placements one after the other: the periodic
						// job's, then the function's cold start.
						for i := 0; i < 360; i++ {
							if n, _ := usageOf(gateway(env), "ticker"); n > before {
								return nil
							}
							time.Sleep(250 * time.Millisecond)
						}
						return fmt.Errorf("a forced run of the schedule did not invoke the function within 90s")
					},
				),
			},
			{
				Config: config(`  rate = "5m"`),
				Check: periodic(func(spec string, _ bool) error {
					if spec != "*/5 * * * *" {
						return fmt.Errorf("a rate of 5m should be the cron */5 * * * *, got %q", spec)
					}
					return nil
				}),
			},
			{
				Config: config(`  rate = "5m"
  enabled = false`),
				Check: periodic(func(_ string, enabled bool) error {
					if enabled {
						return fmt.Errorf("disabled schedule still enabled")
					}
					return nil
				}),
			},
			{
				ResourceName:            "nimbus_schedule.tick",
				ImportState:             true,
				ImportStateId:           "tick",
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"rate", "cron"},
			},
		},
	})
}

func TestAccScheduleRejectsBadInputAtPlan(t *testing.T) {
	requireAcceptance(t)
	env := testenv.Get(t)
	for body, want := range map[string]string{
		`cron = "61 * * * *"`: `(?s)Invalid cron.*not a valid cron`,
		`rate = "7m"`:         `(?s)Invalid rate.*minutes that divide an hour`,
		"cron = \"0 3 * * *\"\n  time_zone = \"Nowhere/Land\"": `(?s)Invalid time_zone.*IANA`,
		"cron = \"0 3 * * *\"\n  payload = \"{nope\"":          `(?s)Invalid payload.*jsonencode`,
		"cron = \"0 3 * * *\"\n  rate = \"5m\"":                `(?s)Invalid rate.*not both`,
	} {
		t.Run(want, func(t *testing.T) {
			resource.Test(t, resource.TestCase{
				ProtoV6ProviderFactories: testProviders,
				Steps: []resource.TestStep{{
					Config: providerConfig(env) + fmt.Sprintf(`
resource "nimbus_schedule" "bad" {
  name     = "bad"
  function = "fn"
  %s
}`, body),
					PlanOnly:    true,
					ExpectError: regexp.MustCompile(want),
				}},
			})
		})
	}
}
