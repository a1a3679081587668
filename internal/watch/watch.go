// Package watch runs Consul blocking queries in a loop: the one watcher
// behind every list the gateway follows (functions, routes, limits, KV
// triggers, instance health).
//
// It follows Consul's guidance for blocking queries: an index that goes
// backwards (a snapshot restore, a new leader with a lower index) restarts
// the watch from zero, an index of zero is never waited on as if it were a
// real one, and errors back off exponentially (backoff.Fast) so an
// unreachable agent is not hammered. After each result the loop pauses
// briefly, so that a burst of writes lands as one change rather than many.
package watch

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/backoff"
)

// Query is one blocking query: it waits until the watched data's index
// passes waitIndex (or Consul's wait time ends) and returns the data with
// its new index.
type Query[T any] func(ctx context.Context, waitIndex uint64) (T, uint64, error)

// Loop describes a watch.
type Loop[T any] struct {
	// What names the watched data in logs ("functions", "instances of f").
	What  string
	Query Query[T]
	// Apply receives every result, including repeats of the same index
	// after Consul's wait time ran out.
	Apply func(T)
	// Failed, when set, hears every error with the wait before the retry;
	// Recovered hears the first success after errors.
	Failed    func(err error, retryIn time.Duration)
	Recovered func()
	// Coalesce is a pause after each Apply, for lists that change in
	// bursts; zero means none.
	Coalesce time.Duration
	Log      *slog.Logger
}

// Run follows the watch until ctx ends.
func (l Loop[T]) Run(ctx context.Context) {
	log := l.Log
	if log == nil {
		log = slog.Default()
	}
	var index uint64
	retry := backoff.Fast.Start()
	for ctx.Err() == nil {
		data, next, err := l.Query(ctx, index)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if retry.Last() == 0 {
				log.Warn("watch failed; keeping the last known state and retrying", "watch", l.What, "err", err)
			}
			wait := retry.Next()
			if l.Failed != nil {
				l.Failed(err, wait)
			}
			Sleep(ctx, wait)
			continue
		}
		if retry.Last() != 0 {
			log.Info("watch recovered", "watch", l.What)
			if l.Recovered != nil {
				l.Recovered()
			}
		}
		retry.Reset()
		index = NextIndex(index, next)
		l.Apply(data)
		if l.Coalesce > 0 {
			Sleep(ctx, l.Coalesce)
		}
	}
}

// NextIndex is the wait index for the next query after one that returned
// next, given the previous one.
func NextIndex(prev, next uint64) uint64 {
	if next < prev {
		return 0 // the index went backwards: start over
	}
	return next
}

// NextBackoff doubles d within [100 ms, 5 s]: backoff.Fast, the watches'
// policy, for the loops that keep their delay in a variable of their own.
func NextBackoff(d time.Duration) time.Duration { return backoff.Fast.After(d) }

// Sleep waits for d or until ctx ends: backoff.Sleep, for callers that
// look at ctx themselves afterwards.
func Sleep(ctx context.Context, d time.Duration) { _ = backoff.Sleep(ctx, d) }

// Every calls fn every period, in a goroutine of its own, until the
// returned stop is called: the renewal of a lease while its holder works.
func Every(period time.Duration, fn func()) (stop func()) {
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				fn()
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done) }) }
}
