// Package testkit holds the helpers that tests of several packages share:
// pointers for API structs, the one Nomad job shape that integration tests
// register by hand, uploading a package as the provider does, and the wait
// for passing instances in Consul.
package testkit

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/clients"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/packaging"
)

// Ptr returns a pointer to v, for the optional fields of API structs.
func Ptr[T any](v T) *T { return &v }

// ServiceJob describes a one-task exec job with an HTTP service, the shape
// that integration tests register directly with Nomad.
type ServiceJob struct {
	Name     string // job id, job name and Consul service name
	Count    int
	Command  string // inside the task's chroot
	Args     []string
	CPU      int // MHz; default 100
	MemoryMB int // default 32
	// MaxCount, when set, adds a scaling block from 0 to MaxCount.
	MaxCount int
	// NoRestarts fails the allocation at the first task exit.
	NoRestarts bool
}

// Job renders the job. Deployments are off (max_parallel = 0), as for
// function jobs, so a scale request is never refused as "job scaling
// blocked due to active deployment". The service is checked on /healthz.
func (s ServiceJob) Job() *nomadapi.Job {
	job := nomadapi.NewServiceJob(s.Name, s.Name, "global", 50)
	job.Datacenters = []string{"dc1"}
	tg := nomadapi.NewTaskGroup("main", s.Count)
	tg.Networks = []*nomadapi.NetworkResource{{DynamicPorts: []nomadapi.Port{{Label: "http"}}}}
	tg.Update = &nomadapi.UpdateStrategy{MaxParallel: Ptr(0)}
	if s.MaxCount > 0 {
		tg.Scaling = &nomadapi.ScalingPolicy{Min: Ptr(int64(0)), Max: Ptr(int64(s.MaxCount))}
	}
	if s.NoRestarts {
		tg.RestartPolicy = &nomadapi.RestartPolicy{Attempts: Ptr(0), Mode: Ptr("fail")}
	}
	cpu, memory := s.CPU, s.MemoryMB
	if cpu == 0 {
		cpu = 100
	}
	if memory == 0 {
		memory = 32
	}
	task := nomadapi.NewTask("main", "exec").
		SetConfig("command", s.Command).
		Require(&nomadapi.Resources{CPU: Ptr(cpu), MemoryMB: Ptr(memory)})
	if len(s.Args) > 0 {
		task.SetConfig("args", s.Args)
	}
	task.Services = []*nomadapi.Service{{
		Name:      s.Name,
		PortLabel: "http",
		Provider:  "consul",
		Checks: []nomadapi.ServiceCheck{{
			Name:     "healthz",
			Type:     "http",
			Path:     "/healthz",
			Interval: time.Second,
			Timeout:  time.Second,
		}},
	}}
	tg.AddTask(task)
	job.AddTaskGroup(tg)
	return job
}

// InstanceKey reads the key of a running instance of a function's job, as
// the gateway reads it (Nomad's allocation file system API), for tests
// and benchmarks that call an instance directly. Nomad may report the
// allocation running a moment after Consul sees the instance pass, so it
// tries until ctx ends.
func InstanceKey(ctx context.Context, nomad *nomadapi.Client, jobID, keyPath string) (string, error) {
	lastErr := fmt.Errorf("no running allocation of %s", jobID)
	for ctx.Err() == nil {
		key, err := readInstanceKey(ctx, nomad, jobID, keyPath)
		if err == nil {
			return key, nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	return "", lastErr
}

func readInstanceKey(ctx context.Context, nomad *nomadapi.Client, jobID, path string) (string, error) {
	q := (&nomadapi.QueryOptions{}).WithContext(ctx)
	stubs, _, err := nomad.Jobs().Allocations(jobID, false, q)
	if err != nil {
		return "", err
	}
	for _, stub := range stubs {
		if stub.ClientStatus != nomadapi.AllocClientStatusRunning && stub.ClientStatus != nomadapi.AllocClientStatusPending {
			continue
		}
		alloc, _, err := nomad.Allocations().Info(stub.ID, q)
		if err != nil {
			return "", err
		}
		rc, err := nomad.AllocFS().Cat(alloc, path, q)
		if err != nil {
			return "", err
		}
		defer func() { _ = rc.Close() }()
		key, err := io.ReadAll(io.LimitReader(rc, 256))
		if err == nil && len(key) == 0 {
			err = fmt.Errorf("the instance key of %s is still empty", jobID)
		}
		return strings.TrimSpace(string(key)), err
	}
	return "", fmt.Errorf("no running allocation of %s", jobID)
}

// WaitInstances waits, with Consul blocking queries, until service has
// exactly want instances, all passing their checks, and returns one of them
// (nil for want 0). It fails the test when ctx ends first.
func WaitInstances(ctx context.Context, t testing.TB, c *consulapi.Client, service string, want int) *consulapi.ServiceEntry {
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

// Upload puts a package in a gateway's artifact store, as the provider
// does, and returns it as a job's source: the signed URL nimbus-host
// fetches it by.
func Upload(t testing.TB, gatewayURL, token string, pkg *packaging.Package) nomadjob.Source {
	t.Helper()
	store := clients.Artifacts{BaseURL: gatewayURL, Token: token, HTTP: http.DefaultClient}
	if _, err := store.Ensure(context.Background(), pkg.SHA256, pkg.Zip); err != nil {
		t.Fatalf("uploading the package: %v", err)
	}
	url, _, err := store.SignedURL(context.Background(), pkg.SHA256)
	if err != nil {
		t.Fatalf("signing the package's URL: %v", err)
	}
	return nomadjob.Source{URL: url, SHA256: pkg.SHA256, FromStore: true}
}
