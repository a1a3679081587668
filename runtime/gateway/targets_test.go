package gateway

import (
	"context"
	"testing"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/workers"
)

// Triggers may invoke <name>:<qualifier>; what is told per function (its
// triggers' problems, the ARN in failure records) is told of the function
// the target names, with the qualifier where Lambda shows one.
func TestQualifiedTargets(t *testing.T) {
	for target, arn := range map[string]string{
		"fn":         "arn:aws:lambda:nimbus:000000000000:function:fn:$LATEST",
		"fn:$LATEST": "arn:aws:lambda:nimbus:000000000000:function:fn:$LATEST",
		"fn:3":       "arn:aws:lambda:nimbus:000000000000:function:fn:3",
		"fn:live":    "arn:aws:lambda:nimbus:000000000000:function:fn:live",
	} {
		rc := lambdaRecord("r", target, conditionRetriesExhausted, 1)["requestContext"].(map[string]any)
		if rc["functionArn"] != arn {
			t.Errorf("the record of %s names %v; want %s", target, rc["functionArn"], arn)
		}
	}

	ts := &triggers{workers: workers.New[kvstore.KVTrigger]()}
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
	got := ts.problems("fn")
	if len(got) != 3 || got["plain"] == "" || got["on-alias"] == "" || got["on-version"] == "" {
		t.Errorf("the problems of fn's triggers are %v; want those of plain, on-alias and on-version", got)
	}
}
