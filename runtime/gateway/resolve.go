package gateway

import (
	"context"
	"fmt"
	"net/http"
)

// resolve finds the function an invocation names. Until the gateway has
// read the functions from Consul, no name is unknown: the answer is 503,
// which callers and deliveries retry, not a 404 that loses their work.
func (g *Gateway) resolve(next invoker) invoker {
	return func(ctx context.Context, inv *invocation) {
		f, ok := g.registry.Get(inv.function)
		p, okPool := g.pool(inv.function)
		if synced, _ := g.registry.Status(); !synced {
			inv.refused = g.registry.notSynced()
			return
		}
		if !ok || !okPool {
			inv.refused = &apiError{http.StatusNotFound, "ResourceNotFoundException",
				fmt.Sprintf("function %q does not exist; check its name or apply its nimbus_function", inv.function)}
			return
		}
		inv.fn, inv.pool = f, p
		next(ctx, inv)
	}
}
