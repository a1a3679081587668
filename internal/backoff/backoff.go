// Package backoff is how Nimbus waits before trying again: a Policy of
// delays that double from Initial up to Max, a Backoff that walks those
// delays for one retry loop, and waits that end early when a context does.
//
// Every retry loop of the provider and the runtime takes its delays from
// here, so that one reads the same everywhere: the named policies below
// are the ones in use, and go-retryablehttp's waits between HTTP attempts
// (internal/httpclient) are a Policy's too.
package backoff

import (
	"context"
	"time"
)

// Policy is a doubling backoff: Initial, 2×Initial, 4×Initial, … and then
// Max for as long as the failures last. There is no jitter: the loops that
// use it are few per process and do not synchronise with one another.
type Policy struct {
	Initial time.Duration
	Max     time.Duration
}

// The policies in use.
var (
	// Fast is for the control plane's own reads, which fail only while an
	// agent restarts or a leader changes: the Consul watches, confirming an
	// instance with Nomad, restarting a handler that exits before it
	// serves. 100 ms, 200 ms, … 5 s.
	Fast = Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second}
	// Slow is for waits on something outside Nimbus's control, which may
	// last: an event source that cannot consume, a batch the function's
	// limits throttle, a KV trigger whose token may not read its prefix.
	// 1 s, 2 s, … 30 s.
	Slow = Policy{Initial: time.Second, Max: 30 * time.Second}
)

// After is the delay that follows d: twice d, within [Initial, Max].
// After(0) is Initial, the first delay.
func (p Policy) After(d time.Duration) time.Duration {
	if d > p.Max/2 {
		return p.Max // and 2×d cannot overflow below
	}
	return min(max(2*d, p.Initial), p.Max)
}

// Delay is the delay before retry attempt+1 of a loop that counts its
// attempts from 0: Initial×2^attempt, at most Max. It is After applied
// attempt+1 times to 0.
func (p Policy) Delay(attempt int) time.Duration {
	d := time.Duration(0)
	for range max(attempt, 0) + 1 {
		next := p.After(d)
		if next == d {
			break // at Max (or a policy of zeros): it stays there
		}
		d = next
	}
	return d
}

// Start begins a retry loop's backoff: its first Next is Initial.
func (p Policy) Start() Backoff { return Backoff{policy: p} }

// Backoff is one retry loop's place in its Policy. Keep it in a variable
// and call its methods on that: they advance it.
type Backoff struct {
	policy Policy
	last   time.Duration
}

// Next advances to the next delay and returns it.
func (b *Backoff) Next() time.Duration {
	b.last = b.policy.After(b.last)
	return b.last
}

// Last is the delay Next last returned: zero at the start and after
// Reset, so it also tells whether the loop is failing.
func (b *Backoff) Last() time.Duration { return b.last }

// Reset starts over after a success: the next delay is Initial again.
func (b *Backoff) Reset() { b.last = 0 }

// Wait advances to the next delay and waits for it (see Sleep).
func (b *Backoff) Wait(ctx context.Context) error { return Sleep(ctx, b.Next()) }

// Sleep waits for d, or less if ctx ends first; then it returns ctx's
// error, and nil when d passed. It returns at once when ctx has already
// ended, even for a d of zero.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
