package instances

import (
	"context"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/progressive"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/registry"
)

// Function is the function the pool serves, as last read.
func (p *Pool) Function() *registry.Function { return p.fn.Load() }

// Context ends when the function is removed.
func (p *Pool) Context() context.Context { return p.ctx }

// Record counts one invocation of a published version, for its alias's
// deployment: when it ended, whether it failed and how long it took.
func (p *Pool) Record(at time.Time, failed bool, took time.Duration) { p.stats.add(at, failed, took) }

// StatsSince sums the invocations Record counted since t.
func (p *Pool) StatsSince(t time.Time) progressive.Stats { return p.stats.since(t) }

// State is what GET /v1/functions/{name} shows of a pool.
type State struct {
	Instances         int
	ReadyInstances    int
	Inflight          int
	Waiting           int
	GroupCount        int
	ScaleError        error
	WarmPoolInstances []map[string]string
}

// State reads the pool's state at one moment.
func (p *Pool) State() State {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := State{Instances: len(p.instances), Inflight: p.inflight, Waiting: len(p.waiters), GroupCount: p.count,
		ScaleError: p.scaleErr, WarmPoolInstances: p.pooledInstancesLocked()}
	for _, in := range p.instances {
		if in.usable() {
			st.ReadyInstances++
		}
	}
	return st
}

// Addr is where the instance's host listens.
func (in *Instance) Addr() string { return in.addr }

// Key is the instance's key, which every invocation carries ("" for
// instances of jobs from before instance keys).
func (in *Instance) Key() string { return in.key }

// FromWarmPool reports whether the instance is a warm pool's, specialised
// for the function.
func (in *Instance) FromWarmPool() bool { return in.pooled != nil }
