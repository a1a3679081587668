package invoke

import (
	"context"
	"time"
)

// meter records every invocation that reaches it: Prometheus metrics and
// usage totals, and a published version's stats for its alias's
// deployment.
func (s *Service) meter(next invoker) invoker {
	return func(ctx context.Context, inv *Invocation) {
		start := time.Now()
		next(ctx, inv)
		if inv.Refused != nil {
			inv.Out.Status, inv.Out.ErrorType = inv.Refused.Status, inv.Refused.Type
		}
		name, out := inv.Fn.Name, inv.Out
		s.metrics.Observe(name, out)
		s.usage.Add(name, out)
		if inv.Fn.Version != "" {
			// What an alias's deployment judges: the function failed, or the
			// gateway could not run it (throttles are not the version's).
			failed := inv.Refused == nil && inv.Answer.FunctionFailed() || inv.Refused != nil && inv.Refused.Status >= 500
			inv.Pool.Record(time.Now(), failed, time.Since(start))
		}
	}
}

// audit writes one access line for every invocation, refused or not, as
// CloudTrail's data events record Lambda's: who asked (the caller and its
// access key), for what (the function, the qualifier it named, the version
// that ran) and what came of it.
func (s *Service) audit(next invoker) invoker {
	return func(ctx context.Context, inv *Invocation) {
		start := time.Now()
		next(ctx, inv)
		out := inv.Out
		if inv.Refused != nil {
			out.Status, out.ErrorType = inv.Refused.Status, inv.Refused.Type
		}
		s.access.Info("invoke", "function", inv.Function, "qualifier", inv.Qualifier, "version", inv.ExecutedVersion(),
			"caller", inv.Caller.Name(), "key_id", inv.Caller.KeyID(), "request_id", inv.RequestID, "status", out.Status, "error_type", out.ErrorType,
			"cold", out.Cold, "cold_path", out.ColdPath, "duration_ms", out.DurationMs, "billed_ms", out.BilledMs, "memory_mb", out.MemoryMB,
			"max_memory_used_mb", out.MaxMemoryMB, "latency_ms", float64(time.Since(start).Microseconds())/1000)
	}
}
