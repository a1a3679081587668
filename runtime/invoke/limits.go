package invoke

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
func (s *Service) limit(next invoker) invoker {
	return func(ctx context.Context, inv *Invocation) {
		release, refused := s.admit(inv.Fn)
		if refused != nil {
			inv.Refused = refused
			return
		}
		defer release()
		next(ctx, inv)
	}
}

// admit takes a slot for f or explains which limit refuses it. A function
// with reserved_concurrency is guaranteed that many and capped at it; the
// others share max_concurrency minus all reservations.
func (s *Service) admit(f *registry.Function) (release func(), refused *refusal.Error) {
	ns := registry.Namespace(f)
	a := s.admission
	a.mu.Lock()
	defer a.mu.Unlock()
	if r := s.registry.ReservedFor(f); r > 0 {
		if a.reserved[f.Name] >= r {
			return nil, refusal.New(http.StatusTooManyRequests, "TooManyRequestsException",
				fmt.Sprintf("function %s is at its reserved_concurrency of %d; retry later", f.Name, r))
		}
		a.reserved[f.Name]++
		return func() { a.mu.Lock(); a.reserved[f.Name]--; a.mu.Unlock() }, nil
	}
	lim := s.registry.Limits(ns)
	capacity := lim.MaxConcurrency - s.registry.Reserved(ns)
	if a.unreserved[ns] >= capacity {
		return nil, refusal.New(http.StatusTooManyRequests, "TooManyRequestsException",
			fmt.Sprintf("namespace %s is at its max_concurrency of %d (%d of it reserved for other functions); retry later", ns, lim.MaxConcurrency, lim.MaxConcurrency-capacity))
	}
	a.unreserved[ns]++
	return func() { a.mu.Lock(); a.unreserved[ns]--; a.mu.Unlock() }, nil
}
