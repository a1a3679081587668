package nomadjob

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
)

var update = flag.Bool("update", false, "rewrite the golden files")

var goldenCases = map[string]struct {
	fn   model.Function
	opts Options
}{
	"provided-defaults": {fn: model.Function{Name: "hello", Runtime: model.RuntimeProvided}},
	"python-full": {
		fn: model.Function{
			Name: "resize", Description: "Resizes images", Runtime: model.RuntimePython, Handler: "app.handler",
			MemoryMB: 512, CPUMHz: 800, Timeout: 30 * time.Second, Environment: map[string]string{"BUCKET": "images"},
			MinInstances: 1, MaxInstances: 4, IdleTimeout: time.Minute, BillingGranularity: 100 * time.Millisecond,
		},
		opts: Options{Namespace: "functions", Region: "eu", Datacenters: []string{"dc1", "dc2"}},
	},
	"http-concurrent": {fn: model.Function{Name: "web", Runtime: model.RuntimeHTTP, Handler: "bin/server", Concurrency: 20}},
	"python-secrets": {fn: model.Function{
		Name: "orders", Runtime: model.RuntimePython, Handler: "app.handler",
		Secrets: map[string]protocol.SecretRef{
			"DB_PASSWORD": {Path: "nomad/jobs/nimbus-fn-orders/fn", Key: "password"},
			"DB_USER":     {Path: "nomad/jobs/nimbus-fn-orders/fn", Key: "user"},
			"API_KEY":     {Path: "nomad/jobs/nimbus-fn-orders", Key: "api_key"},
		},
	}},
}

func TestRenderGolden(t *testing.T) {
	src := Source{URL: ArtifactURL("http://gateway:8080/", "ab12"), SHA256: "ab12", FromStore: true}
	for name, tc := range goldenCases {
		t.Run(name, func(t *testing.T) {
			got, err := json.MarshalIndent(Render(tc.fn, src, tc.opts), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", name+".golden.json")
			if *update {
				if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/nomadjob -update to create it)", err)
			}
			if string(want) != string(got)+"\n" {
				t.Errorf("rendered job differs from %s; if the change is intended, rerun with -update and review the diff\n%s", path, got)
			}
		})
	}
}

// A package of the store is the host's to fetch: the job names its URL
// and digest and has no artifact block, which would run go-getter first.
func TestRenderHostFetchesPackagesOfTheStore(t *testing.T) {
	f := model.Function{Name: "hello", Runtime: model.RuntimeProvided}
	u := "http://g/v1/artifacts/sha256/ff?X-Nimbus-Expires=1&X-Nimbus-Signature=s"
	job := Render(f, Source{URL: u, SHA256: "ff", FromStore: true}, Options{})
	task := job.TaskGroups[0].Tasks[0]
	if len(task.Artifacts) != 0 {
		t.Errorf("artifact block %+v: the host fetches the package", task.Artifacts[0])
	}
	if task.Env[protocol.EnvPackageURL] != u || task.Env[protocol.EnvPackageSHA256] != "ff" {
		t.Errorf("package env %q %q", task.Env[protocol.EnvPackageURL], task.Env[protocol.EnvPackageSHA256])
	}
	if ArtifactSource(job) != u {
		t.Errorf("ArtifactSource %q, want the host's package URL", ArtifactSource(job))
	}
	if job.Meta[MetaSource] != "ff" {
		t.Errorf("meta %v", job.Meta)
	}

	// Egress none: the instance reaches nothing, not even the gateway, so
	// Nomad fetches the code, verified by its checksum; on the host's
	// network, where egress is not enforced, the host does.
	sealed := model.Function{Name: "sealed", Runtime: model.RuntimeProvided, Egress: model.EgressNone}
	task = Render(sealed, Source{URL: u, SHA256: "ff", FromStore: true}, Options{}).TaskGroups[0].Tasks[0]
	if len(task.Artifacts) != 1 || task.Artifacts[0].GetterOptions["checksum"] != "sha256:ff" || task.Env[protocol.EnvPackageURL] != "" {
		t.Errorf("egress none: artifacts %v, package URL %q; want Nomad to fetch", task.Artifacts, task.Env[protocol.EnvPackageURL])
	}
	task = Render(sealed, Source{URL: u, SHA256: "ff", FromStore: true}, Options{HostNetwork: true}).TaskGroups[0].Tasks[0]
	if len(task.Artifacts) != 0 || task.Env[protocol.EnvPackageURL] != u {
		t.Errorf("host network: artifacts %v, package URL %q; want the host to fetch", task.Artifacts, task.Env[protocol.EnvPackageURL])
	}
}

func TestRenderShape(t *testing.T) {
	f := model.Function{Name: "hello", Runtime: model.RuntimeNode, Handler: "index.handler", MinInstances: 2, MaxInstances: 7, Timeout: 10 * time.Second}
	job := Render(f, Source{URL: "http://g/v1/artifacts/sha256/ff", SHA256: "ff"}, Options{})
	tg := job.TaskGroups[0]
	task := tg.Tasks[0]
	switch {
	case *job.ID != "nimbus-fn-hello":
		t.Errorf("job id %s", *job.ID)
	case *tg.Count != 2 || *tg.Scaling.Min != 2 || *tg.Scaling.Max != 7:
		t.Errorf("count %d, scaling %d..%d", *tg.Count, *tg.Scaling.Min, *tg.Scaling.Max)
	case *tg.Update.MaxParallel != 0:
		t.Error("function jobs must not create deployments")
	case task.Artifacts[0].GetterOptions["checksum"] != "sha256:ff":
		t.Errorf("artifact checksum %v", task.Artifacts[0].GetterOptions)
	case *task.KillTimeout != 15*time.Second:
		t.Errorf("kill timeout %s should exceed the function timeout", *task.KillTimeout)
	case task.Services[0].Name != "nimbus-fn-hello" || task.Services[0].Checks[0].Path != "/healthz":
		t.Errorf("service %+v", task.Services[0])
	case tg.Volumes["usr"] == nil || task.Env["NIMBUS_NODE"] != "/usr/bin/node":
		t.Error("nodejs functions mount the host's /usr for the interpreter")
	case job.Meta[MetaSource] != "ff" || job.Meta[MetaManaged] != ManagedBy:
		t.Errorf("meta %v", job.Meta)
	}
	if ArtifactSource(job) != "http://g/v1/artifacts/sha256/ff" {
		t.Errorf("ArtifactSource of a source_url job: %q", ArtifactSource(job))
	}
	if Render(model.Function{Name: "x", Runtime: model.RuntimeProvided}, Source{}, Options{}).TaskGroups[0].Volumes["usr"] != nil {
		t.Error("provided functions do not see the host's /usr")
	}

	canary := RenderCanary(f, Source{URL: "u", SHA256: "ff"}, Options{})
	if *canary.ID != "nimbus-canary-hello" || *canary.TaskGroups[0].Count != 1 || canary.TaskGroups[0].Scaling != nil ||
		canary.TaskGroups[0].Tasks[0].Services[0].Name != "nimbus-canary-hello" {
		t.Errorf("canary job %s count %d", *canary.ID, *canary.TaskGroups[0].Count)
	}
	if job.TaskGroups[0].Tasks[0].Services[0].Name != "nimbus-fn-hello" {
		t.Error("rendering the canary must not change the function's job")
	}
}
