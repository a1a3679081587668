package gateway

import (
	"context"
	"fmt"
	"net/http"
	"sync"

	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/refusal"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/registry"
)

// admission counts in-flight invocations (waiting ones included) against
// the namespace's max_concurrency and the functions' reservations.
type admission struct {
	mu         sync.Mutex
	unreserved map[string]int // namespace → in flight outside reservations
	reserved   map[string]int // function → in flight within its reservation
}

func newAdmission() *admission {
	return &admission{unreserved: map[string]int{}, reserved: map[string]int{}}
}

// limit admits an invocation under its namespace's limits, holding the
// slot until the invocation ends, or refuses it.
func (g *Gateway) limit(next invoker) invoker {
	return func(ctx context.Context, inv *invocation) {
		release, refused := g.admit(inv.fn)
		if refused != nil {
			inv.refused = refused
			return
		}
		defer release()
		next(ctx, inv)
	}
}

// admit takes a slot for f or explains which limit refuses it. A function
// with reserved_concurrency is guaranteed that many and capped at it; the
// others share max_concurrency minus all reservations.
func (g *Gateway) admit(f *registry.Function) (release func(), refused *refusal.Error) {
	ns := registry.Namespace(f)
	a := g.admission
	a.mu.Lock()
	defer a.mu.Unlock()
	if r := g.registry.ReservedFor(f); r > 0 {
		if a.reserved[f.Name] >= r {
			return nil, refusal.New(http.StatusTooManyRequests, "TooManyRequestsException",
				fmt.Sprintf("function %s is at its reserved_concurrency of %d; retry later", f.Name, r))
		}
		a.reserved[f.Name]++
		return func() { a.mu.Lock(); a.reserved[f.Name]--; a.mu.Unlock() }, nil
	}
	lim := g.registry.Limits(ns)
	capacity := lim.MaxConcurrency - g.registry.Reserved(ns)
	if a.unreserved[ns] >= capacity {
		return nil, refusal.New(http.StatusTooManyRequests, "TooManyRequestsException",
			fmt.Sprintf("namespace %s is at its max_concurrency of %d (%d of it reserved for other functions); retry later", ns, lim.MaxConcurrency, lim.MaxConcurrency-capacity))
	}
	a.unreserved[ns]++
	return func() { a.mu.Lock(); a.unreserved[ns]--; a.mu.Unlock() }, nil
}

// room is how many instances f's pool may grow to under the namespace's
// max_instances and max_memory_mb, given the other pools' counts, and the
// limit that binds ("" when none does).
func (g *Gateway) room(f *registry.Function, self *pool, want int) (int, string) {
	ns := registry.Namespace(f)
	lim := g.registry.Limits(ns)
	if lim.MaxInstances == 0 && lim.MaxMemoryMB == 0 {
		return want, ""
	}
	otherInstances, otherMemory := 0, 0
	g.mu.Lock()
	pools := make([]*pool, 0, len(g.pools))
	for _, p := range g.pools {
		if p != self && registry.Namespace(p.fn.Load()) == ns {
			pools = append(pools, p)
		}
	}
	g.mu.Unlock()
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
