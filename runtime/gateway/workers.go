package gateway

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
)

// workers runs one goroutine per record of a KV prefix (KV triggers,
// event sources), and starts, restarts and stops them as the records come,
// change and go.
type workers[T any] struct {
	mu      sync.Mutex
	running map[string]*worker[T]
	defs    map[string]T
}

// worker is one record's goroutine.
type worker[T any] struct {
	def    T
	cancel context.CancelFunc
	done   chan struct{}
	// problem says why the worker cannot do its work, or is nil.
	problem atomic.Pointer[string]
}

func newWorkers[T any]() *workers[T] {
	return &workers[T]{running: map[string]*worker[T]{}, defs: map[string]T{}}
}

// sync matches the workers to the records: a worker runs (work, until its
// ctx ends) for each record that active accepts, and a changed record's
// worker is stopped, its work finished, and started again.
func (ws *workers[T]) sync(ctx context.Context, defs map[string]T, active func(T) bool, work func(context.Context, *worker[T])) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.defs = defs
	for name, w := range ws.running {
		if def, ok := defs[name]; !ok || !active(def) || !sameRecord(def, w.def) {
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
		w := &worker[T]{def: def, cancel: cancel, done: make(chan struct{})}
		ws.running[name] = w
		go func() {
			defer close(w.done)
			work(wctx, w)
		}()
	}
}

// get returns a record and its worker (nil when it runs none).
func (ws *workers[T]) get(name string) (def T, w *worker[T], ok bool) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	def, ok = ws.defs[name]
	return def, ws.running[name], ok
}

// problems lists the workers that report a problem, among those whose
// record pick accepts.
func (ws *workers[T]) problems(pick func(T) bool) map[string]string {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	out := map[string]string{}
	for name, w := range ws.running {
		if p := w.problem.Load(); p != nil && pick(w.def) {
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
