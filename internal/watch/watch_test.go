package watch

import (
	"context"
	"errors"
	"testing"
	"time"
)

// answer is one scripted reply of a fake blocking query.
type answer struct {
	data  string
	index uint64
	err   error
}

func TestLoopFollowsIndexesAndRecoversFromErrors(t *testing.T) {
	script := []answer{
		{data: "a", index: 10},
		{err: errors.New("connection refused")},
		{err: errors.New("connection refused")},
		{data: "b", index: 12},
		{data: "c", index: 5}, // a restore: the index went backwards
		{data: "d", index: 6},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var waited []uint64
	var applied []string
	var failures []time.Duration
	recovered := 0
	Loop[string]{
		What: "test",
		Query: func(_ context.Context, index uint64) (string, uint64, error) {
			waited = append(waited, index)
			a := script[len(waited)-1]
			if len(waited) == len(script) {
				cancel()
			}
			return a.data, a.index, a.err
		},
		Apply:     func(s string) { applied = append(applied, s) },
		Failed:    func(_ error, retryIn time.Duration) { failures = append(failures, retryIn) },
		Recovered: func() { recovered++ },
	}.Run(ctx)

	wantWaited := []uint64{0, 10, 10, 10, 12, 0}
	if len(waited) != len(wantWaited) {
		t.Fatalf("queries waited on %v, want %v", waited, wantWaited)
	}
	for i := range wantWaited {
		if waited[i] != wantWaited[i] {
			t.Fatalf("queries waited on %v, want %v (after an index goes backwards the watch starts over at 0)", waited, wantWaited)
		}
	}
	if got := len(applied); got != 4 || applied[0] != "a" || applied[3] != "d" {
		t.Errorf("applied %v, want a b c d", applied)
	}
	if len(failures) != 2 || failures[0] != 100*time.Millisecond || failures[1] != 200*time.Millisecond {
		t.Errorf("backoff after errors = %v, want 100ms then 200ms", failures)
	}
	if recovered != 1 {
		t.Errorf("recovered %d times, want once", recovered)
	}
}

func TestBackoffIsBounded(t *testing.T) {
	d := time.Duration(0)
	for range 20 {
		d = NextBackoff(d)
	}
	if want := 5 * time.Second; d != want {
		t.Errorf("backoff grew to %s, want at most %s", d, want)
	}
}
