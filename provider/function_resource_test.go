package provider

import (
	"archive/zip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/clients"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testkit"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/packaging"
)

func functionConfig(env *testenv.Env, body string) string {
	return providerConfig(env) + "\nresource \"nimbus_function\" \"fn\" {\n" + body + "\n}\n"
}

func digest(t *testing.T, dir string) string {
	t.Helper()
	pkg, err := packaging.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	return pkg.SHA256
}

func checkInvokes(env *testenv.Env, service, event, key, want string) resource.TestCheckFunc {
	return func(*terraform.State) error {
		entries, _, err := env.Consul.Health().Service(service, "", true, nil)
		if err != nil || len(entries) == 0 {
			return fmt.Errorf("no healthy instance of %s in Consul (err %v)", service, err)
		}
		// Through the gateway, as a caller with a key: an instance runs
		// invocations from the gateway only.
		resp, err := gateway(env).Do(http.MethodPost, "/v1/functions/"+strings.TrimPrefix(service, "nimbus-fn-")+"/invoke", strings.NewReader(event))
		if err != nil {
			return err
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		var out map[string]any
		if err := json.Unmarshal(b, &out); err != nil {
			return fmt.Errorf("invoke %s: %d %s", service, resp.StatusCode, b)
		}
		if fmt.Sprint(out[key]) != want {
			return fmt.Errorf("invoke %s: %s = %v, want %q (%s)", service, key, out[key], want, b)
		}
		return nil
	}
}

func checkJob(env *testenv.Env, jobID string, check func(memory int, version uint64) error) resource.TestCheckFunc {
	return func(*terraform.State) error {
		job, _, err := env.Nomad.Jobs().Info(jobID, nil)
		if err != nil {
			return err
		}
		return check(*job.TaskGroups[0].Tasks[0].Resources.MemoryMB, *job.Version)
	}
}

// checkVersionRuns checks that the state's job_version is the job version
// Nomad runs.
func checkVersionRuns(env *testenv.Env, res, jobID string) resource.TestCheckFunc {
	return resource.TestCheckResourceAttrWith(res, "job_version", func(v string) error {
		job, _, err := env.Nomad.Jobs().Info(jobID, nil)
		if err != nil {
			return err
		}
		if v != fmt.Sprint(*job.Version) {
			return fmt.Errorf("job_version is %s, but Nomad runs version %d of %s", v, *job.Version, jobID)
		}
		return nil
	})
}

// checkBlueGreen checks, as a user would in the Nomad UI, that the last
// deployment of the job replaced its instances blue/green: canaries
// promoted, all healthy, and that the job then went back to no
// deployments (max_parallel 0), so that scaling is never refused.
func checkBlueGreen(env *testenv.Env, jobID string, instances int) resource.TestCheckFunc {
	return func(*terraform.State) error {
		d, _, err := env.Nomad.Jobs().LatestDeployment(jobID, nil)
		if err != nil || d == nil {
			return fmt.Errorf("no deployment of %s (err %v)", jobID, err)
		}
		st := d.TaskGroups[nomadjob.GroupName]
		if d.Status != nomadapi.DeploymentStatusSuccessful || st == nil || st.DesiredCanaries != instances || !st.Promoted || st.HealthyAllocs != instances {
			return fmt.Errorf("deployment %s of %s: status %s, group %+v; want %d canaries promoted and healthy", d.ID, jobID, d.Status, st, instances)
		}
		job, _, err := env.Nomad.Jobs().Info(jobID, nil)
		if err != nil {
			return err
		}
		if u := job.TaskGroups[0].Update; u == nil || u.MaxParallel == nil || *u.MaxParallel != 0 {
			return fmt.Errorf("after the deployment, job %s keeps update %+v; want max_parallel 0", jobID, u)
		}
		return nil
	}
}

func TestAccFunctionLifecycle(t *testing.T) {
	requireAcceptance(t)
	env := testenv.Get(t)
	const res = "nimbus_function.fn"
	v1, v2 := fixtures.goSource, fixtures.goSourceV2
	cfg := func(src string, memory int) string {
		return functionConfig(env, fmt.Sprintf(`
  name          = "lifecycle"
  runtime       = "provided"
  source        = %q
  memory_mb     = %d
  min_instances = 1
  timeout       = "10s"
  environment = {
    USER_SETTING = "visible"
  }`, src, memory))
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testProviders,
		CheckDestroy: func(*terraform.State) error {
			if _, _, err := env.Nomad.Jobs().Info("nimbus-fn-lifecycle", nil); err == nil || !strings.Contains(err.Error(), "404") {
				return fmt.Errorf("job nimbus-fn-lifecycle still exists after destroy (err %v)", err)
			}
			if pair, _, err := env.Consul.KV().Get(kvstore.FunctionKey("lifecycle"), nil); err != nil || pair != nil {
				return fmt.Errorf("KV record still exists after destroy (err %v)", err)
			}
			if keys, _, _ := env.Consul.KV().Keys(kvstore.FunctionKey("lifecycle"), "", nil); len(keys) != 0 {
				return fmt.Errorf("KV keys left behind: %v", keys)
			}
			return nil
		},
		Steps: []resource.TestStep{
			{
				Config: cfg(v1, 128),
				// The environment may hold credentials: a plan must not print it.
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectSensitiveValue(res, tfjsonpath.New("environment")),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(res, tfjsonpath.New("job_id"), knownvalue.StringExact("nimbus-fn-lifecycle")),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("job_version"), knownvalue.Int64Exact(0)),
					// Nothing is published without publish.
					statecheck.ExpectKnownValue(res, tfjsonpath.New("version"), knownvalue.StringExact("$LATEST")),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("qualified_invoke_url"), knownvalue.StringExact(gateway(env).URL+"/v1/functions/lifecycle:$LATEST/invoke")),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("source_sha256"), knownvalue.StringExact(digest(t, v1))),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("handler"), knownvalue.StringExact("bootstrap")),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("cpu_mhz"), knownvalue.Int64Exact(128)),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("invoke_url"), knownvalue.StringExact(gateway(env).URL+"/v1/functions/lifecycle/invoke")),
				},
				Check: resource.ComposeTestCheckFunc(
					checkInvokes(env, "nimbus-fn-lifecycle", `{"action":"echo","value":"v1"}`, "echo", "v1"),
					checkInvokes(env, "nimbus-fn-lifecycle", `{"action":"env"}`, "USER_SETTING", "visible"),
					func(*terraform.State) error {
						pair, _, err := env.Consul.KV().Get(kvstore.FunctionKey("lifecycle"), nil)
						if err != nil || pair == nil {
							return fmt.Errorf("no KV record (err %v)", err)
						}
						rec, err := kvstore.DecodeFunction(pair.Value)
						if err != nil || rec.SourceSHA256 != digest(t, v1) || rec.MinInstances != 1 || rec.JobID != "nimbus-fn-lifecycle" {
							return fmt.Errorf("KV record %+v (err %v)", rec, err)
						}
						return nil
					},
				),
			},
			{
				// A code change is a change of source_sha256 and a new job version.
				Config: cfg(v2, 128),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(res, plancheck.ResourceActionUpdate),
					plancheck.ExpectKnownValue(res, tfjsonpath.New("source_sha256"), knownvalue.StringExact(digest(t, v2))),
					plancheck.ExpectUnknownValue(res, tfjsonpath.New("job_version")),
					plancheck.ExpectKnownValue(res, tfjsonpath.New("version"), knownvalue.StringExact("$LATEST")),
					plancheck.ExpectKnownValue(res, tfjsonpath.New("job_id"), knownvalue.StringExact("nimbus-fn-lifecycle")),
				}},
				// The running instance was replaced blue/green: Nomad's
				// deployment started a canary, promoted it, then stopped
				// the old instance; the job is back to no deployments.
				Check: resource.ComposeTestCheckFunc(
					checkInvokes(env, "nimbus-fn-lifecycle", `{"action":"echo","value":"v2"}`, "echo", "v2"),
					checkVersionRuns(env, res, "nimbus-fn-lifecycle"),
					checkBlueGreen(env, "nimbus-fn-lifecycle", 1),
				),
			},
			{
				// A memory change re-renders the job.
				Config: cfg(v2, 256),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(res, tfjsonpath.New("memory_mb"), knownvalue.Int64Exact(256)),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("cpu_mhz"), knownvalue.Int64Exact(256)),
				},
				Check: resource.ComposeTestCheckFunc(
					checkJob(env, "nimbus-fn-lifecycle", func(memory int, _ uint64) error {
						if memory != 256 {
							return fmt.Errorf("Nomad runs the task with %d MB", memory)
						}
						return nil
					}),
					checkVersionRuns(env, res, "nimbus-fn-lifecycle"),
				),
			},
			{
				// The same configuration plans nothing.
				Config:           cfg(v2, 256),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()}},
			},
			{
				ResourceName:                         res,
				ImportState:                          true,
				ImportStateId:                        "lifecycle",
				ImportStateVerify:                    true,
				ImportStateVerifyIdentifierAttribute: "name",
				ImportStateVerifyIgnore:              []string{"source", "timeouts"},
			},
		},
	})
}

func TestAccFunctionDrift(t *testing.T) {
	requireAcceptance(t)
	env := testenv.Get(t)
	config := functionConfig(env, fmt.Sprintf(`
  name    = "drift"
  runtime = "provided"
  source  = %q`, fixtures.goSource))
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testProviders,
		Steps: []resource.TestStep{
			{Config: config},
			{
				// nomad job stop -purge, outside Terraform.
				PreConfig: func() {
					if _, _, err := env.Nomad.Jobs().Deregister("nimbus-fn-drift", true, nil); err != nil {
						t.Fatal(err)
					}
				},
				Config: config,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("nimbus_function.fn", plancheck.ResourceActionCreate),
				}},
				Check: checkJob(env, "nimbus-fn-drift", func(int, uint64) error { return nil }),
			},
			{
				// Memory changed outside Terraform shows as drift to undo.
				PreConfig: func() {
					job, _, err := env.Nomad.Jobs().Info("nimbus-fn-drift", nil)
					if err != nil {
						t.Fatal(err)
					}
					job.TaskGroups[0].Tasks[0].Resources.MemoryMB = testkit.Ptr(512)
					if _, _, err := env.Nomad.Jobs().Register(job, nil); err != nil {
						t.Fatal(err)
					}
				},
				Config: config,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("nimbus_function.fn", plancheck.ResourceActionUpdate),
					plancheck.ExpectKnownValue("nimbus_function.fn", tfjsonpath.New("memory_mb"), knownvalue.Int64Exact(128)),
				}},
			},
		},
	})
}

func TestAccFunctionPython(t *testing.T) {
	requireAcceptance(t)
	env := testenv.Get(t)
	src, _ := filepath.Abs("testdata/pyfn")
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testProviders,
		Steps: []resource.TestStep{{
			Config: functionConfig(env, fmt.Sprintf(`
  name          = "greeter"
  runtime       = "python3"
  handler       = "app.handler"
  source        = %q
  min_instances = 1`, src)),
			Check: checkInvokes(env, "nimbus-fn-greeter", `{"name":"nomad"}`, "greeting", "hello nomad"),
		}},
	})
}

func TestAccFunctionRejectsBadInputAtPlan(t *testing.T) {
	requireAcceptance(t)
	env := testenv.Get(t)
	escaping := filepath.Join(t.TempDir(), "escape.zip")
	writeZip(t, escaping, "../../etc/cron.d/evil")
	src := fixtures.goSource
	steps := []struct {
		body string
		want string
	}{
		{fmt.Sprintf(`name = "Bad_Name"
  runtime = "provided"
  source = %q`, src), `(?s)Invalid name.*not a DNS label`},
		{fmt.Sprintf(`name = "mem"
  runtime = "provided"
  source = %q
  memory_mb = 20000`, src), `(?s)memory_mb.*between 64 and 10240`},
		{fmt.Sprintf(`name = "slow"
  runtime = "provided"
  source = %q
  timeout = "16m"`, src), `(?s)Invalid timeout.*16m is out of range: use 1s to 15m`},
		{`name = "nosrc"
  runtime = "provided"
  source = "/does/not/exist"`, `(?s)Source not found.*/does/not/exist`},
		{fmt.Sprintf(`name = "env"
  runtime = "provided"
  source = %q
  environment = { AWS_LAMBDA_FUNCTION_NAME = "x" }`, src), `(?s)Invalid environment.*"AWS_LAMBDA_FUNCTION_NAME" is reserved`},
		{fmt.Sprintf(`name = "zipslip"
  runtime = "provided"
  source = %q`, escaping), `(?s)Cannot package source.*contains "\.\."`},
		{`name = "none"
  runtime = "provided"`, `(?s)Missing source`},
		{fmt.Sprintf(`name = "egress"
  runtime = "provided"
  source = %q
  egress = "internet"`, src), `(?s)egress.*value must be one of.*"public".*"none"`},
		{`name = "url"
  runtime = "provided"
  source_url = "http://127.0.0.1:1/fn.zip"`, `(?s)Missing source_sha256.*verify`},
		{fmt.Sprintf(`name = "both"
  runtime = "provided"
  source = %q
  source_url = "http://127.0.0.1:1/fn.zip"`, src), `(?s)Conflicting sources`},
	}
	for _, s := range steps {
		t.Run(strings.SplitN(s.body, "\n", 2)[0], func(t *testing.T) {
			resource.Test(t, resource.TestCase{
				ProtoV6ProviderFactories: testProviders,
				Steps: []resource.TestStep{{
					Config:      functionConfig(env, s.body),
					PlanOnly:    true,
					ExpectError: regexp.MustCompile(s.want),
				}},
			})
		})
	}
}

func TestAccFunctionTamperedPackageIsReported(t *testing.T) {
	requireAcceptance(t)
	env := testenv.Get(t)
	dir := t.TempDir()
	if err := goSourceWith(dir, "TAMPER", "unique to this test\n"); err != nil {
		t.Fatal(err)
	}
	sha := digest(t, dir)
	cfg := func(memory int) string {
		return functionConfig(env, fmt.Sprintf(`
  name      = "tampered"
  runtime   = "provided"
  source    = %q
  memory_mb = %d`, dir, memory))
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testProviders,
		Steps: []resource.TestStep{
			{Config: cfg(128)},
			{
				// The store's copy changes on disk; the next version must not run it.
				PreConfig: func() {
					blob := filepath.Join(gateway(env).DataDir, "sha256", sha)
					_ = os.Chmod(blob, 0o644)
					if err := os.WriteFile(blob, []byte("PK not what was uploaded"), 0o644); err != nil {
						t.Fatal(err)
					}
				},
				Config: cfg(192),
				// nimbus-host fetches the package, finds it altered and exits
				// before any of it runs; the canary's events show the exit.
				ExpectError: regexp.MustCompile(`(?s)nimbus-host\s+refused\s+the\s+package:\s+the\s+gateway's\s+copy\s+of\s+sha256:` + sha + `\s+does\s+not\s+match\s+its\s+checksum.*Terminated.*left as it was`),
			},
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	job, _, err := env.Nomad.Jobs().Info("nimbus-fn-tampered", (&nomadQuery{}).with(ctx))
	if err == nil && *job.TaskGroups[0].Tasks[0].Resources.MemoryMB != 128 {
		t.Errorf("the failed version replaced the running one (memory %d)", *job.TaskGroups[0].Tasks[0].Resources.MemoryMB)
	}
}

func writeZip(t *testing.T, path string, names ...string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	for _, n := range append([]string{"bootstrap"}, names...) {
		w, _ := zw.Create(n)
		_, _ = w.Write([]byte("x"))
	}
	_ = zw.Close()
	_ = f.Close()
}

type nomadQuery struct{}

func (nomadQuery) with(ctx context.Context) *nomadapi.QueryOptions {
	return (&nomadapi.QueryOptions{}).WithContext(ctx)
}

func TestAccFunctionFromSourceURL(t *testing.T) {
	requireAcceptance(t)
	env := testenv.Get(t)
	pkg, err := packaging.FromPath(fixtures.goSource)
	if err != nil {
		t.Fatal(err)
	}
	store := clients.Artifacts{BaseURL: gateway(env).URL, Token: env.GatewayToken, HTTP: http.DefaultClient}
	if _, err := store.Ensure(context.Background(), pkg.SHA256, pkg.Zip); err != nil {
		t.Fatal(err)
	}
	// A source_url is fetched as it is: here, a signed URL of the store.
	url, _, err := store.SignedURL(context.Background(), pkg.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testProviders,
		Steps: []resource.TestStep{
			{
				Config: functionConfig(env, fmt.Sprintf(`
  name          = "from-url"
  runtime       = "provided"
  source_url    = %q
  source_sha256 = %q
  min_instances = 1`, url, pkg.SHA256)),
				Check: checkInvokes(env, "nimbus-fn-from-url", `{"action":"echo","value":"url"}`, "echo", "url"),
			},
		},
	})
}

// Editing the code in place (same source path) is a change of source_sha256
// and a new version.
func TestAccFunctionCodeEditedInPlace(t *testing.T) {
	requireAcceptance(t)
	env := testenv.Get(t)
	dir := t.TempDir()
	if err := goSourceWith(dir, "VERSION", "1\n"); err != nil {
		t.Fatal(err)
	}
	config := functionConfig(env, fmt.Sprintf(`
  name    = "in-place"
  runtime = "provided"
  source  = %q`, dir))
	var edited string
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testProviders,
		Steps: []resource.TestStep{
			{Config: config},
			{
				PreConfig: func() {
					_ = os.WriteFile(filepath.Join(dir, "VERSION"), []byte("2\n"), 0o644)
					edited = digest(t, dir)
				},
				Config: config,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("nimbus_function.fn", plancheck.ResourceActionUpdate),
					plancheck.ExpectUnknownValue("nimbus_function.fn", tfjsonpath.New("job_version")),
				}},
				Check: func(s *terraform.State) error {
					got := s.RootModule().Resources["nimbus_function.fn"].Primary.Attributes["source_sha256"]
					if got != edited {
						return fmt.Errorf("source_sha256 %s, want the edited code's %s", got, edited)
					}
					return nil
				},
			},
		},
	})
}

// The signed URL that Nomad clients fetch a function's code with is shown
// in the state; within 30 days of its expiry a plan shows the function
// updated, and the apply renews it.
func TestAccFunctionArtifactURLRenewal(t *testing.T) {
	requireAcceptance(t)
	env := testenv.Get(t)
	// A second gateway of the cluster, with shorter URLs: it shares the
	// store and the signing key, so the function listener serves what it
	// signed.
	short, err := env.StartGatewayOver(fixtures.gatewayBin, "gateway-short-urls", gateway(env), "NIMBUS_GATEWAY_ARTIFACT_URL_TTL=240h")
	if err != nil {
		t.Fatal(err)
	}
	defer short.Stop()
	config := func(gatewayURL string) string {
		return providerConfigWith(env, env.Principals.Deployer, gatewayURL) + fmt.Sprintf(`
resource "nimbus_function" "fn" {
  name    = "renewed"
  runtime = "provided"
  source  = %q
}
`, fixtures.goSource)
	}
	expiresWithin := func(from, to time.Duration) resource.TestCheckFunc {
		return resource.TestCheckResourceAttrWith("nimbus_function.fn", "artifact_url_expires", func(v string) error {
			at, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return fmt.Errorf("artifact_url_expires %q is not RFC 3339", v)
			}
			if left := time.Until(at); left < from || left > to {
				return fmt.Errorf("artifact_url_expires %s is %s away, want between %s and %s", v, left.Round(time.Hour), from, to)
			}
			return nil
		})
	}
	invokes := func(*terraform.State) error {
		resp, err := gateway(env).Do(http.MethodPost, "/v1/functions/renewed/invoke", strings.NewReader(`{"action":"echo","value":"renewed"}`))
		if err != nil {
			return err
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "renewed") {
			return fmt.Errorf("a cold start after the renewal: %d %s", resp.StatusCode, b)
		}
		return nil
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testProviders,
		Steps: []resource.TestStep{
			{
				// A gateway that signs for 10 days: already within 30 days,
				// so even the plan right after the apply renews it.
				Config:             config(short.URL),
				Check:              expiresWithin(9*24*time.Hour, 11*24*time.Hour),
				ExpectNonEmptyPlan: true,
			},
			{
				Config:             config(short.URL),
				PlanOnly:           true,
				ExpectNonEmptyPlan: true,
			},
			{
				// The apply renews through a gateway that signs for a year,
				// and the new URL fetches the code.
				Config: config(gateway(env).URL),
				Check:  resource.ComposeTestCheckFunc(expiresWithin(360*24*time.Hour, 366*24*time.Hour), invokes),
			},
			{
				Config:   config(gateway(env).URL),
				PlanOnly: true,
			},
		},
	})
}
