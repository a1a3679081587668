package gateway

import (
	"context"
	"time"
)

// meter records every invocation that reaches it: Prometheus metrics, usage
// totals and one access line.
func (g *Gateway) meter(next invoker) invoker {
	return func(ctx context.Context, inv *invocation) {
		start := time.Now()
		next(ctx, inv)
		if inv.refused != nil {
			inv.out.Status, inv.out.ErrorType = inv.refused.Status, inv.refused.Type
		}
		name, out := inv.fn.Name, inv.out
		g.metrics.Observe(name, out)
		g.usage.Add(name, out)
		if inv.fn.Version != "" {
			// What an alias's deployment judges: the function failed, or the
			// gateway could not run it (throttles are not the version's).
			failed := inv.refused == nil && inv.answer.functionFailed() || inv.refused != nil && inv.refused.Status >= 500
			inv.pool.Record(time.Now(), failed, time.Since(start))
		}
		g.access.Info("invoke", "function", name, "version", inv.fn.ExecutedVersion(), "request_id", inv.requestID, "status", out.Status, "error_type", out.ErrorType,
			"cold", out.Cold, "cold_path", out.ColdPath, "duration_ms", out.DurationMs, "billed_ms", out.BilledMs, "memory_mb", out.MemoryMB,
			"max_memory_used_mb", out.MaxMemoryMB, "latency_ms", float64(time.Since(start).Microseconds())/1000)
	}
}
