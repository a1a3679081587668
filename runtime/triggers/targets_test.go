package triggers

import (
	"context"
	"testing"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/workers"
)

// Triggers may invoke <name>:<qualifier>; what is told per function (its
// triggers' problems) is told of the function the target names.
func TestQualifiedTargets(t *testing.T) {
	ts := &Runner{workers: workers.New[kvstore.KVTrigger]()}
	problem := "cannot read the prefix"
	defs := map[string]kvstore.KVTrigger{}
	for name, function := range map[string]string{"plain": "fn", "on-alias": "fn:live", "on-version": "fn:2", "other": "fnx:live"} {
		defs[name] = kvstore.KVTrigger{Name: name, Function: function}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reported := make(chan struct{}, len(defs))
	ts.workers.Sync(ctx, defs, func(kvstore.KVTrigger) bool { return true }, func(ctx context.Context, w *workers.Worker[kvstore.KVTrigger]) {
		w.Problem.Store(&problem)
		reported <- struct{}{}
		<-ctx.Done()
	})
	for range defs {
		<-reported
	}
	got := ts.Problems("fn")
	if len(got) != 3 || got["plain"] == "" || got["on-alias"] == "" || got["on-version"] == "" {
		t.Errorf("the problems of fn's triggers are %v; want those of plain, on-alias and on-version", got)
	}
}
