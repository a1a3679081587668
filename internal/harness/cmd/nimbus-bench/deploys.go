package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/clients"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testkit"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/packaging"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/rollout"
)

// deployRate is the steady load through a deploy, as the issue's
// acceptance sets it: 20 requests a second.
const deployRate = 20

// deployResult is a steady load through changes of a function's code,
// replaced blue/green as nimbus_function does, against the same load
// through no change (the floor), trials interleaved.
type deployResult struct {
	trials    int
	coldStart time.Duration // the Go function's cold start (p50) in this run
	modes     []*deployMode
}

type deployMode struct {
	label     string
	answers   []deployAnswer
	tookOver  []time.Duration // change → first answer of the new code
	unchanged bool            // the floor: no change
}

type deployAnswer struct {
	sent    time.Time
	took    time.Duration
	release string
	failed  bool
}

// deployUnderLoad runs trials of each mode on one function with one
// instance: 3 s of load, the change, and the load on until 5 s after the
// change is done.
func deployUnderLoad(ctx context.Context, env *testenv.Env, store clients.Artifacts, gatewayURL, srcDir string, trials int, coldStart time.Duration) (deployResult, error) {
	fmt.Println("bench: a steady load through code changes")
	r := deployResult{trials: trials, coldStart: coldStart}
	floor := &deployMode{label: "Floor: the same load, no change", unchanged: true}
	blueGreen := &deployMode{label: "**A code change, replaced blue/green** (`internal/rollout`, as `nimbus_function` deploys)"}
	r.modes = []*deployMode{floor, blueGreen}

	pkg, err := packaging.ZipDir(srcDir)
	if err != nil {
		return r, err
	}
	src, err := upload(ctx, store, pkg)
	if err != nil {
		return r, err
	}
	f := model.Function{Name: "bench-deploy", Runtime: model.RuntimeProvided, MinInstances: 1, MaxInstances: 3, IdleTimeout: time.Hour}
	release := 0
	// publish writes the record and registers the job of a new release
	// (a new USER_SETTING: a change that replaces every instance).
	publish := func(register func(*nomadapi.Job) error) error {
		release++
		f.Environment = map[string]string{"USER_SETTING": fmt.Sprint(release)}
		rec := nomadjob.Record(f.WithDefaults(), src, nomadjob.Options{}, 0)
		if _, err := env.Consul.KV().Put(&consulapi.KVPair{Key: kvstore.FunctionKey(f.Name), Value: rec.Encode()}, nil); err != nil {
			return err
		}
		return register(nomadjob.Render(f.WithDefaults(), src, nomadjob.Options{}))
	}
	withRollout := func(job *nomadapi.Job) error {
		_, err := rollout.Register(ctx, env.Nomad, job, rollout.Options{PreserveCounts: true})
		return err
	}
	if err := publish(withRollout); err != nil {
		return r, err
	}
	// The cuts that follow share the node: leave nothing running.
	defer func() {
		_, _, _ = env.Nomad.Jobs().Deregister(nomadjob.JobID(f.Name), true, nil)
		_, _ = env.Consul.KV().Delete(kvstore.FunctionKey(f.Name), nil)
	}()
	if err := waitKnown(gatewayURL, f.Name); err != nil {
		return r, err
	}
	for range trials {
		for _, m := range r.modes {
			if err := settle(env, gatewayURL, f.Name, fmt.Sprint(release)); err != nil {
				return r, err
			}
			stop := testkit.Steady(deployRate, func() deployAnswer { return deployCall(gatewayURL, f.Name) })
			time.Sleep(3 * time.Second)
			changed := time.Now()
			if !m.unchanged {
				if err := publish(withRollout); err != nil {
					_ = stop()
					return r, err
				}
			}
			if !m.unchanged {
				// Until the new code answers, at most a minute.
				for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
					if deployCall(gatewayURL, f.Name).release == fmt.Sprint(release) {
						break
					}
				}
			}
			time.Sleep(5 * time.Second)
			answers := stop()
			m.answers = append(m.answers, answers...)
			if !m.unchanged {
				for _, a := range answers {
					if a.release == fmt.Sprint(release) {
						m.tookOver = append(m.tookOver, a.sent.Sub(changed))
						break
					}
				}
			}
		}
	}
	return r, nil
}

// settle waits until the function runs one instance, of the release, with
// no deployment in progress, so that each trial starts alike.
func settle(env *testenv.Env, gatewayURL, fn, release string) error {
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		allocs, _, err := env.Nomad.Jobs().Allocations(nomadjob.JobID(fn), false, nil)
		if err != nil {
			return err
		}
		live := 0
		for _, a := range allocs {
			if a.ClientStatus == nomadapi.AllocClientStatusRunning || a.ClientStatus == nomadapi.AllocClientStatusPending {
				live++
			}
		}
		if live == 1 && deployCall(gatewayURL, fn).release == release {
			return nil
		}
	}
	return fmt.Errorf("%s did not settle on one instance of release %s", fn, release)
}

// deployCall invokes the "env" action, which reports the instance's
// USER_SETTING.
func deployCall(gatewayURL, fn string) deployAnswer {
	a := deployAnswer{sent: time.Now()}
	resp, err := client.Post(gatewayURL+"/v1/functions/"+fn+"/invoke", "application/json", strings.NewReader(`{"action":"env"}`))
	if err != nil {
		a.failed = true
		return a
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	a.took = time.Since(a.sent)
	var out map[string]any
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Nimbus-Function-Error") != "" || json.Unmarshal(body, &out) != nil {
		a.failed = true
		return a
	}
	a.release, _ = out["USER_SETTING"].(string)
	return a
}

func formatDeploys(b *strings.Builder, r deployResult) {
	if len(r.modes) == 0 {
		return
	}
	var floor []time.Duration
	for _, a := range r.modes[0].answers {
		floor = append(floor, a.took)
	}
	fmt.Fprintf(b, "**A code change under load** (%d requests a second to a Go function with one warm instance, through the gateway job; 3 s of load, the change, then 5 s after the new code first answered; %d trials, interleaved with as many of the same load through no change; the Go cold start of this run, %s, is the bound a request may not exceed):\n\n",
		deployRate, r.trials, ms(r.coldStart))
	b.WriteString("| Load | Requests | Failed | Slower than a cold start | p50 | p99 | Slowest | Ratio to the floor (p99) | Ratio (slowest) | Change → new code answers (p50) |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, m := range r.modes {
		var took []time.Duration
		failed, slow := 0, 0
		for _, a := range m.answers {
			if a.failed {
				failed++
				continue
			}
			took = append(took, a.took)
			if a.took > r.coldStart {
				slow++
			}
		}
		over := "–"
		if len(m.tookOver) > 0 {
			over = ms(pct(m.tookOver, .5))
		}
		fmt.Fprintf(b, "| %s | %d | %d | %d | %s | %s | %s | %.2f | %.2f | %s |\n", m.label, len(m.answers), failed, slow,
			ms(pct(took, .5)), ms(pct(took, .99)), ms(pct(took, 1)), ratio(pct(took, .99), pct(floor, .99)), ratio(pct(took, 1), pct(floor, 1)), over)
	}
	b.WriteString("\n")
}
