package host_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testkit"
)

// chrootDir is where the test binaries appear inside exec tasks.
const chrootDir = "/opt/nimbus"

// hostJob runs nimbus-host with the aws-lambda-go handler as a Nomad exec
// task, with a Consul service checked on /healthz.
func hostJob(name string, memoryMB int) *nomadapi.Job {
	return testkit.ServiceJob{
		Name: name, Count: 1, CPU: 200, MemoryMB: memoryMB, NoRestarts: true,
		Command: chrootDir + "/nimbus-host",
		Args:    []string{"-function", name, "-runtime", "provided", "-task-root", chrootDir + "/lambdago"},
	}.Job()
}

func TestHostUnderNomadExecDriver(t *testing.T) {
	env := testenv.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const name = "host-under-nomad"
	if _, _, err := env.Nomad.Jobs().Register(hostJob(name, 64), nil); err != nil {
		t.Fatal(err)
	}
	svc := testkit.WaitInstances(ctx, t, env.Consul, name, 1)
	h := &runningHost{url: fmt.Sprintf("http://%s:%d", svc.Service.Address, svc.Service.Port)}

	r := h.invoke(t, `{"action":"echo","value":"nomad"}`, "X-Nimbus-Request-Id", "nomad-req-1")
	if r.status != http.StatusOK || r.json(t)["echo"] != "nomad" {
		t.Fatalf("invoke under Nomad: %d %s", r.status, r.body)
	}
	if r.header.Get("X-Nimbus-Memory-Size-Mb") != "64" {
		t.Errorf("memory size %q; under Nomad it comes from the task's memory (NOMAD_MEMORY_LIMIT)", r.header.Get("X-Nimbus-Memory-Size-Mb"))
	}

	allocs, _, err := env.Nomad.Jobs().Allocations(name, false, nil)
	if err != nil || len(allocs) != 1 {
		t.Fatalf("allocations: %v %d", err, len(allocs))
	}
	alloc, _, err := env.Nomad.Allocations().Info(allocs[0].ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	report := regexp.MustCompile(`REPORT RequestId: nomad-req-1\tDuration: [\d.]+ ms\tBilled Duration: \d+ ms\tMemory Size: 64 MB\tMax Memory Used: \d+ MB\tInit Duration: [\d.]+ ms`)
	var logs string
	for i := 0; i < 50 && !report.MatchString(logs); i++ {
		logs = allocLogs(t, env.Nomad, alloc, "main", "stdout")
		time.Sleep(100 * time.Millisecond)
	}
	if !report.MatchString(logs) {
		t.Fatalf("no REPORT line for nomad-req-1 in the alloc's stdout through Nomad's logs API:\n%s", logs)
	}
	t.Logf("from nomad alloc logs: %s", report.FindString(logs))

	// The task's memory limit is a real cgroup limit: a handler that goes
	// past it is killed by the kernel, and the host says so.
	r = h.invoke(t, `{"action":"alloc","n":256}`, "X-Nimbus-Deadline-Ms", deadlineIn(20*time.Second))
	wantFunctionError(t, r, "Runtime.OutOfMemory", "64 MB")
	if ok := h.invoke(t, `{"action":"echo","value":"after-oom"}`, "X-Nimbus-Deadline-Ms", deadlineIn(20*time.Second)); ok.json(t)["echo"] != "after-oom" {
		t.Fatalf("the instance must recover after an OOM kill: %s", ok.body)
	}
}

func allocLogs(t *testing.T, c *nomadapi.Client, alloc *nomadapi.Allocation, task, stream string) string {
	t.Helper()
	cancel := make(chan struct{})
	defer close(cancel)
	frames, errs := c.AllocFS().Logs(alloc, false, task, stream, "start", 0, cancel, nil)
	var b strings.Builder
	for {
		select {
		case f, ok := <-frames:
			if !ok {
				return b.String()
			}
			b.Write(f.Data)
		case err := <-errs:
			if err != nil && !errors.Is(err, io.EOF) {
				t.Fatalf("alloc logs: %v", err)
			}
			return b.String()
		case <-time.After(3 * time.Second):
			return b.String()
		}
	}
}
