package invoke

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/instances"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/refusal"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/registry"
)

// resolve finds the function, or the version of it, that an invocation
// names (find).
func (s *Service) resolve(next invoker) invoker {
	return func(ctx context.Context, inv *Invocation) {
		f, p, refused := s.Find(ctx, inv.Function, inv.Qualifier)
		if refused != nil {
			inv.Refused = refused
			return
		}
		inv.Fn, inv.Pool = f, p
		next(ctx, inv)
	}
}

// Find is the function, or the version of it, and its pool, that a caller
// names by function and qualifier. Until the gateway has read the
// functions from Consul, no name is unknown: the answer is 503, which
// callers and deliveries retry, not a 404 that loses their work. Nor is a
// name unknown that Consul holds and the registry has not read yet: find
// waits for it (catchUp).
func (s *Service) Find(ctx context.Context, function, qualifier string) (*registry.Function, *instances.Pool, *refusal.Error) {
	if synced, _ := s.registry.Status(); !synced {
		return nil, nil, s.registry.NotSynced()
	}
	f, p, refused := s.lookup(function, qualifier)
	if refused != nil && refused.Status == http.StatusNotFound && s.registry.CatchUp(ctx, function) {
		f, p, refused = s.lookup(function, qualifier)
	}
	return f, p, refused
}

// lookup is find as the registry knows the functions now.
func (s *Service) lookup(function, qualifier string) (*registry.Function, *instances.Pool, *refusal.Error) {
	key, refused := s.registryKey(function, qualifier)
	if refused != nil {
		return nil, nil, refused
	}
	f, ok := s.registry.Get(key)
	p, okPool := s.instances.Get(key)
	switch {
	case ok && okPool:
		return f, p, nil
	case key != function:
		if _, exists := s.registry.Get(function); exists {
			// The version asked for, or the one an alias picked.
			_, version := model.SplitQualified(key)
			return nil, nil, refusal.New(http.StatusNotFound, "ResourceNotFoundException",
				fmt.Sprintf("function %q has no published version %s; invoke a published version (its nimbus_function's version attribute), an alias, or $LATEST", function, version))
		}
	}
	return nil, nil, refusal.New(http.StatusNotFound, "ResourceNotFoundException",
		fmt.Sprintf("function %q does not exist; check its name or apply its nimbus_function", function))
}

// registryKey is the registry's key of what a caller invokes: the function
// for no qualifier or $LATEST, <name>:<n> for its version n, and for an
// alias the version it picks for this invocation.
func (s *Service) registryKey(function, qualifier string) (string, *refusal.Error) {
	if err := model.ValidateQualifier(qualifier); err != nil {
		return "", refusal.New(http.StatusBadRequest, "InvalidParameterValueException", err.Error())
	}
	if !model.IsVersionNumber(qualifier) && qualifier != "" && qualifier != model.Latest {
		primary, weights, ok := s.registry.Routing(function, qualifier)
		if !ok {
			return "", refusal.New(http.StatusNotFound, "ResourceNotFoundException",
				fmt.Sprintf("function %q has no alias %s; declare it with a nimbus_alias, or invoke a version number", function, qualifier))
		}
		qualifier = pickVersion(primary, weights, rand.Float64()) //nolint:gosec // a traffic split, not a secret
	}
	if qualifier == "" || qualifier == model.Latest {
		return function, nil
	}
	return model.Qualify(function, qualifier), nil
}

// pickVersion is the version of an alias that runs an invocation, given a
// uniform draw r in [0, 1): each weighted version for its weight, in order
// of their numbers, and the primary version for the rest.
func pickVersion(primary string, weights map[string]float64, r float64) string {
	// By number, so that a draw picks the same version on every gateway.
	versions := slices.SortedFunc(maps.Keys(weights), func(a, b string) int {
		return cmp.Or(cmp.Compare(len(a), len(b)), cmp.Compare(a, b))
	})
	sum := 0.0
	for _, v := range versions {
		sum += weights[v]
		if r < sum {
			return v
		}
	}
	return primary
}
