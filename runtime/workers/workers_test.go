package workers

import (
	"context"
	"sync"
	"testing"
	"time"
)

type record struct {
	Value   string
	Enabled bool
}

// TestSyncStartsRestartsAndStops follows records as they come, change and
// go: one worker per active record, a changed record's worker restarted,
// a removed or disabled record's worker stopped before Sync returns.
func TestSyncStartsRestartsAndStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	running := map[string]string{}
	starts := map[string]int{}
	work := func(ctx context.Context, w *Worker[record]) {
		mu.Lock()
		running[w.Def.Value] = w.Def.Value
		starts[w.Def.Value]++
		mu.Unlock()
		<-ctx.Done()
		mu.Lock()
		delete(running, w.Def.Value)
		mu.Unlock()
	}
	active := func(r record) bool { return r.Enabled }
	set := New[record]()
	wait := func(want int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; {
			mu.Lock()
			n := len(running)
			mu.Unlock()
			if n == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d workers run, want %d", n, want)
			}
			time.Sleep(time.Millisecond)
		}
	}

	set.Sync(ctx, map[string]record{"a": {"a1", true}, "b": {"b1", true}, "off": {"off", false}}, active, work)
	wait(2)
	set.Sync(ctx, map[string]record{"a": {"a2", true}, "b": {"b1", true}}, active, work)
	wait(2)
	mu.Lock()
	if running["a1"] != "" || running["a2"] == "" || starts["b1"] != 1 {
		t.Errorf("after a change of a: running %v, starts %v; want a restarted with its new record and b untouched", running, starts)
	}
	mu.Unlock()
	set.Sync(ctx, map[string]record{"b": {"b1", false}}, active, work)
	mu.Lock()
	if len(running) != 0 {
		t.Errorf("Sync returned with %v still running; a removed or disabled record's worker ends first", running)
	}
	mu.Unlock()
	if def, w, ok := set.Get("b"); !ok || w != nil || def.Value != "b1" {
		t.Errorf("Get(b) = %v, %v, %v; want the record and no worker", def, w, ok)
	}
}

func TestProblemsArePickedByRecord(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	set := New[record]()
	reported := make(chan struct{}, 2)
	set.Sync(ctx, map[string]record{"x": {"mine", true}, "y": {"theirs", true}}, func(record) bool { return true },
		func(ctx context.Context, w *Worker[record]) {
			p := "cannot connect"
			w.Problem.Store(&p)
			reported <- struct{}{}
			<-ctx.Done()
		})
	<-reported
	<-reported
	got := set.Problems(func(r record) bool { return r.Value == "mine" })
	if len(got) != 1 || got["x"] != "cannot connect" {
		t.Errorf("Problems = %v, want only x's", got)
	}
}
