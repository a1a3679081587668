package main

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
)

// The floor jobs, named like functions so that the same scale and lookup
// helpers serve them.
const (
	floorHost   = "floor-host"
	floorBridge = "floor-bridge"
	floorTask   = "floor"
)

// floorJob runs nimbus-floor from the runtime host volume with the given
// network mode, at count 0, registered in Consul without a check (the
// trial polls it itself).
func floorJob(name, mode string) *nomadapi.Job {
	job := nomadapi.NewServiceJob(nomadjob.JobID(name), nomadjob.JobID(name), "global", 50)
	job.Datacenters = []string{"*"}
	tg := nomadapi.NewTaskGroup(nomadjob.GroupName, 0)
	tg.Networks = []*nomadapi.NetworkResource{{Mode: mode, DynamicPorts: []nomadapi.Port{{Label: nomadjob.PortLabel}}}}
	tg.Update = &nomadapi.UpdateStrategy{MaxParallel: ptr(0)}
	tg.Volumes = map[string]*nomadapi.VolumeRequest{"runtime": {Name: "runtime", Type: "host", Source: nomadjob.HostVolumeRuntime, ReadOnly: true}}
	task := nomadapi.NewTask(floorTask, "exec").
		SetConfig("command", nomadjob.RuntimeMount+"/bin/nimbus-floor").
		Require(&nomadapi.Resources{CPU: ptr(100), MemoryMB: ptr(32)})
	task.Env = map[string]string{"PORT": "${NOMAD_PORT_" + nomadjob.PortLabel + "}"}
	task.VolumeMounts = []*nomadapi.VolumeMount{{Volume: ptr("runtime"), Destination: ptr(nomadjob.RuntimeMount), ReadOnly: ptr(true)}}
	task.Services = []*nomadapi.Service{{Name: nomadjob.ServiceName(name), PortLabel: nomadjob.PortLabel, Provider: "consul"}}
	tg.AddTask(task)
	job.AddTaskGroup(tg)
	return job
}

func ptr[T any](v T) *T { return &v }

// coldResult holds every cold-start trial of one run.
type coldResult struct {
	floorHost, floorBridge []time.Duration
	functions              []coldSeries // in the order of the functions
	interpreters           []coldSeries // their own start (interpreterStarts)
}

type coldSeries struct {
	label  string
	trials []time.Duration
}

// coldStarts runs the trials round by round, each round one cold start of
// every path, so that drift in the machine's load spreads over all paths.
func coldStarts(ctx context.Context, env *testenv.Env, gatewayURL string, functions []benchFunction, trials int) (coldResult, error) {
	r := coldResult{functions: make([]coldSeries, len(functions))}
	for i, f := range functions {
		r.functions[i].label = f.label
	}
	for i := 0; i < trials; i++ {
		fmt.Printf("bench: cold starts, round %d/%d\n", i+1, trials)
		for _, floor := range []struct {
			name string
			into *[]time.Duration
		}{{floorHost, &r.floorHost}, {floorBridge, &r.floorBridge}} {
			d, err := coldRawTrial(ctx, env, floor.name)
			if err != nil {
				return r, err
			}
			*floor.into = append(*floor.into, d)
		}
		for j, f := range functions {
			d, err := coldGatewayTrial(env, gatewayURL, f.fn.Name)
			if err != nil {
				return r, err
			}
			r.functions[j].trials = append(r.functions[j].trials, d)
		}
	}
	for _, name := range []string{floorHost, floorBridge} {
		if err := scaleTo(env, name, 0); err != nil {
			return r, err
		}
	}
	return r, nil
}

// coldRawTrial is the floor: scale 0 → 1 with Nomad, then poll the new
// instance (found through Consul's catalog) until it answers 200.
func coldRawTrial(ctx context.Context, env *testenv.Env, name string) (time.Duration, error) {
	return scaleUpTrial(ctx, env, name, 1)
}

// scaleUpTrial scales a floor job from 0 to n and returns the time until
// every one of its n instances has answered 200.
func scaleUpTrial(ctx context.Context, env *testenv.Env, name string, n int) (time.Duration, error) {
	if err := scaleTo(env, name, 0); err != nil {
		return 0, err
	}
	if err := waitGone(env, nomadjob.ServiceName(name)); err != nil {
		return 0, err
	}
	start := time.Now()
	if err := scaleTo(env, name, n); err != nil {
		return 0, err
	}
	answered := map[string]bool{}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		for _, url := range instanceURLs(env, nomadjob.ServiceName(name)) {
			if !answered[url] && probe(url+"/") == nil {
				answered[url] = true
			}
		}
		if len(answered) >= n {
			return time.Since(start), nil
		}
		time.Sleep(2 * time.Millisecond)
	}
	return 0, fmt.Errorf("%d of %d instances of %s answered in time", len(answered), n, name)
}

// coldGatewayTrial scales the function to 0, waits until the gateway sees
// no instance, and times one request through the gateway, which must
// report a cold start.
func coldGatewayTrial(env *testenv.Env, gatewayURL, name string) (time.Duration, error) {
	if err := toZero(env, gatewayURL, name); err != nil {
		return 0, err
	}
	start := time.Now()
	if err := invoke(gatewayURL+"/v1/functions/"+name+"/invoke", "true"); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// burstResult is the parallel cold starts of one size.
type burstResult struct {
	n            int
	raw, gateway []time.Duration
	instances    int // the most instances a burst started
}

// parallelColdStarts sends bursts of n concurrent requests to a function at
// 0 instances and scales the floor from 0 to n, alternating, for each size.
func parallelColdStarts(ctx context.Context, env *testenv.Env, gatewayURL, name string, sizes []int, trials int) ([]burstResult, error) {
	var out []burstResult
	for _, n := range sizes {
		r := burstResult{n: n}
		for i := 0; i < trials; i++ {
			fmt.Printf("bench: parallel cold starts of %d, trial %d/%d\n", n, i+1, trials)
			d, err := scaleUpTrial(ctx, env, floorBridge, n)
			if err != nil {
				return nil, err
			}
			r.raw = append(r.raw, d)
			// The node holds one burst at a time: n of each may not fit.
			if err := scaleTo(env, floorBridge, 0); err != nil {
				return nil, err
			}
			if err := waitGone(env, nomadjob.ServiceName(floorBridge)); err != nil {
				return nil, err
			}
			d, started, err := burstTrial(env, gatewayURL, name, n)
			if err != nil {
				return nil, err
			}
			if err := scaleTo(env, name, 0); err != nil {
				return nil, err
			}
			if err := waitGone(env, nomadjob.ServiceName(name)); err != nil {
				return nil, err
			}
			r.gateway = append(r.gateway, d)
			r.instances = max(r.instances, started)
		}
		out = append(out, r)
	}
	for _, job := range []string{floorBridge, name} {
		if err := scaleTo(env, job, 0); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// burstHold is how long each request of a burst keeps its instance busy,
// longer than the spread of the instances' starts, so that a burst of n
// is served by n instances rather than by the first one in turn. It is
// subtracted from the figure.
const burstHold = 2 * time.Second

// burstTrial sends n requests at once to the function at 0 instances and
// returns the time until the last one answered, less burstHold, and the
// number of instances the burst started.
func burstTrial(env *testenv.Env, gatewayURL, name string, n int) (time.Duration, int, error) {
	if err := toZero(env, gatewayURL, name); err != nil {
		return 0, 0, err
	}
	hold := fmt.Sprintf(`{"action":"sleep","n":%d}`, burstHold.Milliseconds())
	errs := make(chan error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- invokeWith(gatewayURL+"/v1/functions/"+name+"/invoke", hold, "")
		}()
	}
	wg.Wait()
	d := time.Since(start) - burstHold
	close(errs)
	for err := range errs {
		if err != nil {
			return 0, 0, err
		}
	}
	return d, len(instanceURLs(env, nomadjob.ServiceName(name))), nil
}

func scaleTo(env *testenv.Env, name string, n int) error {
	_, _, err := env.Nomad.Jobs().Scale(nomadjob.JobID(name), nomadjob.GroupName, &n, "nimbus-bench", false, nil, nil)
	return err
}

// waitGone waits until a function's (or the floor's) instances are
// deregistered and their allocations have finished stopping: a cold start
// normally comes long after the last instance went, and one that raced
// its predecessor's teardown (its namespace, its processes) on the same
// node would measure that teardown too.
func waitGone(env *testenv.Env, service string) error {
	for i := 0; i < 1200; i++ {
		entries, _, err := env.Consul.Catalog().Service(service, "", nil)
		if err == nil && len(entries) == 0 && allocationsStopped(env, service) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not stop", service)
}

// allocationsStopped says whether every allocation of the job (named like
// its service) is terminal on its client.
func allocationsStopped(env *testenv.Env, jobID string) bool {
	allocs, _, err := env.Nomad.Jobs().Allocations(jobID, false, nil)
	if err != nil {
		return false
	}
	for _, a := range allocs {
		if a.ClientStatus == nomadapi.AllocClientStatusPending || a.ClientStatus == nomadapi.AllocClientStatusRunning {
			return false
		}
	}
	return true
}

// instanceURLs are the registered instances of a service, healthy or not.
func instanceURLs(env *testenv.Env, service string) []string {
	entries, _, err := env.Consul.Catalog().Service(service, "", nil)
	if err != nil {
		return nil
	}
	urls := make([]string, 0, len(entries))
	for _, e := range entries {
		urls = append(urls, fmt.Sprintf("http://%s:%d", e.ServiceAddress, e.ServicePort))
	}
	return urls
}

// healthyInstanceURL is a healthy instance of a service, once one is.
func healthyInstanceURL(env *testenv.Env, service string) (string, error) {
	for i := 0; i < 600; i++ {
		entries, _, err := env.Consul.Health().Service(service, "", true, nil)
		if err == nil && len(entries) > 0 {
			return fmt.Sprintf("http://%s:%d", entries[0].Service.Address, entries[0].Service.Port), nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "", fmt.Errorf("no healthy instance of %s", service)
}

// interpreterStarts times the interpreters' own start, the part of a
// Python or Node.js cold start that no instance can skip: process start
// to exit of an empty program, as the instances run them (from /usr).
func interpreterStarts(trials int) ([]coldSeries, error) {
	out := []coldSeries{
		{label: "`python3 -c pass`"},
		{label: "`node -e 0`"},
	}
	cmds := [][]string{{"/usr/bin/python3", "-c", "pass"}, {"/usr/bin/node", "-e", "0"}}
	for range trials {
		for i, argv := range cmds {
			start := time.Now()
			if err := exec.Command(argv[0], argv[1:]...).Run(); err != nil {
				return nil, fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
			}
			out[i].trials = append(out[i].trials, time.Since(start))
		}
	}
	return out, nil
}
