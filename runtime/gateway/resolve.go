package gateway

import (
	"context"
	"fmt"
	"net/http"
)

// resolve finds the function an invocation names.
func (g *Gateway) resolve(next invoker) invoker {
	return func(ctx context.Context, inv *invocation) {
		f, ok := g.registry.Get(inv.function)
		p, okPool := g.pool(inv.function)
		if !ok || !okPool {
			inv.refused = &apiError{http.StatusNotFound, "ResourceNotFoundException",
				fmt.Sprintf("function %q does not exist; check its name or apply its nimbus_function", inv.function)}
			return
		}
		inv.fn, inv.pool = f, p
		next(ctx, inv)
	}
}
