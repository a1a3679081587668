package testenv_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
)

const chrootBin = "/opt/nimbus-test"

func TestMain(m *testing.M) {
	binDir, err := os.MkdirTemp("", "nimbus-httpecho-")
	if err != nil {
		panic(err)
	}
	if err := testenv.BuildStatic(map[string]string{filepath.Join(binDir, "httpecho"): "./internal/harness/testenv/testdata/httpecho"}); err != nil {
		panic(err)
	}
	defer func() { _ = os.RemoveAll(binDir) }()
	// Other tests start environments of their own with the same binary.
	_ = os.Setenv("NIMBUS_TEST_HTTPECHO", filepath.Join(binDir, "httpecho"))
	testenv.Main(m, testenv.Options{ChrootEnv: map[string]string{binDir: chrootBin}})
}

// echoJob is a one-group exec job with a Consul-registered HTTP service.
// Deployments are disabled (max_parallel = 0) so that a scale request is
// never refused as "job scaling blocked due to active deployment".
func echoJob(name string, count int) *nomadapi.Job {
	job := nomadapi.NewServiceJob(name, name, "global", 50)
	job.Datacenters = []string{"dc1"}
	tg := nomadapi.NewTaskGroup("web", count)
	tg.Networks = []*nomadapi.NetworkResource{{DynamicPorts: []nomadapi.Port{{Label: "http"}}}}
	tg.Update = &nomadapi.UpdateStrategy{MaxParallel: ptr(0)}
	tg.Scaling = &nomadapi.ScalingPolicy{Min: ptr(int64(0)), Max: ptr(int64(3))}
	task := nomadapi.NewTask("echo", "exec").
		SetConfig("command", chrootBin+"/httpecho").
		Require(&nomadapi.Resources{CPU: ptr(100), MemoryMB: ptr(32)})
	task.Services = []*nomadapi.Service{{
		Name:      name,
		PortLabel: "http",
		Provider:  "consul",
		Checks: []nomadapi.ServiceCheck{{
			Name: "healthz", Type: "http", Path: "/healthz",
			Interval: time.Second, Timeout: time.Second,
		}},
	}}
	tg.AddTask(task)
	job.AddTaskGroup(tg)
	return job
}

func TestExecJobRegistersHealthyServiceAndScalesToZeroAndBack(t *testing.T) {
	env := testenv.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const name = "echo-scale"
	if _, _, err := env.Nomad.Jobs().Register(echoJob(name, 1), nil); err != nil {
		t.Fatalf("register: %v", err)
	}

	entry := waitForInstances(ctx, t, env.Consul, name, 1)
	body := get(t, fmt.Sprintf("http://%s:%d/", entry.Service.Address, entry.Service.Port))
	if !strings.Contains(body, "hello from") || !strings.Contains(body, "uid 65534") {
		t.Errorf("instance answered %q; want it to run sandboxed as nobody (uid 65534)", body)
	}

	for _, count := range []int{0, 1} {
		resp, _, err := env.Nomad.Jobs().Scale(name, "web", ptr(count), fmt.Sprintf("test: scale to %d", count), false, nil, nil)
		if err != nil {
			t.Fatalf("scale to %d: %v", count, err)
		}
		if resp.EvalID == "" {
			t.Fatalf("scale to %d created no evaluation", count)
		}
		waitForInstances(ctx, t, env.Consul, name, count)
	}

	deployments, _, err := env.Nomad.Jobs().Deployments(name, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(deployments) != 0 {
		t.Errorf("job created %d deployments; it must not, so that scaling is never blocked", len(deployments))
	}
	events, _, err := env.Nomad.Jobs().ScaleStatus(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := events.TaskGroups["web"].Desired; got != 1 {
		t.Errorf("desired count %d after scaling back, want 1", got)
	}
}

// waitForInstances waits with Consul blocking queries until the service has
// exactly want instances, all passing, and returns one of them.
func waitForInstances(ctx context.Context, t *testing.T, c *consulapi.Client, service string, want int) *consulapi.ServiceEntry {
	t.Helper()
	var index uint64
	for {
		q := (&consulapi.QueryOptions{WaitIndex: index, WaitTime: 5 * time.Second}).WithContext(ctx)
		all, meta, err := c.Health().Service(service, "", false, q)
		if err != nil {
			t.Fatalf("waiting for %d passing instances of %s: %v", want, service, err)
		}
		index = meta.LastIndex
		passing := 0
		for _, e := range all {
			if e.Checks.AggregatedStatus() == consulapi.HealthPassing {
				passing++
			}
		}
		if len(all) == want && passing == want {
			if want == 0 {
				return nil
			}
			return all[0]
		}
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url) //nolint:noctx // bounded by the test's own timeout
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func ptr[T any](v T) *T { return &v }
