// Package instances keeps each function's instances: it follows them in
// Consul, confirms with Nomad that it placed each one, hands invocations
// free slots, scales the function's job from zero and back, and keeps the
// warm pools whose instances it specialises for a cold start. It does not
// decide who may invoke or whether a limit allows it (the invoke chain
// does), and it never registers jobs: it only scales them.
package instances

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/metering"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/registry"
)

// Limits are the namespaces' quotas, which bound how far a pool scales.
type Limits interface {
	Limits(namespace string) kvstore.Limits
}

// Options wire a Set to Consul, Nomad and the gateway's metrics.
type Options struct {
	Health Health
	Jobs   Jobs
	// Allocations confirms that an instance registered in Consul is one
	// Nomad placed for the function.
	Allocations Allocations
	// AllocFiles reads the instances' keys; nil (tests without Nomad)
	// sends invocations without keys.
	AllocFiles AllocFiles
	Limits     Limits
	Metrics    *metering.Metrics
	Log        *slog.Logger
	// NomadAddress names Nomad in the answers and logs about it.
	NomadAddress string
	// Started (may be nil) sees each new pool, once.
	Started func(*Pool)
}

// Set is the pools of every function this gateway serves, one per
// function and published version.
type Set struct {
	log          *slog.Logger
	health       Health
	jobs         Jobs
	allocs       Allocations
	files        AllocFiles
	limits       Limits
	metrics      *metering.Metrics
	nomadAddress string
	started      func(*Pool)
	warm         *warmPools

	mu    sync.Mutex
	pools map[string]*Pool
}

// New returns an empty set.
func New(o Options) *Set {
	s := &Set{log: o.Log, health: o.Health, jobs: o.Jobs, allocs: o.Allocations, files: o.AllocFiles, limits: o.Limits,
		metrics: o.Metrics, nomadAddress: o.NomadAddress, started: o.Started, pools: map[string]*Pool{}}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.metrics == nil {
		s.metrics = metering.NewMetrics()
	}
	s.warm = newWarmPools(s)
	return s
}

// Sync keeps one pool per function of fns, and returns the names whose
// pools it removed.
func (s *Set) Sync(fns map[string]*registry.Function) (removed []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, f := range fns {
		p, ok := s.pools[name]
		if !ok || p.fn.Load().Network != f.Network {
			s.warnIfHostNetworked(f)
		}
		if !ok || p.fn.Load().EnvSHA256 != f.EnvSHA256 {
			go s.warm.prepare(f)
		}
		if ok {
			p.fn.Store(f)
			continue
		}
		s.pools[name] = newPool(s, f)
	}
	for name, p := range s.pools {
		if _, ok := fns[name]; !ok {
			p.cancel()
			s.warm.dropEnv(p.fn.Load().JobID)
			delete(s.pools, name)
			removed = append(removed, name)
		}
	}
	return removed
}

// Get returns the pool of a function (by name) or of a published version
// (<name>:<n>).
func (s *Set) Get(key string) (*Pool, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pools[key]
	return p, ok
}

// SyncWarmPools follows the warm pools' records.
func (s *Set) SyncWarmPools(ctx context.Context, pairs consulapi.KVPairs) { s.warm.sync(ctx, pairs) }

// Close stops every pool's watch and scaling.
func (s *Set) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, p := range s.pools {
		p.cancel()
		delete(s.pools, name)
	}
}

// Isolated reports whether a function's instances run in their own
// network namespaces; records from before the choice existed had host
// networking.
func Isolated(f *registry.Function) bool { return f.Network == nomadjob.NetworkIsolated }

// warnIfHostNetworked says loudly that a function's instances share the
// host's network, where nothing keeps them from the agents, the gateway's
// API or each other.
func (s *Set) warnIfHostNetworked(f *registry.Function) {
	if Isolated(f) {
		return
	}
	s.log.Warn("function runs with host networking: its instances can reach the host's Nomad and Consul ports, this gateway's API and artifacts, and other instances, and its egress is not enforced. "+
		"Set up the Nimbus CNI networks on the clients (docs/guides/platform.md) and apply without host_network.",
		"function", f.Name)
}

// room is how many instances f's pool may grow to under the namespace's
// max_instances and max_memory_mb, given the other pools' counts, and the
// limit that binds ("" when none does).
func (s *Set) room(f *registry.Function, self *Pool, want int) (int, string) {
	ns := registry.Namespace(f)
	lim := s.limits.Limits(ns)
	if lim.MaxInstances == 0 && lim.MaxMemoryMB == 0 {
		return want, ""
	}
	otherInstances, otherMemory := 0, 0
	s.mu.Lock()
	pools := make([]*Pool, 0, len(s.pools))
	for _, p := range s.pools {
		if p != self && registry.Namespace(p.fn.Load()) == ns {
			pools = append(pools, p)
		}
	}
	s.mu.Unlock()
	for _, p := range pools {
		p.mu.Lock()
		n := p.count
		p.mu.Unlock()
		otherInstances += n
		otherMemory += n * p.fn.Load().MemoryMB
	}
	allowed, binding := want, ""
	if lim.MaxInstances > 0 && otherInstances+allowed > lim.MaxInstances {
		allowed, binding = max(lim.MaxInstances-otherInstances, 0), fmt.Sprintf("max_instances %d", lim.MaxInstances)
	}
	if mem := max(f.MemoryMB, 1); lim.MaxMemoryMB > 0 && otherMemory+allowed*mem > lim.MaxMemoryMB {
		allowed, binding = max((lim.MaxMemoryMB-otherMemory)/mem, 0), fmt.Sprintf("max_memory_mb %d", lim.MaxMemoryMB)
	}
	return allowed, binding
}
