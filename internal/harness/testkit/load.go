package testkit

import (
	"sync"
	"time"
)

// Steady calls call perSecond times a second, each call in a goroutine of
// its own, so that a slow answer does not slow the load (an open loop),
// until the returned stop is called. stop waits for the calls in flight
// and returns every result, in the order the calls were sent.
func Steady[T any](perSecond int, call func() T) (stop func() []T) {
	var (
		mu      sync.Mutex
		results []*T
		running sync.WaitGroup
	)
	done := make(chan struct{})
	ticking := make(chan struct{})
	go func() {
		defer close(ticking)
		tick := time.NewTicker(time.Second / time.Duration(perSecond))
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			slot := new(T)
			mu.Lock()
			results = append(results, slot)
			mu.Unlock()
			running.Add(1)
			go func() {
				defer running.Done()
				*slot = call()
			}()
		}
	}()
	return func() []T {
		close(done)
		<-ticking
		running.Wait()
		out := make([]T, len(results))
		for i, r := range results {
			out[i] = *r
		}
		return out
	}
}
