// Package workers runs one goroutine per record of a KV prefix (KV
// triggers, event sources, alias deployments), and, where one gateway at a
// time must do a record's work, holds that record's Consul lock while it
// runs. It knows nothing of what the records mean: the caller's work
// function does.
package workers

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
)

// Set runs one goroutine per record, and starts, restarts and stops them
// as the records come, change and go.
type Set[T any] struct {
	mu      sync.Mutex
	running map[string]*Worker[T]
	defs    map[string]T
}

// Worker is one record's goroutine.
type Worker[T any] struct {
	Def    T
	cancel context.CancelFunc
	done   chan struct{}
	// Problem says why the worker cannot do its work, or is nil.
	Problem atomic.Pointer[string]
}

// New returns an empty set.
func New[T any]() *Set[T] {
	return &Set[T]{running: map[string]*Worker[T]{}, defs: map[string]T{}}
}

// Sync matches the workers to the records: a worker runs (work, until its
// ctx ends) for each record that active accepts, and a changed record's
// worker is stopped, its work finished, and started again.
func (ws *Set[T]) Sync(ctx context.Context, defs map[string]T, active func(T) bool, work func(context.Context, *Worker[T])) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.defs = defs
	for name, w := range ws.running {
		if def, ok := defs[name]; !ok || !active(def) || !sameRecord(def, w.Def) {
			w.cancel()
			<-w.done
			delete(ws.running, name)
		}
	}
	for name, def := range defs {
		if _, ok := ws.running[name]; ok || !active(def) {
			continue
		}
		wctx, cancel := context.WithCancel(ctx)
		w := &Worker[T]{Def: def, cancel: cancel, done: make(chan struct{})}
		ws.running[name] = w
		go func() {
			defer close(w.done)
			work(wctx, w)
		}()
	}
}

// Get returns a record and its worker (nil when it runs none).
func (ws *Set[T]) Get(name string) (def T, w *Worker[T], ok bool) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	def, ok = ws.defs[name]
	return def, ws.running[name], ok
}

// Problems lists the workers that report a problem, among those whose
// record pick accepts.
func (ws *Set[T]) Problems(pick func(T) bool) map[string]string {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	out := map[string]string{}
	for name, w := range ws.running {
		if p := w.Problem.Load(); p != nil && pick(w.Def) {
			out[name] = *p
		}
	}
	return out
}

// sameRecord reports whether two records say the same.
func sameRecord[T any](a, b T) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}
