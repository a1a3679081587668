package provider

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
)

// invokeTarget invokes <name>[:<qualifier>] through the gateway's native
// API, as a caller would; query, if any, follows the path.
func invokeTarget(env *testenv.Env, target, event string, query ...string) (invokeAnswer, error) {
	path := "/v1/functions/" + target + "/invoke"
	if len(query) > 0 {
		path += "?" + strings.Join(query, "&")
	}
	resp, err := gateway(env).Do(http.MethodPost, path, strings.NewReader(event))
	if err != nil {
		return invokeAnswer{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	a := invokeAnswer{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	_ = json.Unmarshal(b, &a.body)
	return a, nil
}

// checkVersionAnswers checks that invoking target runs the code whose
// VERSION file holds code ("" for none), as version executed.
func checkVersionAnswers(env *testenv.Env, target, code, executed string) resource.TestCheckFunc {
	return func(*terraform.State) error {
		a, err := invokeTarget(env, target, `{"action":"file","value":"VERSION"}`)
		if err != nil {
			return err
		}
		if a.status != http.StatusOK || a.body["file"] != code {
			return fmt.Errorf("invoking %s: %d %s; want the code whose VERSION is %q", target, a.status, a.raw, code)
		}
		if got := a.header.Get("X-Amz-Executed-Version"); got != executed {
			return fmt.Errorf("invoking %s: X-Amz-Executed-Version %q, want %q", target, got, executed)
		}
		env, err := invokeTarget(env, target, `{"action":"env"}`)
		if err != nil {
			return err
		}
		if env.body["AWS_LAMBDA_FUNCTION_VERSION"] != executed {
			return fmt.Errorf("invoking %s: the handler sees AWS_LAMBDA_FUNCTION_VERSION %v, want %q", target, env.body["AWS_LAMBDA_FUNCTION_VERSION"], executed)
		}
		return nil
	}
}

// checkVersionJob checks, as a user would in the Nomad UI, that version n
// runs as its own job, which starts at zero instances.
func checkVersionJob(env *testenv.Env, function string, n int) resource.TestCheckFunc {
	return func(*terraform.State) error {
		id := nomadjob.VersionJobID(function, n)
		job, _, err := env.Nomad.Jobs().Info(id, nil)
		if err != nil {
			return fmt.Errorf("version %d has no job %s: %w", n, id, err)
		}
		if job.Meta[nomadjob.MetaVersion] != fmt.Sprint(n) || job.Meta[nomadjob.MetaFunction] != function {
			return fmt.Errorf("job %s has meta %v; want version %d of %s", id, job.Meta, n, function)
		}
		if s := job.TaskGroups[0].Scaling; s == nil || s.Min == nil || *s.Min != 0 {
			return fmt.Errorf("job %s scales from %+v; a version scales to zero", id, s)
		}
		return nil
	}
}

// With publish, each change of code or configuration publishes an
// immutable version that runs as its own job and answers <name>:<n> with
// its own code, while the function's $LATEST moves on; a change of the
// instance counts alone publishes nothing; destroying the function removes
// its versions.
func TestAccFunctionVersions(t *testing.T) {
	requireAcceptance(t)
	env := testenv.Get(t)
	const res = "nimbus_function.fn"
	cfg := func(src string, minInstances int) string {
		return functionConfig(env, fmt.Sprintf(`
  name          = "versioned"
  runtime       = "provided"
  source        = %q
  publish       = true
  min_instances = %d
  timeout       = "10s"`, src, minInstances))
	}
	url := gateway(env).URL + "/v1/functions/versioned"
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testProviders,
		CheckDestroy: func(*terraform.State) error {
			for _, n := range []int{1, 2} {
				if _, _, err := env.Nomad.Jobs().Info(nomadjob.VersionJobID("versioned", n), nil); err == nil || !strings.Contains(err.Error(), "404") {
					return fmt.Errorf("the job of version %d still exists after destroy (err %v)", n, err)
				}
			}
			if keys, _, _ := env.Consul.KV().Keys(kvstore.FunctionKey("versioned"), "", nil); len(keys) != 0 {
				return fmt.Errorf("KV keys left behind: %v", keys)
			}
			return nil
		},
		Steps: []resource.TestStep{
			{
				Config: functionConfig(env, fmt.Sprintf(`
  name    = "versioned"
  runtime = "provided"
  source  = %q
  publish = true
  secrets = {
    USER_SETTING = { path = %q, key = "k" }
  }`, fixtures.goSource, model.SecretsRoot("versioned"))),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`(?s)Versions\s+cannot\s+read\s+secrets\s+yet.*Remove\s+publish`),
			},
			{
				Config: cfg(fixtures.goSource, 0),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectUnknownValue(res, tfjsonpath.New("version")),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(res, tfjsonpath.New("version"), knownvalue.StringExact("1")),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("qualified_invoke_url"), knownvalue.StringExact(url+":1/invoke")),
				},
				Check: resource.ComposeTestCheckFunc(
					checkVersionJob(env, "versioned", 1),
					checkVersionAnswers(env, "versioned:1", "", "1"),
					checkVersionAnswers(env, "versioned", "", "$LATEST"),
				),
			},
			{
				// A code change publishes version 2; version 1 keeps its code.
				Config: cfg(fixtures.goSourceV2, 0),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectUnknownValue(res, tfjsonpath.New("version")),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(res, tfjsonpath.New("version"), knownvalue.StringExact("2")),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("qualified_invoke_url"), knownvalue.StringExact(url+":2/invoke")),
				},
				Check: resource.ComposeTestCheckFunc(
					checkVersionJob(env, "versioned", 1),
					checkVersionJob(env, "versioned", 2),
					checkVersionAnswers(env, "versioned:1", "", "1"),
					checkVersionAnswers(env, "versioned:2", "2\n", "2"),
					checkVersionAnswers(env, "versioned", "2\n", "$LATEST"),
					checkVersionAnswers(env, "versioned:$LATEST", "2\n", "$LATEST"),
				),
			},
			{
				// The instance counts are not part of a version.
				Config: cfg(fixtures.goSourceV2, 1),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectKnownValue(res, tfjsonpath.New("version"), knownvalue.StringExact("2")),
				}},
				Check: func(*terraform.State) error {
					// A version that was never published, and a qualifier
					// that is neither a version nor an alias name.
					for target, want := range map[string]int{"versioned:3": http.StatusNotFound, "versioned:01": http.StatusBadRequest, "versioned:a.b": http.StatusBadRequest} {
						a, err := invokeTarget(env, target, `{}`)
						if err != nil {
							return err
						}
						var body struct {
							Message string `json:"errorMessage"`
						}
						_ = json.Unmarshal([]byte(a.raw), &body)
						if a.status != want || body.Message == "" {
							return fmt.Errorf("invoking %s: %d %s; want %d with a message", target, a.status, a.raw, want)
						}
					}
					return nil
				},
			},
			{
				// The qualifier may come in the query instead.
				Config: cfg(fixtures.goSourceV2, 1),
				Check: func(*terraform.State) error {
					a, err := invokeTarget(env, "versioned", `{"action":"file","value":"VERSION"}`, "qualifier=1")
					if err != nil {
						return err
					}
					if a.status != http.StatusOK || a.body["file"] != "" || a.header.Get("X-Amz-Executed-Version") != "1" {
						return fmt.Errorf("versioned with qualifier=1: %d %s (executed %q); want version 1's code", a.status, a.raw, a.header.Get("X-Amz-Executed-Version"))
					}
					return nil
				},
			},
		},
	})
}

// checkVersionGone checks that version n of function has neither a job nor
// a record, and that callers of it get a 404.
func checkVersionGone(env *testenv.Env, function string, n int) resource.TestCheckFunc {
	return func(*terraform.State) error {
		if _, _, err := env.Nomad.Jobs().Info(nomadjob.VersionJobID(function, n), nil); err == nil || !strings.Contains(err.Error(), "404") {
			return fmt.Errorf("version %d's job still exists (err %v)", n, err)
		}
		if pair, _, err := env.Consul.KV().Get(kvstore.VersionKey(function, n), nil); err != nil || pair != nil {
			return fmt.Errorf("version %d's record still exists (err %v)", n, err)
		}
		a, err := invokeTarget(env, fmt.Sprintf("%s:%d", function, n), `{}`)
		if err != nil {
			return err
		}
		if a.status != http.StatusNotFound {
			return fmt.Errorf("invoking collected version %d: %d %s; want 404", n, a.status, a.raw)
		}
		return nil
	}
}

// Versions that nothing references are collected by the first apply after
// their grace period, never before it; the latest version and a version an
// alias names are never collected.
func TestAccFunctionVersionsAreCollected(t *testing.T) {
	requireAcceptance(t)
	env := testenv.Get(t)
	cfg := func(setting string) string {
		return functionConfig(env, fmt.Sprintf(`
  name                 = "collected"
  runtime              = "provided"
  source               = %q
  publish              = true
  version_grace_period = "3s"
  environment = {
    USER_SETTING = %q
  }`, fixtures.goSource, setting)) + `
resource "nimbus_alias" "pinned" {
  name             = "pinned"
  function         = nimbus_function.fn.name
  function_version = "1"
}
`
	}
	pause := func() { time.Sleep(4 * time.Second) }
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testProviders,
		Steps: []resource.TestStep{
			{Config: cfg("1")},
			{Config: cfg("2")},
			{
				// Version 2 is no longer the latest, and nothing names it:
				// it waits out its grace period.
				Config: cfg("3"),
				Check: resource.ComposeTestCheckFunc(
					checkVersionJob(env, "collected", 2),
					checkVersionAnswers(env, "collected:2", "", "2"),
				),
			},
			{
				PreConfig: pause,
				Config:    cfg("4"),
				Check: resource.ComposeTestCheckFunc(
					checkVersionGone(env, "collected", 2),
					checkVersionJob(env, "collected", 1), // the alias names it
					checkVersionJob(env, "collected", 3), // in its grace period
					checkVersionJob(env, "collected", 4), // the latest
					checkVersionAnswers(env, "collected:pinned", "", "1"),
				),
			},
			{
				PreConfig: pause,
				Config:    cfg("5"),
				Check: resource.ComposeTestCheckFunc(
					checkVersionGone(env, "collected", 3),
					checkVersionJob(env, "collected", 1),
					checkVersionJob(env, "collected", 5),
				),
			},
		},
	})
}
