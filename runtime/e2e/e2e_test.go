package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/aws/aws-lambda-go/lambda" // the test handler is built with it
	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testkit"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/packaging"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/rollout"
)

var fx struct {
	hostVolumes map[string]string
	gatewayBin  string
	goSource    string
	httpSource  string
	// Batch handlers for the event sources' tests.
	sqsSource      string
	rabbitMQSource string
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "nimbus-gateway-test-")
	if err != nil {
		panic(err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	runtimeDir := filepath.Join(dir, "runtime")
	// The gateway job runs it from the runtime volume, as on a cluster.
	fx.gatewayBin = filepath.Join(runtimeDir, "bin", "nimbus-gateway")
	fx.goSource = filepath.Join(dir, "go")
	fx.httpSource = filepath.Join(dir, "http")
	fx.sqsSource = filepath.Join(dir, "sqs")
	fx.rabbitMQSource = filepath.Join(dir, "rabbitmq")
	gatewayData := filepath.Join(dir, "gateway-job-data")
	if err := os.MkdirAll(gatewayData, 0o755); err != nil {
		panic(err)
	}
	if err := os.Chown(gatewayData, 65534, 65534); err != nil {
		panic(err)
	}
	if err := testenv.BuildStatic(map[string]string{
		filepath.Join(runtimeDir, "bin", "nimbus-host"): "./runtime/cmd/nimbus-host",
		fx.gatewayBin:                                 "./runtime/cmd/nimbus-gateway",
		filepath.Join(fx.goSource, "bootstrap"):       "./runtime/host/testdata/lambdago",
		filepath.Join(fx.httpSource, "bootstrap"):     "./runtime/host/testdata/httpserver",
		filepath.Join(fx.sqsSource, "bootstrap"):      "./runtime/host/testdata/sqsconsumer",
		filepath.Join(fx.rabbitMQSource, "bootstrap"): "./runtime/host/testdata/rabbitmqconsumer",
	}); err != nil {
		panic(err)
	}
	fx.hostVolumes = map[string]string{nomadjob.HostVolumeRuntime: runtimeDir, nomadjob.HostVolumeUsr: "/usr"}
	defer stopWorld()
	testenv.Main(m, testenv.Options{
		HostVolumes:         fx.hostVolumes,
		WritableHostVolumes: map[string]string{"nimbus-gateway-data": gatewayData},
		// The KV triggers of kvtrigger_e2e_test watch these, and only these.
		TriggerPrefixes: []string{"every/", "resume/", "dlq/", "big/"},
		// network_e2e_test's denied address.
		DenyEgress:  worldDenyList,
		AllowEgress: worldAllowList,
		// sources_e2e_test's queues.
		RabbitMQ: true,
	})
}

// ownEnvironment starts agents of the test's own, with opts and the
// package's host volumes, and a gateway against them; both stop when the
// test ends, which fails if the allocations left anything on the host.
func ownEnvironment(t *testing.T, opts testenv.Options) (*testenv.Env, *testenv.Gateway) {
	t.Helper()
	opts.HostVolumes = fx.hostVolumes
	env, err := testenv.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.StopChecked(t) })
	// The environment's gateway, with its function listener, where the
	// instances fetch their packages; Stop ends it with the agents.
	gw, err := env.SharedGateway(fx.gatewayBin)
	if err != nil {
		t.Fatal(err)
	}
	return env, gw
}

func gateway(t *testing.T) (*testenv.Env, *testenv.Gateway) {
	t.Helper()
	env := testenv.Get(t)
	gw, err := env.SharedGateway(fx.gatewayBin)
	if err != nil {
		t.Fatal(err)
	}
	return env, gw
}

// deploy does what nimbus_function does: upload, KV record, job.
func deploy(t *testing.T, f model.Function) { deployFrom(t, f, fx.goSource, 0) }

func deployFrom(t *testing.T, f model.Function, source string, reserved int) {
	t.Helper()
	env, gw := gateway(t)
	deployTo(t, env, gw, f, source, reserved)
}

// deployTo deploys through a given environment and gateway.
func deployTo(t *testing.T, env *testenv.Env, gw *testenv.Gateway, f model.Function, source string, reserved int) {
	t.Helper()
	f = f.WithDefaults()
	pkg, err := packaging.ZipDir(source)
	if err != nil {
		t.Fatal(err)
	}
	// As the provider deploys: nimbus-host fetches the package of the store.
	src := nomadjob.Source{URL: upload(t, env, gw, pkg), SHA256: pkg.SHA256, FromStore: true}
	register(t, env, f, src, reserved, false)
	awaitFunction(t, gw, f.Name)
}

// register writes the function's record and registers its job as the
// provider does (internal/rollout); preserve keeps the instance count the
// gateway scaled to, as the provider does for an existing job, and
// otherwise the job restarts from min_instances.
func register(t *testing.T, env *testenv.Env, f model.Function, src nomadjob.Source, reserved int, preserve bool) {
	t.Helper()
	// Clients without the Nimbus networks run functions on the host's.
	opts := nomadjob.Options{HostNetwork: env.Network == nil}
	rec := nomadjob.Record(f, src, opts, reserved)
	if _, err := env.Consul.KV().Put(&consulapi.KVPair{Key: kvstore.FunctionKey(f.Name), Value: rec.Encode()}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := rollout.Register(context.Background(), env.Nomad, nomadjob.Render(f, src, opts), rollout.Options{PreserveCounts: preserve}); err != nil {
		t.Fatal(err)
	}
	// The record goes with the job: a record left behind keeps its pool,
	// and its last count, in the shared gateway for the tests after.
	t.Cleanup(func() {
		_, _, _ = env.Nomad.Jobs().Deregister(nomadjob.JobID(f.Name), true, nil)
		_, _ = env.Consul.KV().Delete(kvstore.FunctionKey(f.Name), nil)
		_, _ = env.Consul.KV().DeleteTree(kvstore.FunctionKey(f.Name)+"/", nil)
	})
}

// awaitFunction waits until the gateway knows the function: a gateway
// learns of a function from KV within moments.
func awaitFunction(t *testing.T, gw *testenv.Gateway, name string) {
	t.Helper()
	for i := 0; i < 100; i++ {
		resp, err := gw.Do(http.MethodGet, "/v1/functions/"+name, nil)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the gateway at %s never learned of %s", gw.URL, name)
}

// upload stores a package as the provider does, with the operator's key,
// and returns the signed URL Nomad fetches it with.
func upload(t *testing.T, env *testenv.Env, gw *testenv.Gateway, pkg *packaging.Package) string {
	t.Helper()
	return testkit.Upload(t, gw.URL, env.GatewayToken, pkg).URL
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

// invokeAll sends n invocations of event at once and returns the answers
// once all are in.
func invokeAll(t *testing.T, gw *testenv.Gateway, name, event string, n int) []answer {
	t.Helper()
	answers := make([]answer, n)
	var wg sync.WaitGroup
	for i := range answers {
		wg.Add(1)
		go func() { defer wg.Done(); answers[i] = invoke(t, gw, name, event) }()
	}
	wg.Wait()
	return answers
}

func invoke(t *testing.T, gw *testenv.Gateway, name, event string) answer {
	t.Helper()
	a := invokeNoFatal(gw, name, event)
	if a.status == 0 {
		t.Fatalf("invoke %s: %s", name, a.raw)
	}
	return a
}

func groupCount(t *testing.T, env *testenv.Env, fn string) int {
	t.Helper()
	st, _, err := env.Nomad.Jobs().ScaleStatus(nomadjob.JobID(fn), nil)
	if err != nil {
		t.Fatal(err)
	}
	return st.TaskGroups[nomadjob.GroupName].Desired
}

func TestColdStartFromZeroAndScaleDownToZero(t *testing.T) {
	env, gw := gateway(t)
	f := model.Function{Name: "cold", Runtime: model.RuntimeProvided, MaxInstances: 2, IdleTimeout: 10 * time.Second}
	deploy(t, f)
	if n := groupCount(t, env, "cold"); n != 0 {
		t.Fatalf("a new function with min_instances 0 runs %d instances", n)
	}

	start := time.Now()
	a := invoke(t, gw, "cold", `{"action":"echo","value":"from zero"}`)
	if a.status != http.StatusOK || a.body["echo"] != "from zero" {
		t.Fatalf("cold invoke: %d %s", a.status, a.raw)
	}
	if a.header.Get("X-Nimbus-Cold") != "true" {
		t.Error("the first invocation waited for an instance: X-Nimbus-Cold should be true")
	}
	t.Logf("cold start through the gateway: %s", time.Since(start))
	if n := groupCount(t, env, "cold"); n != 1 {
		t.Errorf("after a cold start the group count is %d, want 1", n)
	}
	if warm := invoke(t, gw, "cold", `{"action":"echo","value":"warm"}`); warm.status != http.StatusOK || warm.header.Get("X-Nimbus-Cold") != "false" {
		t.Errorf("second invoke: %d cold=%s", warm.status, warm.header.Get("X-Nimbus-Cold"))
	}

	// idle_timeout later the gateway scales back to zero, saying why.
	deadline := time.Now().Add(45 * time.Second)
	for groupCount(t, env, "cold") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the function was not scaled to zero after its idle_timeout")
		}
		time.Sleep(500 * time.Millisecond)
	}
	// Nomad records the new count and the scaling event in two raft
	// writes: the event may show a moment after the count.
	var events []nomadapi.ScalingEvent
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		st, _, err := env.Nomad.Jobs().ScaleStatus(nomadjob.JobID("cold"), nil)
		if err != nil {
			t.Fatal(err)
		}
		events = st.TaskGroups[nomadjob.GroupName].Events
		found := slices.ContainsFunc(events, func(ev nomadapi.ScalingEvent) bool {
			return strings.Contains(ev.Message, "idle for") && strings.Contains(ev.Message, "nimbus-gateway")
		})
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("no scale event in Nomad explains the scale-down: %+v", events)
			break
		}
	}
}

func TestBurstIsServedOrCleanlyThrottled(t *testing.T) {
	env, gw := gateway(t)
	deploy(t, model.Function{Name: "burst", Runtime: model.RuntimeProvided, Concurrency: 1, MaxInstances: 5, Timeout: 20 * time.Second})
	const n = 50
	answers := invokeAll(t, gw, "burst", `{"action":"sleep","n":200}`, n)
	ok, throttled, cold := 0, 0, 0
	for i, a := range answers {
		switch a.status {
		case http.StatusOK:
			ok++
			if a.header.Get("X-Nimbus-Cold") == "true" {
				cold++
			}
		case http.StatusTooManyRequests:
			throttled++
			if !strings.Contains(a.raw, "TooManyRequestsException") {
				t.Errorf("a 429 without a clear body: %s", a.raw)
			}
		default:
			t.Errorf("request %d: status %d %s; every request must succeed or get a clean 429", i, a.status, a.raw)
		}
	}
	t.Logf("50 concurrent requests, concurrency 1, max 5 instances: %d served, %d throttled", ok, throttled)
	if ok == 0 {
		t.Error("no request was served")
	}
	// A cold start is an instance's start: the requests that queued for a
	// busy instance are not cold, and the metric agrees with the headers.
	if cold < 1 || cold > 5 {
		t.Errorf("%d answers say X-Nimbus-Cold: true; at most 5 instances started, each one cold start", cold)
	}
	if v := metric(t, gw, `nimbus_cold_starts_total{function="burst",path="nomad"}`); v != float64(cold) {
		t.Errorf("nimbus_cold_starts_total = %v, but %d answers were cold starts", v, cold)
	}
	// Concurrent cold requests share scale calls rather than make one each.
	st, _, err := env.Nomad.Jobs().ScaleStatus(nomadjob.JobID("burst"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ups := 0
	for _, ev := range st.TaskGroups[nomadjob.GroupName].Events {
		if strings.Contains(ev.Message, "nimbus-gateway") && strings.Contains(ev.Message, "need") {
			ups++
		}
	}
	if ups == 0 || ups > 3 {
		t.Errorf("%d scale-up calls for one burst; want a few at most", ups)
	}
	if n := groupCount(t, env, "burst"); n > 5 {
		t.Errorf("scaled to %d instances, beyond max_instances 5", n)
	}
}

// On SIGTERM the gateway stops taking requests and lets those in flight
// finish.
func TestGatewayDrainsOnSIGTERM(t *testing.T) {
	env, shared := gateway(t)
	deploy(t, model.Function{Name: "drain", Runtime: model.RuntimeProvided, MinInstances: 1, MaxInstances: 1, Timeout: 10 * time.Second})
	gw, err := env.StartGateway(fx.gatewayBin)
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Stop()
	_ = shared
	for i := 0; i < 100; i++ {
		if a := invoke(t, gw, "drain", `{"action":"echo","value":"up"}`); a.status == http.StatusOK {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	done := make(chan answer, 1)
	// Not invoke: t.Fatal outside the test's goroutine would leave <-done
	// waiting forever.
	go func() { done <- invokeNoFatal(gw, "drain", `{"action":"sleep","n":1500}`) }()
	time.Sleep(300 * time.Millisecond)
	if err := gw.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	a := <-done
	if a.status != http.StatusOK || a.body["slept_ms"] != float64(1500) {
		t.Fatalf("the request in flight at SIGTERM: %d %s", a.status, a.raw)
	}
	if err := gw.Wait(10 * time.Second); err != nil {
		t.Errorf("the gateway did not exit cleanly after draining: %v", err)
	}
}

func TestErrorsAreClear(t *testing.T) {
	_, gw := gateway(t)
	deploy(t, model.Function{Name: "errs", Runtime: model.RuntimeProvided, Timeout: time.Second, MinInstances: 1, MaxInstances: 1})

	if a := invoke(t, gw, "no-such-function", `{}`); a.status != http.StatusNotFound || a.body["errorType"] != "ResourceNotFoundException" {
		t.Errorf("unknown function: %d %s", a.status, a.raw)
	}
	big := `{"action":"echo","value":"` + strings.Repeat("a", 7<<20) + `"}`
	if a := invoke(t, gw, "errs", big); a.status != http.StatusRequestEntityTooLarge || a.body["errorType"] != "RequestEntityTooLargeException" {
		t.Errorf("oversize: %d %.200s", a.status, a.raw)
	}
	if a := invoke(t, gw, "errs", `{not json`); a.status != http.StatusBadRequest {
		t.Errorf("malformed body: %d %s", a.status, a.raw)
	}
	a := invoke(t, gw, "errs", `{"action":"sleep","n":3000}`)
	if a.status != http.StatusGatewayTimeout || a.body["errorType"] != "Sandbox.Timedout" {
		t.Errorf("timeout: %d %s", a.status, a.raw)
	}
	if a := invoke(t, gw, "errs", `{"action":"error","value":"x"}`); a.status != http.StatusOK || a.header.Get("X-Nimbus-Function-Error") != "Unhandled" {
		t.Errorf("function error: %d %v %s", a.status, a.header, a.raw)
	}
	if a := invoke(t, gw, "errs", `{"action":"echo","value":"still fine"}`); a.status != http.StatusOK || a.body["echo"] != "still fine" {
		t.Errorf("after the errors: %d %s", a.status, a.raw)
	}

	resp, err := gw.Do(http.MethodGet, "/v1/usage", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var usage struct {
		Functions []struct {
			Function    string  `json:"function"`
			Invocations int64   `json:"invocations"`
			GBSeconds   float64 `json:"gb_seconds"`
		} `json:"functions"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&usage); err != nil {
		t.Fatal(err)
	}
	// The refused requests (404, 413, 400) never reached the function.
	for _, u := range usage.Functions {
		if u.Function == "errs" && (u.Invocations != 3 || u.GBSeconds <= 0) {
			t.Errorf("usage for errs: %+v", u)
		}
	}
}

// TestCallerWhoLeavesDoesNotStrandTheInstance: a caller that gives up
// while its invocation runs must not make the instance look gone. The host
// runs the invocation to its end; the gateway keeps the slot until then
// and keeps the instance, so the next request waits for it and is served.
func TestCallerWhoLeavesDoesNotStrandTheInstance(t *testing.T) {
	env, gw := gateway(t)
	deploy(t, model.Function{Name: "steady", Runtime: model.RuntimeProvided, MinInstances: 1, MaxInstances: 1, Timeout: 10 * time.Second})
	testkit.WaitInstances(context.Background(), t, env.Consul, nomadjob.ServiceName("steady"), 1)
	if a := invoke(t, gw, "steady", `{"action":"echo","value":"warm"}`); a.status != http.StatusOK {
		t.Fatalf("warm-up: %d %s", a.status, a.raw)
	}
	impatient := &http.Client{Timeout: 300 * time.Millisecond}
	req, _ := gw.Request(http.MethodPost, "/v1/functions/steady/invoke", strings.NewReader(`{"action":"sleep","n":2000}`))
	if resp, err := impatient.Do(req); err == nil {
		_ = resp.Body.Close()
		t.Fatalf("the impatient caller got an answer (%s) before giving up", resp.Status)
	}
	a := invoke(t, gw, "steady", `{"action":"echo","value":"after"}`)
	if a.status != http.StatusOK || a.body["echo"] != "after" {
		t.Fatalf("the next request after a caller left: %d %s; want the instance to serve it once free", a.status, a.raw)
	}
	if view := gatewayView(t, gw, "steady"); view["instances"] != float64(1) {
		t.Errorf("the gateway sees %v instances, want the 1 it had", view["instances"])
	}
}
