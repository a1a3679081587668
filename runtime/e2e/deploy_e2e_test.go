package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testkit"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/packaging"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/rollout"
)

// release packages the Go test handler with a marker file, so that each
// release is new code (a new sha256) as a user's code change is, and
// returns its source in the gateway's store.
func release(t *testing.T, env *testenv.Env, gw *testenv.Gateway, name string) nomadjob.Source {
	t.Helper()
	dir := t.TempDir()
	bin, err := os.ReadFile(filepath.Join(fx.goSource, "bootstrap"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bootstrap"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "RELEASE"), []byte(name), 0o644); err != nil {
		t.Fatal(err)
	}
	pkg, err := packaging.ZipDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return nomadjob.Source{URL: upload(t, env, gw, pkg), SHA256: pkg.SHA256, FromStore: true}
}

// timedAnswer is one invocation of a load run.
type timedAnswer struct {
	sent    time.Time
	took    time.Duration
	status  int
	release string // the USER_SETTING of the instance that answered
	err     string
}

// timedInvoke invokes the "env" action, which reports the instance's
// USER_SETTING; it never fails the test itself, so it runs in any goroutine.
func timedInvoke(gw *testenv.Gateway, name string) timedAnswer {
	a := timedAnswer{sent: time.Now()}
	resp, err := gw.Do(http.MethodPost, "/v1/functions/"+name+"/invoke", strings.NewReader(`{"action":"env"}`))
	if err != nil {
		a.err = err.Error()
		return a
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	a.took, a.status = time.Since(a.sent), resp.StatusCode
	var out map[string]any
	if json.Unmarshal(b, &out) != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("X-Nimbus-Function-Error") != "" {
		a.err = fmt.Sprintf("%d %s", resp.StatusCode, b)
		return a
	}
	a.release, _ = out["USER_SETTING"].(string)
	return a
}

// A code change replaces a function's instances under a steady load of 20
// requests a second: no request fails, none waits longer than the
// function's own cold start, measured in the same run, and the new code
// takes over.
func TestCodeChangeUnderLoadHasNoGap(t *testing.T) {
	env, gw := gateway(t)
	f := model.Function{Name: "no-gap", Runtime: model.RuntimeProvided, MaxInstances: 3, Timeout: 10 * time.Second,
		Environment: map[string]string{"USER_SETTING": "one"}}
	first := release(t, env, gw, "one")
	register(t, env, f.WithDefaults(), first, 0, true)
	t.Cleanup(func() { _, _, _ = env.Nomad.Jobs().Deregister(nomadjob.JobID(f.Name), true, nil) })
	awaitFunction(t, gw, f.Name)

	// The floor: this function's cold start from zero, through the gateway.
	cold := timedInvoke(gw, f.Name)
	if cold.err != "" || cold.release != "one" {
		t.Fatalf("cold start: %s (release %q)", cold.err, cold.release)
	}
	t.Logf("cold start from zero: %s", cold.took.Round(time.Millisecond))

	stop := testkit.Steady(20, func() timedAnswer { return timedInvoke(gw, f.Name) })
	time.Sleep(5 * time.Second)
	changed := time.Now()
	f.Environment = map[string]string{"USER_SETTING": "two"}
	register(t, env, f.WithDefaults(), release(t, env, gw, "two"), 0, true)
	deployed := time.Now()
	time.Sleep(5 * time.Second)
	answers := stop()

	var tookOver time.Time
	var failed, slow []timedAnswer
	var slowest time.Duration
	byRelease := map[string]int{}
	for _, a := range answers {
		if a.release == "two" && tookOver.IsZero() {
			tookOver = a.sent
		}
		byRelease[a.release]++
		if a.err != "" {
			failed = append(failed, a)
			continue
		}
		slowest = max(slowest, a.took)
		if a.took > cold.took {
			slow = append(slow, a)
		}
	}
	if tookOver.IsZero() {
		t.Fatalf("the new code never answered (%d requests by release: %v)", len(answers), byRelease)
	}
	t.Logf("%d requests at 20/s through the change: %d failed, %d slower than the cold start (%s), slowest %s; by release %v; the new code answered %s after the change, which was deployed after %s",
		len(answers), len(failed), len(slow), cold.took.Round(time.Millisecond), slowest.Round(time.Millisecond), byRelease,
		tookOver.Sub(changed).Round(time.Millisecond), deployed.Sub(changed).Round(time.Millisecond))
	for _, a := range failed {
		t.Errorf("a request sent %s after the change failed: %s", a.sent.Sub(changed).Round(time.Millisecond), a.err)
	}
	for _, a := range slow {
		t.Errorf("a request sent %s after the change took %s, longer than a cold start (%s)",
			a.sent.Sub(changed).Round(time.Millisecond), a.took.Round(time.Millisecond), cold.took.Round(time.Millisecond))
	}
	// Once deployed, the old code no longer answers.
	for _, a := range answers {
		if a.sent.After(deployed.Add(time.Second)) && a.release != "two" {
			t.Errorf("release %q answered a request sent %s after the deployment ended", a.release, a.sent.Sub(deployed).Round(time.Millisecond))
			break
		}
	}
}

// While a deployment replaces a function's instances, Nomad refuses to
// scale its job. A burst that needs more instances then waits, served by
// the old and new instances, instead of failing, and the gateway says why
// it could not scale.
func TestBurstDuringADeploymentWaits(t *testing.T) {
	env, gw := gateway(t)
	f := model.Function{Name: "deploy-burst", Runtime: model.RuntimeProvided, MinInstances: 1, MaxInstances: 4, Timeout: 10 * time.Second,
		Environment: map[string]string{"USER_SETTING": "0"}}
	register(t, env, f.WithDefaults(), release(t, env, gw, "0"), 0, true)
	t.Cleanup(func() { _, _, _ = env.Nomad.Jobs().Deregister(nomadjob.JobID(f.Name), true, nil) })
	awaitFunction(t, gw, f.Name)
	waitFor(t, time.Minute, "the first release to answer", func() bool { return timedInvoke(gw, f.Name).release == "0" })

	blocked := false
	for attempt := 1; attempt <= 3 && !blocked; attempt++ {
		f.Environment = map[string]string{"USER_SETTING": fmt.Sprint(attempt)}
		job := nomadjob.Render(f.WithDefaults(), release(t, env, gw, fmt.Sprint(attempt)), nomadjob.Options{HostNetwork: env.Network == nil})
		deployed := make(chan error, 1)
		go func() {
			_, err := rollout.Register(context.Background(), env.Nomad, job, rollout.Options{PreserveCounts: true})
			deployed <- err
		}()
		waitFor(t, 30*time.Second, "the deployment to start", func() bool {
			d, _, err := env.Nomad.Jobs().LatestDeployment(nomadjob.JobID(f.Name), nil)
			return err == nil && d != nil && d.Status == nomadapi.DeploymentStatusRunning
		})
		// Four invocations of 1.5 s at concurrency 1 want four instances.
		answers := make(chan answer, 4)
		for range 4 {
			go func() { answers <- invokeNoFatal(gw, f.Name, `{"action":"sleep","n":1500}`) }()
		}
		for range 40 {
			resp, err := gw.Do(http.MethodGet, "/v1/functions/"+f.Name, nil)
			if err == nil {
				var state struct {
					ScaleError string `json:"scale_error"`
				}
				_ = json.NewDecoder(resp.Body).Decode(&state)
				_ = resp.Body.Close()
				if strings.Contains(state.ScaleError, "until the deployment that replaces its instances ends") {
					blocked = true
					break
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		for range 4 {
			if a := <-answers; a.status != http.StatusOK || a.body["slept_ms"] != float64(1500) {
				t.Errorf("deploy %d: a request of the burst failed: %d %s", attempt, a.status, a.raw)
			}
		}
		if err := <-deployed; err != nil {
			t.Fatalf("deploy %d: %v", attempt, err)
		}
		t.Logf("deploy %d: the gateway's scale requests were refused during the deployment: %v", attempt, blocked)
	}
	if !blocked {
		t.Fatal("in three deploys the burst never met a deployment that refused to scale: this test proved nothing")
	}
}

// A new version whose instances never pass their checks does not replace
// the running one: Nomad's deployment fails, reverts the job, and the
// running instance serves throughout; the error says what happened.
func TestFailedReplacementKeepsTheRunningVersion(t *testing.T) {
	env, gw := gateway(t)
	f := model.Function{Name: "bad-release", Runtime: model.RuntimeProvided, MinInstances: 1, MaxInstances: 2,
		Environment: map[string]string{"USER_SETTING": "one"}}
	register(t, env, f.WithDefaults(), release(t, env, gw, "one"), 0, true)
	t.Cleanup(func() { _, _, _ = env.Nomad.Jobs().Deregister(nomadjob.JobID(f.Name), true, nil) })
	awaitFunction(t, gw, f.Name)
	waitFor(t, time.Minute, "the running version to answer", func() bool { return timedInvoke(gw, f.Name).release == "one" })
	before, _, err := env.Nomad.Jobs().Info(nomadjob.JobID(f.Name), nil)
	if err != nil {
		t.Fatal(err)
	}

	// The new version names a handler its package lacks: its instances
	// start, and never become ready.
	bad := f
	bad.Handler = "no-such-handler"
	bad.Environment = map[string]string{"USER_SETTING": "two"}
	opts := nomadjob.Options{HostNetwork: env.Network == nil}
	job := nomadjob.Render(bad.WithDefaults(), release(t, env, gw, "two"), opts)
	stop := testkit.Steady(5, func() timedAnswer { return timedInvoke(gw, f.Name) })
	_, err = rollout.Register(context.Background(), env.Nomad, job, rollout.Options{PreserveCounts: true, HealthyDeadline: 10 * time.Second})
	during := stop()
	if err == nil {
		t.Fatal("a version that never became healthy was reported deployed")
	}
	t.Logf("the failed deployment: %v", err)
	for _, want := range []string{"ended failed", "reverted to version " + fmt.Sprint(*before.Version), "kept serving", "nomad deployment status"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q: %v", want, err)
		}
	}
	for _, a := range during {
		if a.err != "" || a.release != "one" {
			t.Errorf("while the new version failed, a request got %q from release %q; the running version must serve", a.err, a.release)
		}
	}
	if len(during) == 0 {
		t.Error("no request was sent during the deployment")
	}
	after, _, err := env.Nomad.Jobs().Info(nomadjob.JobID(f.Name), nil)
	if err != nil {
		t.Fatal(err)
	}
	task := after.TaskGroups[0].Tasks[0]
	if task.Env["USER_SETTING"] != "one" || *after.Version <= *before.Version {
		t.Errorf("Nomad did not revert the job: version %d (was %d) runs USER_SETTING %q", *after.Version, *before.Version, task.Env["USER_SETTING"])
	}
	if u := after.TaskGroups[0].Update; u == nil || u.MaxParallel == nil || *u.MaxParallel != 0 {
		t.Errorf("the reverted job has update %+v; want max_parallel 0, so that the gateway may scale it", u)
	}
	if a := timedInvoke(gw, f.Name); a.err != "" || a.release != "one" {
		t.Errorf("after the failed deployment: %q from release %q", a.err, a.release)
	}
}

// A long invocation runs to its end across a code change, which replaces
// its instance, and across a scale-down by an operator, which stops it:
// the instance stops taking requests and finishes the one in flight, on a
// client whose max_kill_timeout allows it (the harness's, as the platform
// guide says to set it).
func TestLongInvocationSurvivesACodeChangeAndAScaleDown(t *testing.T) {
	env, gw := gateway(t)
	const run = 2 * time.Minute
	type outcome struct {
		name string
		a    answer
		took time.Duration
	}
	done := make(chan outcome, 2)
	for _, name := range []string{"long-deploy", "long-scaled"} {
		f := model.Function{Name: name, Runtime: model.RuntimeProvided, MaxInstances: 2, Timeout: run + time.Minute,
			Environment: map[string]string{"USER_SETTING": "one"}}
		deploy(t, f)
		go func() {
			start := time.Now()
			a := invokeNoFatal(gw, name, fmt.Sprintf(`{"action":"sleep","n":%d}`, run.Milliseconds()))
			done <- outcome{name, a, time.Since(start)}
		}()
	}
	// Both invocations run; then one function's code changes, and the
	// other's job is scaled to zero as an operator or autoscaler would.
	allocs := map[string]string{}
	for _, name := range []string{"long-deploy", "long-scaled"} {
		allocs[name] = awaitBusyAlloc(t, env, gw, name)
	}
	f := model.Function{Name: "long-deploy", Runtime: model.RuntimeProvided, MaxInstances: 2, Timeout: run + time.Minute,
		Environment: map[string]string{"USER_SETTING": "two"}}
	register(t, env, f.WithDefaults(), release(t, env, gw, "two"), 0, true)
	zero := 0
	if _, _, err := env.Nomad.Jobs().Scale(nomadjob.JobID("long-scaled"), nomadjob.GroupName, &zero, "the test scales down", false, nil, nil); err != nil {
		t.Fatal(err)
	}
	// Nomad stops the busy instances: they are told to stop while their
	// invocations still run.
	for name, id := range allocs {
		waitFor(t, 30*time.Second, name+"'s busy instance to be told to stop", func() bool {
			a, _, err := env.Nomad.Allocations().Info(id, nil)
			return err == nil && a.DesiredStatus == nomadapi.AllocDesiredStatusStop
		})
	}
	for range 2 {
		o := <-done
		if o.a.status != http.StatusOK || o.a.header.Get("X-Nimbus-Function-Error") != "" || o.a.body["slept_ms"] != float64(run.Milliseconds()) {
			t.Errorf("%s: the %s invocation did not finish after its instance was stopped: %d %s", o.name, run, o.a.status, o.a.raw)
			continue
		}
		t.Logf("%s: the %s invocation answered after %s, its instance stopped midway", o.name, run, o.took.Round(time.Second))
	}
	for name, id := range allocs {
		a, _, err := env.Nomad.Allocations().Info(id, nil)
		if err != nil {
			t.Fatal(err)
		}
		if st := a.TaskStates[nomadjob.TaskName]; st == nil || st.Failed {
			t.Errorf("%s: the stopped instance's task failed instead of finishing its invocation: %+v", name, st)
		}
	}
}

// invokeNoFatal is invoke for goroutines: a transport error is an answer
// with status 0.
func invokeNoFatal(gw *testenv.Gateway, name, event string) answer {
	resp, err := gw.Do(http.MethodPost, "/v1/functions/"+name+"/invoke", strings.NewReader(event))
	if err != nil {
		return answer{raw: err.Error()}
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	_ = json.Unmarshal(b, &a.body)
	return a
}

// awaitBusyAlloc waits until the function has an invocation in flight and
// returns its one running allocation.
func awaitBusyAlloc(t *testing.T, env *testenv.Env, gw *testenv.Gateway, name string) string {
	t.Helper()
	var id string
	waitFor(t, 30*time.Second, name+" to run its invocation", func() bool {
		resp, err := gw.Do(http.MethodGet, "/v1/functions/"+name, nil)
		if err != nil {
			return false
		}
		defer func() { _ = resp.Body.Close() }()
		var state struct {
			Inflight int `json:"inflight"`
		}
		if json.NewDecoder(resp.Body).Decode(&state) != nil || state.Inflight != 1 {
			return false
		}
		allocs, _, err := env.Nomad.Jobs().Allocations(nomadjob.JobID(name), false, nil)
		if err != nil {
			return false
		}
		running := 0
		for _, a := range allocs {
			if a.ClientStatus == nomadapi.AllocClientStatusRunning {
				id, running = a.ID, running+1
			}
		}
		return running == 1
	})
	return id
}

// waitFor polls cond every 100 ms until it holds, failing after within.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %s waiting for %s", within, what)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
