package testkit

import (
	"sync"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/watch"
)

// Steady calls call perSecond times a second, each call in a goroutine of
// its own, so that a slow answer does not slow the load (an open loop),
// until the returned stop is called. stop waits for the calls in flight
// and returns every result, in the order the calls were sent.
func Steady[T any](perSecond int, call func() T) (stop func() []T) {
	var (
		mu      sync.Mutex
		stopped bool
		results []*T
		running sync.WaitGroup
	)
	stopTicking := watch.Every(time.Second/time.Duration(perSecond), func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		slot := new(T)
		results = append(results, slot)
		running.Add(1)
		go func() {
			defer running.Done()
			*slot = call()
		}()
	})
	return func() []T {
		mu.Lock()
		stopped = true
		mu.Unlock()
		stopTicking()
		running.Wait()
		out := make([]T, len(results))
		for i, r := range results {
			out[i] = *r
		}
		return out
	}
}
