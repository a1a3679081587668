package invoke

import (
	"net/http"
	"testing"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/auth"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/registry"
)

// Admission under a namespace's max_concurrency of 4, of which function
// "reserved" holds 2: it gets its 2 and no more, and the others share the
// remaining 2, whatever "reserved" does.
func TestAdmissionHoldsReservationsAndTheNamespaceLimit(t *testing.T) {
	s := syncedService(Options{}, auth.Options{Open: true})
	lim := kvstore.Limits{Namespace: "default", MaxConcurrency: 4}
	s.registry.Apply(kvstore.LimitsPrefix, consulapi.KVPairs{{Key: kvstore.LimitsKey("default"), Value: lim.Encode()}})
	var pairs consulapi.KVPairs
	for name, reserved := range map[string]int{"reserved": 2, "a": 0, "b": 0} {
		rec := kvstore.FunctionRecord{Name: name, ReservedConcurrency: reserved}
		pairs = append(pairs, &consulapi.KVPair{Key: kvstore.FunctionKey(name), Value: rec.Encode()})
	}
	s.registry.Apply(kvstore.FunctionsPrefix, pairs)
	fn := func(name string) *registry.Function {
		f, ok := s.registry.Get(name)
		if !ok {
			t.Fatalf("no function %s", name)
		}
		return f
	}

	var releases []func()
	// admits reports how many of n invocations of name are admitted,
	// keeping their slots.
	admits := func(name string, n int) int {
		admitted := 0
		for range n {
			release, refused := s.admit(fn(name))
			if refused != nil {
				if refused.Status != http.StatusTooManyRequests {
					t.Fatalf("%s refused with %d, want 429", name, refused.Status)
				}
				continue
			}
			releases = append(releases, release)
			admitted++
		}
		return admitted
	}
	if n := admits("reserved", 3); n != 2 {
		t.Errorf("a function with reserved_concurrency 2 got %d of 3, want exactly 2", n)
	}
	if a, b := admits("a", 2), admits("b", 2); a+b != 2 {
		t.Errorf("the others got %d and %d; they share exactly max_concurrency minus the reservations (2)", a, b)
	}
	for _, release := range releases {
		release()
	}
	releases = nil
	if n := admits("a", 2); n != 2 {
		t.Errorf("after every release, a got %d of 2", n)
	}
	if n := admits("reserved", 2); n != 2 {
		t.Errorf("with the others at their limit, the reserved function got %d of its 2", n)
	}
}
