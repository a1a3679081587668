package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/gatewayjob"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
)

// step is one moment of a cold start, as its source recorded it.
type step struct {
	at     time.Time
	source string
	what   string
}

// coldBreakdown times one cold start of a function through the gateway
// and lines up what each party recorded of it: the gateway's log, Nomad's
// task events and nimbus-host's log, all on this machine's clock.
func coldBreakdown(env *testenv.Env, gatewayURL, fn string) ([]step, error) {
	if err := toZero(env, gatewayURL, fn); err != nil {
		return nil, err
	}
	start := time.Now()
	if err := invoke(gatewayURL+"/v1/functions/"+fn+"/invoke", "true"); err != nil {
		return nil, err
	}
	steps := []step{{start, "client", "request sent to the gateway"}, {time.Now(), "client", "response received"}}

	// The client reports task events to the servers in batches, and the
	// host's log reaches its file through Nomad's log pipeline: wait until
	// both show the start.
	var alloc *nomadapi.Allocation
	var hostLog []logLine
	for deadline := time.Now().Add(10 * time.Second); ; {
		var err error
		if alloc, err = newestAllocation(env, nomadjob.JobID(fn)); err != nil {
			return nil, err
		}
		if hostLog, err = taskLog(env, alloc, nomadjob.TaskName); err != nil {
			return nil, err
		}
		if (startedTask(alloc, nomadjob.TaskName) && logged(hostLog, "handler ready")) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if ts := alloc.TaskStates[nomadjob.TaskName]; ts != nil {
		for _, ev := range ts.Events {
			steps = append(steps, step{time.Unix(0, ev.Time), "Nomad", "task event: " + ev.Type})
		}
	}
	steps = append(steps, hostSteps(hostLog, start)...)
	gw, err := newestAllocation(env, gatewayjob.ID)
	if err != nil {
		return nil, err
	}
	gwLog, err := taskLog(env, gw, "gateway")
	if err != nil {
		return nil, err
	}
	for _, l := range gwLog {
		if l.Function == fn && l.Msg == "scaled" && !l.Time.Before(start) {
			steps = append(steps, step{l.Time, "gateway", "scale call to Nomad returned"})
		}
	}
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].at.Before(steps[j].at) })
	return steps, nil
}

// floorBreakdown is the same record of one cold start of the floor: the
// scale call, Nomad's task events, the first 200.
func floorBreakdown(env *testenv.Env) ([]step, error) {
	d, err := scaleUpTrial(context.Background(), env, floorBridge, 1)
	if err != nil {
		return nil, err
	}
	answered := time.Now()
	steps := []step{{answered.Add(-d), "client", "scale call sent to Nomad"}, {answered, "client", "first 200 from the instance"}}
	var alloc *nomadapi.Allocation
	for deadline := time.Now().Add(10 * time.Second); ; {
		if alloc, err = newestAllocation(env, nomadjob.JobID(floorBridge)); err != nil {
			return nil, err
		}
		if startedTask(alloc, floorTask) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if ts := alloc.TaskStates[floorTask]; ts != nil {
		for _, ev := range ts.Events {
			steps = append(steps, step{time.Unix(0, ev.Time), "Nomad", "task event: " + ev.Type})
		}
	}
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].at.Before(steps[j].at) })
	return steps, scaleTo(env, floorBridge, 0)
}

func startedTask(a *nomadapi.Allocation, task string) bool {
	if ts := a.TaskStates[task]; ts != nil {
		for _, ev := range ts.Events {
			if ev.Type == nomadapi.TaskStarted {
				return true
			}
		}
	}
	return false
}

func logged(lines []logLine, msg string) bool {
	for _, l := range lines {
		if l.Msg == msg {
			return true
		}
	}
	return false
}

func newestAllocation(env *testenv.Env, jobID string) (*nomadapi.Allocation, error) {
	stubs, _, err := env.Nomad.Jobs().Allocations(jobID, true, nil)
	if err != nil || len(stubs) == 0 {
		return nil, fmt.Errorf("no allocation of %s: %w", jobID, err)
	}
	sort.Slice(stubs, func(i, j int) bool { return stubs[i].CreateTime > stubs[j].CreateTime })
	alloc, _, err := env.Nomad.Allocations().Info(stubs[0].ID, nil)
	return alloc, err
}

// hostSteps are nimbus-host's records of a cold start, those from since on.
func hostSteps(lines []logLine, since time.Time) []step {
	var steps []step
	for _, l := range lines {
		if l.Time.Before(since) {
			continue
		}
		switch l.Msg {
		case "specialising":
			steps = append(steps, step{l.Time, "nimbus-host", "specialisation received"})
		case "package fetched and verified":
			steps = append(steps, step{l.Time, "nimbus-host", fmt.Sprintf("package fetched (%.1f ms) and unpacked (%.1f ms)", l.FetchMs, l.UnpackMs)})
		case "nimbus-host listening":
			steps = append(steps, step{l.Time, "nimbus-host", "listening; handler starting"})
		case "handler ready":
			steps = append(steps, step{l.Time, "nimbus-host", fmt.Sprintf("handler ready (its init took %.1f ms)", l.InitMs)})
		}
	}
	return steps
}

// logLine is what the breakdown reads of a JSON log line (log/slog).
type logLine struct {
	Time     time.Time `json:"time"`
	Msg      string    `json:"msg"`
	Function string    `json:"function"`
	AllocID  string    `json:"alloc_id"`
	Special  float64   `json:"specialise_ms"`
	JobRead  float64   `json:"job_read_ms"`
	FetchMs  float64   `json:"fetch_ms"`
	UnpackMs float64   `json:"unpack_ms"`
	InitMs   float64   `json:"init_ms"`
}

// taskLog reads a task's stderr through Nomad: every rotated file, oldest
// first.
func taskLog(env *testenv.Env, alloc *nomadapi.Allocation, task string) ([]logLine, error) {
	files, _, err := env.Nomad.AllocFS().List(alloc, "alloc/logs", nil)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, f := range files {
		if strings.HasPrefix(f.Name, task+".stderr.") {
			names = append(names, f.Name)
		}
	}
	sort.Slice(names, func(i, j int) bool { return logIndex(names[i]) < logIndex(names[j]) })
	var out []logLine
	for _, name := range names {
		r, err := env.Nomad.AllocFS().Cat(alloc, "alloc/logs/"+name, nil)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var l logLine
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg != "" {
				out = append(out, l)
			}
		}
		_ = r.Close()
	}
	return out, nil
}

func logIndex(name string) int {
	var n int
	_, _ = fmt.Sscanf(name[strings.LastIndexByte(name, '.')+1:], "%d", &n)
	return n
}

func formatBreakdown(b *strings.Builder, label string, steps []step) {
	if len(steps) == 0 {
		return
	}
	fmt.Fprintf(b, "**One cold start, step by step** (%s; each party's own record, one clock):\n\n", label)
	b.WriteString("| At | Since the previous step | Source | Step |\n| --- | --- | --- | --- |\n")
	t0, prev := steps[0].at, steps[0].at
	for _, s := range steps {
		fmt.Fprintf(b, "| +%.1f ms | %.1f ms | %s | %s |\n", ms64(s.at.Sub(t0)), ms64(s.at.Sub(prev)), s.source, s.what)
		prev = s.at
	}
	b.WriteString("\n")
}

func ms64(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// poolBreakdown times one cold start served by a warm pool and lines up
// the gateway's and the pool instance's records of it.
func poolBreakdown(env *testenv.Env, gatewayURL, fn, pool string) ([]step, error) {
	if err := waitPoolIdle(gatewayURL, pool); err != nil {
		return nil, err
	}
	d, err := poolColdTrial(env, gatewayURL, fn)
	if err != nil {
		return nil, err
	}
	start := time.Now().Add(-d) // the trial scales to zero before it times
	steps := []step{{start, "client", "request sent to the gateway"}, {start.Add(d), "client", "response received"}}
	gw, err := newestAllocation(env, gatewayjob.ID)
	if err != nil {
		return nil, err
	}
	var served logLine
	for deadline := time.Now().Add(10 * time.Second); served.AllocID == "" && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		lines, err := taskLog(env, gw, "gateway")
		if err != nil {
			return nil, err
		}
		for _, l := range lines {
			if l.Msg == "cold start served from a warm pool" && l.Function == fn && !l.Time.Before(start) {
				served = l
			}
		}
	}
	if served.AllocID == "" {
		return nil, fmt.Errorf("the gateway's log names no pool instance for %s", fn)
	}
	claimed := served.Time.Add(-time.Duration(served.Special * float64(time.Millisecond)))
	steps = append(steps,
		step{claimed, "gateway", "pool instance claimed"},
		step{claimed.Add(time.Duration(served.JobRead * float64(time.Millisecond))), "gateway", "function's job environment read; specialisation sent"},
		step{served.Time, "gateway", fmt.Sprintf("pool instance specialised (%.1f ms)", served.Special)})
	alloc, _, err := env.Nomad.Allocations().Info(served.AllocID, nil)
	if err != nil {
		return nil, err
	}
	lines, err := taskLog(env, alloc, nomadjob.TaskName)
	if err != nil {
		return nil, err
	}
	// The pool instance started (and logged that it listens) long before.
	steps = append(steps, hostSteps(lines, claimed)...)
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].at.Before(steps[j].at) })
	return steps, nil
}
