package nomadjob_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/aws/aws-lambda-go/lambda" // testdata/probe is built with it
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/agents"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testkit"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/packaging"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
)

var (
	gatewayBin string
	fnDir      string // built function sources
)

// gateway starts the real nimbus-gateway (its artifact store) once.
func gateway(t *testing.T) *testenv.Gateway {
	t.Helper()
	gw, err := testenv.Get(t).SharedGateway(gatewayBin)
	if err != nil {
		t.Fatal(err)
	}
	return gw
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "nimbus-nomadjob-test-")
	if err != nil {
		panic(err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	fnDir = filepath.Join(dir, "functions")
	gatewayBin = filepath.Join(dir, "nimbus-gateway")
	if err := testenv.BuildStatic(map[string]string{
		filepath.Join(dir, "runtime", "bin", "nimbus-host"): "./runtime/cmd/nimbus-host",
		filepath.Join(dir, "nimbus-gateway"):                "./runtime/cmd/nimbus-gateway",
		filepath.Join(fnDir, "probe", "bootstrap"):          "./internal/nomadjob/testdata/probe",
	}); err != nil {
		panic(err)
	}
	testenv.Main(m, testenv.Options{HostVolumes: map[string]string{
		nomadjob.HostVolumeRuntime: filepath.Join(dir, "runtime"),
		nomadjob.HostVolumeUsr:     "/usr",
	}})
}

// upload packages a source directory and stores it in the gateway.
func upload(t *testing.T, dir string) nomadjob.Source {
	t.Helper()
	pkg, err := packaging.ZipDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return testkit.Upload(t, gateway(t).URL, gateway(t).Token(), pkg)
}

func register(t *testing.T, env *testenv.Env, job *nomadapi.Job) {
	t.Helper()
	if _, _, err := env.Nomad.Jobs().Register(job, nil); err != nil {
		t.Fatalf("register %s: %v", *job.ID, err)
	}
	t.Cleanup(func() { _, _, _ = env.Nomad.Jobs().Deregister(*job.ID, true, nil) })
}

// instanceKeys are the keys of the instances instanceURL found, by URL.
var instanceKeys sync.Map

// instanceURL waits for the function's one instance to pass its check and
// reads its key, as the gateway would.
func instanceURL(t *testing.T, env *testenv.Env, service string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	e := testkit.WaitInstances(ctx, t, env.Consul, service, 1)
	url := fmt.Sprintf("http://%s:%d", e.Service.Address, e.Service.Port)
	key, err := testkit.InstanceKey(ctx, env.Nomad, service, nomadjob.InstanceKeyPath)
	if err != nil {
		t.Fatalf("reading the instance key of %s: %v", service, err)
	}
	instanceKeys.Store(url, key)
	return url
}

func invoke(t *testing.T, url, event string) (http.Header, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/invoke", strings.NewReader(event))
	if key, ok := instanceKeys.Load(url); ok {
		req.Header.Set(protocol.HeaderInstanceKey, key.(string))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("invoke answered %d %q", resp.StatusCode, body)
	}
	return resp.Header, out
}

func TestRenderedJobValidatesOnNomad(t *testing.T) {
	env := testenv.Get(t)
	for name, tc := range map[string]model.Function{
		"provided": {Name: "v-provided", Runtime: model.RuntimeProvided},
		"python":   {Name: "v-python", Runtime: model.RuntimePython, Handler: "app.handler", MinInstances: 1, MaxInstances: 3},
		"http":     {Name: "v-http", Runtime: model.RuntimeHTTP, Concurrency: 10},
		"secrets": {Name: "v-secrets", Runtime: model.RuntimePython, Handler: "app.handler",
			Secrets: map[string]protocol.SecretRef{"TOKEN": {Path: "nomad/jobs/nimbus-fn-v-secrets", Key: "token"}}},
	} {
		resp, _, err := env.Nomad.Jobs().Validate(nomadjob.Render(tc, nomadjob.Source{URL: "http://g/x", SHA256: strings.Repeat("ab", 32)}, nomadjob.Options{}), nil)
		if err != nil || resp.Error != "" || len(resp.ValidationErrors) > 0 {
			t.Errorf("%s: Nomad refused the rendered job: %v %s %v", name, err, resp.Error, resp.ValidationErrors)
		}
		if resp.Warnings != "" {
			t.Logf("%s: Nomad warns: %s", name, resp.Warnings)
		}
	}
}

func TestProvidedAndPythonFunctionsRun(t *testing.T) {
	env := testenv.Get(t)

	probe := model.Function{Name: "probe-run", Runtime: model.RuntimeProvided, MinInstances: 1, MaxInstances: 1}
	register(t, env, nomadjob.Render(probe, upload(t, filepath.Join(fnDir, "probe")), nomadjob.Options{}))
	py := model.Function{Name: "py-run", Runtime: model.RuntimePython, Handler: "app.handler", MinInstances: 1, MaxInstances: 1}
	register(t, env, nomadjob.Render(py, upload(t, "testdata/pyfn"), nomadjob.Options{}))

	hdr, out := invoke(t, instanceURL(t, env, "nimbus-fn-probe-run"), `{"action":"look"}`)
	if hdr.Get("X-Nimbus-Function-Error") != "" || out["uid"] == nil {
		t.Fatalf("provided function: %v %v", hdr, out)
	}
	hdr, out = invoke(t, instanceURL(t, env, "nimbus-fn-py-run"), `{"name":"nomad"}`)
	if hdr.Get("X-Nimbus-Function-Error") != "" || out["hello"] != "nomad" || !strings.HasPrefix(fmt.Sprint(out["python"]), "3.") {
		t.Fatalf("python function: %v %v", hdr, out)
	}
}

func TestSandboxHolds(t *testing.T) {
	env := testenv.Get(t)
	root, _ := agents.RepoRoot()

	// A neighbour whose task dir the probe must not see.
	other := model.Function{Name: "neighbour", Runtime: model.RuntimeProvided, MinInstances: 1, MaxInstances: 1}
	register(t, env, nomadjob.Render(other, upload(t, filepath.Join(fnDir, "probe")), nomadjob.Options{}))
	instanceURL(t, env, "nimbus-fn-neighbour")
	allocs, _, err := env.Nomad.Jobs().Allocations("nimbus-fn-neighbour", false, nil)
	if err != nil || len(allocs) == 0 {
		t.Fatal(err)
	}
	neighbourDir := filepath.Join(env.Dir, "nomad", "alloc", allocs[0].ID)
	if _, err := os.Stat(neighbourDir); err != nil {
		t.Fatalf("the neighbour's alloc dir should exist on the host: %v", err)
	}

	f := model.Function{Name: "sandbox", Runtime: model.RuntimeProvided, MemoryMB: 64, MinInstances: 1, MaxInstances: 1}
	register(t, env, nomadjob.Render(f, upload(t, filepath.Join(fnDir, "probe")), nomadjob.Options{}))
	url := instanceURL(t, env, "nimbus-fn-sandbox")

	event, _ := json.Marshal(map[string]any{"action": "look", "paths": []string{"/root", root, neighbourDir, env.Dir, "/local/function/bootstrap"}})
	_, out := invoke(t, url, string(event))
	if out["uid"] != float64(65534) {
		t.Errorf("the function runs as uid %v, want nobody (65534)", out["uid"])
	}
	visible := out["visible"].(map[string]any)
	for _, hidden := range []string{"/root", root, neighbourDir, env.Dir} {
		if visible[hidden] != false {
			t.Errorf("the function can see %s", hidden)
		}
	}
	if visible["/local/function/bootstrap"] != true {
		t.Error("the function cannot see its own code; the check above would prove nothing")
	}
	procs := out["processes"].([]any)
	for _, p := range procs {
		if s := fmt.Sprint(p); s != "" && !strings.Contains(s, "nimbus-host") && !strings.Contains(s, "bootstrap") {
			t.Errorf("the function sees a process that is not its own: %q", s)
		}
	}
	if len(procs) == 0 || len(procs) > 3 {
		t.Errorf("the function sees %d processes, want only its host and itself: %v", len(procs), procs)
	}
	t.Logf("sandbox root holds %v; processes %v", out["root"], procs)

	hdr, out := invoke(t, url, `{"action":"alloc","mb":256}`)
	if hdr.Get("X-Nimbus-Error-Type") != "Runtime.OutOfMemory" {
		t.Errorf("allocating past memory_mb: %v %v, want Runtime.OutOfMemory", hdr.Get("X-Nimbus-Error-Type"), out)
	}
}

// A package altered in the store after upload never runs: nimbus-host
// fetches it, finds that its bytes do not hash to the job's digest, and
// exits before unpacking anything.
func TestTamperedBlobFailsTheAllocation(t *testing.T) {
	env := testenv.Get(t)
	src := upload(t, "testdata/pyfn")
	// Someone with access to the store's disk changes the package.
	blob := filepath.Join(gateway(t).DataDir, "sha256", src.SHA256)
	if err := os.Chmod(blob, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(blob, []byte("PK tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	job := nomadjob.Render(model.Function{Name: "tampered", Runtime: model.RuntimePython, Handler: "app.handler", MinInstances: 1, MaxInstances: 1}, src, nomadjob.Options{})
	register(t, env, job)

	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		allocs, _, err := env.Nomad.Jobs().Allocations("nimbus-fn-tampered", true, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range allocs {
			// The host says why it exits, in its own log.
			alloc, _, err := env.Nomad.Allocations().Info(a.ID, nil)
			if err != nil {
				continue
			}
			r, err := env.Nomad.AllocFS().Cat(alloc, "alloc/logs/"+nomadjob.TaskName+".stderr.0", nil)
			if err != nil {
				continue
			}
			b, _ := io.ReadAll(r)
			_ = r.Close()
			if strings.Contains(string(b), "not sha256:"+src.SHA256) && strings.Contains(string(b), "refuses to run it") {
				if entries, _, err := env.Nomad.AllocFS().List(alloc, nomadjob.TaskName+"/"+nomadjob.CodeDir, nil); err == nil && len(entries) > 0 {
					t.Fatalf("the host unpacked the tampered package: %s holds %d entries", nomadjob.CodeDir, len(entries))
				}
				t.Logf("nimbus-host refused the package: %s", lastLine(string(b)))
				return
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatal("nimbus-host did not report the tampered package")
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// TestClientGrantsNoCapabilities registers, as someone with submit-job
// might, a function job that asks for a capability back. The client's
// exec driver allows none (allow_caps = [], as in
// examples/platform/nomad-client.hcl), so the task never starts with it.
func TestClientGrantsNoCapabilities(t *testing.T) {
	env := testenv.Get(t)
	f := model.Function{Name: "wants-caps", Runtime: model.RuntimeProvided, MinInstances: 1, MaxInstances: 1}
	job := nomadjob.Render(f, upload(t, filepath.Join(fnDir, "probe")), nomadjob.Options{})
	job.TaskGroups[0].RestartPolicy = &nomadapi.RestartPolicy{Attempts: testkit.Ptr(0), Mode: testkit.Ptr("fail")}
	job.TaskGroups[0].ReschedulePolicy = &nomadapi.ReschedulePolicy{Attempts: testkit.Ptr(0), Unlimited: testkit.Ptr(false)}
	job.TaskGroups[0].Tasks[0].Config["cap_add"] = []string{"chown"}
	register(t, env, job)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		allocs, _, err := env.Nomad.Jobs().Allocations(*job.ID, true, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range allocs {
			for _, st := range a.TaskStates {
				for _, ev := range st.Events {
					msg := strings.ToLower(ev.DisplayMessage + " " + ev.DriverError)
					if strings.Contains(msg, "cap") && strings.Contains(msg, "chown") {
						t.Logf("the client refused: %s", ev.DisplayMessage)
						return
					}
				}
				if st.State == "running" {
					t.Fatalf("a task that asked for CAP_CHOWN runs: the client's exec driver must allow no capabilities")
				}
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatal("the task neither ran nor was refused for its capability within 60 s")
}
