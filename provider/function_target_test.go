package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
)

func TestFunctionTargetValidator(t *testing.T) {
	for target, want := range map[string]string{
		"fn": "", "fn:1": "", "fn:12": "", "fn:live": "", "fn:$LATEST": "", "fn:blue_green-2": "",
		"fn:01": `qualifier "01" is neither`, "fn:0": `qualifier "0"`, "fn:a.b": `qualifier "a.b"`, "fn:a:b": `qualifier "a:b"`,
		"fn:": "names no qualifier", "Fn:live": "not a DNS label", ":live": "is required",
	} {
		var resp validator.StringResponse
		functionTarget().ValidateString(context.Background(), validator.StringRequest{Path: path.Root("function"), ConfigValue: types.StringValue(target)}, &resp)
		switch {
		case want == "" && resp.Diagnostics.HasError():
			t.Errorf("%q refused: %v", target, resp.Diagnostics)
		case want != "" && (!resp.Diagnostics.HasError() || !strings.Contains(resp.Diagnostics[0].Detail(), want)):
			t.Errorf("%q: got %v; want an error saying %q", target, resp.Diagnostics, want)
		}
	}
	var resp validator.StringResponse
	functionTarget().ValidateString(context.Background(), validator.StringRequest{Path: path.Root("function"), ConfigValue: types.StringUnknown()}, &resp)
	if resp.Diagnostics.HasError() {
		t.Errorf("an unknown target is checked at apply, not refused at plan: %v", resp.Diagnostics)
	}
}

// A qualified target needs its function's record, then its version's or
// alias's; $LATEST and no qualifier need the function alone.
func TestTargetRecords(t *testing.T) {
	for target, want := range map[string][]string{
		"fn":         {kvstore.FunctionKey("fn")},
		"fn:$LATEST": {kvstore.FunctionKey("fn")},
		"fn:3":       {kvstore.FunctionKey("fn"), kvstore.VersionKey("fn", 3)},
		"fn:live":    {kvstore.FunctionKey("fn"), kvstore.AliasKey("fn", "live")},
	} {
		var got []string
		for _, r := range targetRecords("nimbus_http_route", target) {
			got = append(got, r.key)
			if !strings.Contains(r.detail, "nimbus_") {
				t.Errorf("%s: the message for a missing %s says nothing to do: %q", target, r.key, r.detail)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s needs %v; want %v", target, got, want)
		}
	}
}

// Every trigger's function attribute refuses a bad qualifier at plan time.
func TestAccFunctionTargetPlanChecks(t *testing.T) {
	requireAcceptance(t)
	env := testenv.Get(t)
	for name, c := range map[string]struct{ config, want string }{
		"route": {`resource "nimbus_http_route" "bad" {
  function = "fn:01"
  path     = "/bad"
}`, `(?s)Invalid function.*"fn:01".*qualifier\s+"01"\s+is\s+neither`},
		"schedule": {`resource "nimbus_schedule" "bad" {
  name     = "bad"
  function = "fn:a.b"
  rate     = "5m"
}`, `(?s)Invalid function.*qualifier\s+"a\.b"`},
		"kv trigger": {`resource "nimbus_kv_trigger" "bad" {
  name     = "bad"
  function = "fn:"
  prefix   = "acc-orders/"
}`, `(?s)Invalid function.*names\s+no\s+qualifier`},
		"event source": {`resource "nimbus_event_source" "bad" {
  name     = "bad"
  function = "fn:0"
  nats     = { stream = "S" }
}`, `(?s)Invalid function.*qualifier\s+"0"`},
	} {
		t.Run(name, func(t *testing.T) {
			resource.Test(t, resource.TestCase{
				ProtoV6ProviderFactories: testProviders,
				Steps: []resource.TestStep{{
					Config:      providerConfig(env) + c.config,
					PlanOnly:    true,
					ExpectError: regexp.MustCompile(c.want),
				}},
			})
		})
	}
}

// targetConfig is a published function "targeted" of src, its alias
// "live" on its latest version, and a public route on /targeted that
// invokes routeTarget; extra is more configuration.
func targetConfig(env *testenv.Env, src, routeTarget, extra string) string {
	return targetConfigAs(env, src, routeTarget, "NONE", extra)
}

// targetConfigAs is targetConfig with the route's authorization.
func targetConfigAs(env *testenv.Env, src, routeTarget, authorization, extra string) string {
	return functionConfig(env, fmt.Sprintf(`
  name    = "targeted"
  runtime = "provided"
  source  = %q
  publish = true
  timeout = "10s"`, src)) + fmt.Sprintf(`
resource "nimbus_alias" "live" {
  name             = "live"
  function         = nimbus_function.fn.name
  function_version = nimbus_function.fn.version
}

resource "nimbus_http_route" "targeted" {
  function      = %s
  path          = "/targeted"
  authorization = %q
}
%s`, routeTarget, authorization, extra)
}

// aliasTarget names the alias live as a trigger references it.
const aliasTarget = `"${nimbus_alias.live.function}:${nimbus_alias.live.name}"`

// checkRouteRuns calls the route, as a browser would, until the code
// whose VERSION file holds code ("" for none) answers as version
// executed: the gateway follows KV within moments.
func checkRouteRuns(env *testenv.Env, route, code, executed string) resource.TestCheckFunc {
	return checkRouteRunsAs(env, "", route, code, executed)
}

// checkRouteRunsAs is checkRouteRuns with the bearer token of the
// nimbus_access_key key ("" for none) as the x-api-key.
func checkRouteRunsAs(env *testenv.Env, key, route, code, executed string) resource.TestCheckFunc {
	var token string
	call := func(action string) (map[string]any, string, error) {
		req, _ := http.NewRequest(http.MethodPost, gateway(env).URL+route, strings.NewReader(action)) //nolint:noctx // a test's bounded call
		if token != "" {
			req.Header.Set("X-Api-Key", token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, "", err
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		var body map[string]any
		if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &body) != nil {
			return nil, fmt.Sprintf("%d %s", resp.StatusCode, b), nil
		}
		return body, string(b), nil
	}
	return func(s *terraform.State) error {
		if key != "" {
			token = s.RootModule().Resources[key].Primary.Attributes["bearer_token"]
		}
		var last string
		for range 100 {
			file, raw, err := call(`{"action":"file","value":"VERSION"}`)
			if err != nil {
				return err
			}
			last = raw
			if file != nil && file["file"] == code {
				env, raw, err := call(`{"action":"env"}`)
				if err != nil {
					return err
				}
				last = raw
				if env != nil && env["AWS_LAMBDA_FUNCTION_VERSION"] == executed {
					return nil
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		return fmt.Errorf("POST %s: want the code whose VERSION is %q, run as version %q; last got %s", route, code, executed, last)
	}
}

// awaitUsage waits until the gateway has counted one more successful
// invocation of function than before, after cause.
func awaitUsage(env *testenv.Env, function, what string, cause func() error) error {
	before, err := usageOf(gateway(env), function)
	if err != nil {
		return err
	}
	if err := cause(); err != nil {
		return err
	}
	for range 240 {
		if n, _ := usageOf(gateway(env), function); n > before {
			return nil
		}
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("%s did not invoke %s", what, function)
}

// Routes, schedules and KV triggers may invoke an alias or a version: a
// route on an alias runs the alias's version and follows it when it moves,
// a route on a version runs that version, a schedule's run and a KV
// trigger's batch reach the alias. A version that is not published or an
// alias that does not exist fails the apply, saying what to declare.
func TestAccFunctionTargets(t *testing.T) {
	requireAcceptance(t)
	env := testenv.Get(t)
	triggers := `
resource "nimbus_schedule" "targeted" {
  name     = "targeted"
  function = ` + aliasTarget + `
  rate     = "1d"
  payload  = jsonencode({ action = "env" })
}

resource "nimbus_kv_trigger" "targeted" {
  name     = "targeted"
  function = ` + aliasTarget + `
  prefix   = "acc-orders/targeted/"
  events   = ["put"]
}
`
	t.Cleanup(func() { _, _ = env.Consul.KV().DeleteTree("acc-orders/targeted/", nil) })
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testProviders,
		CheckDestroy: func(*terraform.State) error {
			if keys, _, err := env.Consul.KV().Keys(kvstore.FunctionKey("targeted"), "", nil); err != nil || len(keys) != 0 {
				return fmt.Errorf("KV keys left behind: %v (err %v)", keys, err)
			}
			pairs, _, err := env.Consul.KV().List(kvstore.RoutesPrefix, nil)
			if err != nil {
				return err
			}
			for _, p := range pairs {
				if rt, err := kvstore.DecodeRoute(p.Value); err == nil && strings.HasPrefix(rt.Function, "targeted") {
					return fmt.Errorf("route %s left behind", rt.ID)
				}
			}
			return nil
		},
		Steps: []resource.TestStep{
			{
				Config: targetConfig(env, fixtures.goSource, aliasTarget, triggers),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("nimbus_http_route.targeted", tfjsonpath.New("function"), knownvalue.StringExact("targeted:live")),
					statecheck.ExpectKnownValue("nimbus_schedule.targeted", tfjsonpath.New("function"), knownvalue.StringExact("targeted:live")),
					statecheck.ExpectKnownValue("nimbus_kv_trigger.targeted", tfjsonpath.New("function"), knownvalue.StringExact("targeted:live")),
				},
				Check: resource.ComposeTestCheckFunc(
					checkRouteRuns(env, "/targeted", "", "1"),
					func(*terraform.State) error {
						// The periodic job is named after the schedule; the
						// qualified target is only its meta and its run's
						// environment.
						job, _, err := env.Nomad.Jobs().Info(nomadjob.ScheduleJobID("targeted"), nil)
						if err != nil {
							return err
						}
						if job.Meta[nomadjob.MetaFunction] != "targeted:live" {
							return fmt.Errorf("the schedule's job has meta %v; want function targeted:live", job.Meta)
						}
						return awaitUsage(env, "targeted", "a forced run of the schedule", func() error {
							_, _, err := env.Nomad.Jobs().PeriodicForce(nomadjob.ScheduleJobID("targeted"), nil)
							return err
						})
					},
					func(*terraform.State) error {
						// Once the trigger's worker has saved its starting
						// point, a change is delivered.
						for i := 0; ; i++ {
							if pair, _, err := env.Consul.KV().Get(kvTriggerStateKey("targeted"), nil); err == nil && pair != nil {
								break
							}
							if i == 240 {
								return fmt.Errorf("the KV trigger never started: no progress at %s", kvTriggerStateKey("targeted"))
							}
							time.Sleep(250 * time.Millisecond)
						}
						return awaitUsage(env, "targeted", "a change under the KV trigger's prefix", func() error {
							_, err := env.Consul.KV().Put(&consulapi.KVPair{Key: "acc-orders/targeted/1", Value: []byte(`{"n":1}`)}, nil)
							return err
						})
					},
				),
			},
			{
				// A code change publishes version 2 and moves the alias; the
				// route, unchanged, follows it.
				Config: targetConfig(env, fixtures.goSourceV2, aliasTarget, triggers),
				Check:  checkRouteRuns(env, "/targeted", "2\n", "2"),
			},
			{
				// A key that may invoke the function may call its alias's
				// route: keys name functions, not their versions.
				Config: targetConfigAs(env, fixtures.goSourceV2, aliasTarget, "API_KEY", `
resource "nimbus_access_key" "caller" {
  description = "calls the alias's route"
  invoke      = [nimbus_function.fn.name]
}
`),
				Check: checkRouteRunsAs(env, "nimbus_access_key.caller", "/targeted", "2\n", "2"),
			},
			{
				// A route on a version runs that version, whatever the alias does.
				Config: targetConfig(env, fixtures.goSourceV2, `"${nimbus_function.fn.name}:1"`, ""),
				Check:  checkRouteRuns(env, "/targeted", "", "1"),
			},
			{
				Config: targetConfig(env, fixtures.goSourceV2, `"${nimbus_function.fn.name}:$LATEST"`, ""),
				Check:  checkRouteRuns(env, "/targeted", "2\n", "$LATEST"),
			},
			{
				// A new route on a version that was never published.
				Config: targetConfig(env, fixtures.goSourceV2, aliasTarget, `
resource "nimbus_http_route" "unpublished" {
  function      = "${nimbus_function.fn.name}:9"
  path          = "/targeted-v9"
  authorization = "NONE"
}
`),
				ExpectError: regexp.MustCompile(`(?s)Version\s+9\s+of\s+function\s+targeted\s+is\s+not\s+published.*publish\s+=\s+true`),
			},
			{
				// A route moved to an alias that does not exist stays as it was.
				Config:      targetConfig(env, fixtures.goSourceV2, `"${nimbus_function.fn.name}:canary"`, ""),
				ExpectError: regexp.MustCompile(`(?s)Function\s+targeted\s+has\s+no\s+alias\s+canary.*Declare\s+it\s+with\s+a\s+nimbus_alias`),
			},
			{
				Config: targetConfig(env, fixtures.goSourceV2, aliasTarget, ""),
				Check:  checkRouteRuns(env, "/targeted", "2\n", "2"),
			},
		},
	})
}
