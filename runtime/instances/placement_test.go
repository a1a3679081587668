package instances

import (
	"context"
	"errors"
	"testing"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
)

type fakeAllocs map[string]*nomadapi.Allocation

func (f fakeAllocs) Info(id string, _ *nomadapi.QueryOptions) (*nomadapi.Allocation, *nomadapi.QueryMeta, error) {
	if a, ok := f[id]; ok {
		return a, nil, nil
	}
	return nil, nil, errors.New("Unexpected response code: 404 (alloc not found)")
}

func (f fakeAllocs) Stop(*nomadapi.Allocation, *nomadapi.QueryOptions) (*nomadapi.AllocStopResponse, error) {
	return &nomadapi.AllocStopResponse{}, nil
}

func TestAllocIDOf(t *testing.T) {
	const alloc = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
	for id, want := range map[string]string{
		"_nomad-task-" + alloc + "-main-nimbus-fn-a-http":         alloc,
		"_nomad-task-" + alloc + "-group-main-nimbus-fn-a-http":   alloc,
		"_nomad-task-" + alloc:                                    alloc,
		"rogue":                                                   "",
		"_nomad-task-0F1E2D3C-4b5a-6978-8796-a5b4c3d2e1f0-main-x": "",
		"_nomad-task-" + alloc + "x":                              "",
		"_nomad-task-short":                                       "",
	} {
		got, ok := allocIDOf(id)
		if got != want && ok || (want != "") != ok {
			t.Errorf("allocIDOf(%q) = %q, %v; want %q", id, got, ok, want)
		}
	}
}

func TestVerifyPlacement(t *testing.T) {
	const id = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
	alloc := func(job, status string, port int) *nomadapi.Allocation {
		return &nomadapi.Allocation{ID: id, JobID: job, TaskGroup: nomadjob.GroupName, ClientStatus: status,
			AllocatedResources: &nomadapi.AllocatedResources{Shared: nomadapi.AllocatedSharedResources{
				Ports: []nomadapi.PortMapping{{Label: "http", Value: port, HostIP: "127.0.0.1"}},
			}}}
	}
	svc := &consulapi.AgentService{ID: "_nomad-task-" + id + "-main-nimbus-fn-f-http"}
	cases := map[string]struct {
		allocs   fakeAllocs
		addr     string
		placed   bool
		retrying bool
	}{
		"the function's own instance":   {fakeAllocs{id: alloc("nimbus-fn-f", "running", 20100)}, "127.0.0.1:20100", true, false},
		"starting counts":               {fakeAllocs{id: alloc("nimbus-fn-f", "pending", 20100)}, "127.0.0.1:20100", true, false},
		"another job's allocation":      {fakeAllocs{id: alloc("nimbus-fn-other", "running", 20100)}, "127.0.0.1:20100", false, false},
		"a stopped allocation":          {fakeAllocs{id: alloc("nimbus-fn-f", "complete", 20100)}, "127.0.0.1:20100", false, false},
		"an address Nomad did not give": {fakeAllocs{id: alloc("nimbus-fn-f", "running", 20100)}, "127.0.0.1:9999", false, false},
		"Nomad cannot be read":          {fakeAllocs{}, "127.0.0.1:20100", false, true},
	}
	for name, c := range cases {
		_, err := verifyPlacement(context.Background(), c.allocs, nomadjob.JobID("f"), nomadjob.GroupName, svc, c.addr)
		switch {
		case c.placed && err != nil:
			t.Errorf("%s: refused: %v", name, err)
		case !c.placed && err == nil:
			t.Errorf("%s: trusted", name)
		case !c.placed && !c.retrying && !errors.Is(err, errNotPlaced):
			t.Errorf("%s: %v should be a final refusal", name, err)
		case c.retrying && errors.Is(err, errNotPlaced):
			t.Errorf("%s: %v should be retried, not final", name, err)
		}
	}
	if _, err := verifyPlacement(context.Background(), fakeAllocs{}, nomadjob.JobID("f"), nomadjob.GroupName, &consulapi.AgentService{ID: "rogue"}, "127.0.0.1:1"); !errors.Is(err, errNotPlaced) {
		t.Errorf("a service id naming no allocation must be refused for good, got %v", err)
	}
}
