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
	admit := func(name string) bool {
		release, refused := s.admit(fn(name))
		if refused != nil {
			if refused.Status != http.StatusTooManyRequests {
				t.Fatalf("%s refused with %d, want 429", name, refused.Status)
			}
			return false
		}
		releases = append(releases, release)
		return true
	}
	if !admit("reserved") || !admit("reserved") || admit("reserved") {
		t.Error("a function with reserved_concurrency 2 must get exactly 2")
	}
	if !admit("a") || !admit("b") || admit("a") || admit("b") {
		t.Error("the others must share exactly max_concurrency minus the reservations (2)")
	}
	for _, release := range releases {
		release()
	}
	releases = nil
	if !admit("a") || !admit("a") {
		t.Error("released slots must be free again")
	}
	if !admit("reserved") || !admit("reserved") {
		t.Error("the others' load must never take a reservation's slots")
	}
}
