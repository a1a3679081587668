package invoke

import "context"

// newChain composes the path that every invocation takes, in one place.
// Each step is one concern in its own file, and wraps the next:
//
//  0. audit (meter.go) writes the access line of every invocation that
//     enters the chain, refused or not, with the caller's access key.
//  1. authorize (chain.go) refuses with 403 a caller whose key may not
//     invoke the function, before it can learn whether the name exists.
//     The front ends have authenticated the caller already.
//  2. resolve (resolve.go) finds the function and its pool. An unknown name
//     is refused with 404 before anything is counted, so made-up names
//     cannot grow the metrics.
//  3. meter (meter.go) records metrics and usage for everything below it, refusals included: a throttle or a timeout is
//     something an operator must see.
//  4. limit (limits.go) admits the invocation under the namespace's
//     max_concurrency and the function's reserved_concurrency, or refuses
//     it with 429. It comes before the instance queue, so a refused request
//     never takes a queue slot.
//  5. forward (forward.go) waits for a free instance (scaling from zero),
//     sends the invocation, and retries on another instance only what an
//     instance provably never started.
//
// The front ends (invoke_api.go, lambda_api.go, routes.go) turn HTTP
// requests into invocations and results back into HTTP in their own
// dialect; runtime/refusal writes every refusal.
func (s *Service) newChain() invoker {
	return s.audit(s.authorize(s.resolve(s.meter(s.limit(s.forward)))))
}

// authorize refuses an invocation its caller may not make, before
// anything else: whether a function exists is not told to whoever may
// not invoke it.
func (s *Service) authorize(next invoker) invoker {
	return func(ctx context.Context, inv *Invocation) {
		if inv.Refused = inv.Caller.MayInvoke(inv.Function); inv.Refused == nil {
			next(ctx, inv)
		}
	}
}
