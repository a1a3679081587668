package backoff

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"
)

const ms = time.Millisecond

func TestNamedPoliciesKeepTheirSequences(t *testing.T) {
	tests := []struct {
		name string
		p    Policy
		want []time.Duration
	}{
		{"Fast", Fast, []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 5 * time.Second, 5 * time.Second}},
		{"Slow", Slow, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}},
		{"event source slots", Policy{Initial: 10 * ms, Max: 250 * ms}, []time.Duration{10 * ms, 20 * ms, 40 * ms, 80 * ms, 160 * ms, 250 * ms, 250 * ms}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.p.Start()
			if b.Last() != 0 {
				t.Fatalf("a new backoff's Last is %v, want 0", b.Last())
			}
			for i, want := range tc.want {
				if got := b.Next(); got != want {
					t.Fatalf("delay %d is %v, want %v", i, got, want)
				}
				if b.Last() != want {
					t.Fatalf("Last after delay %d is %v, want %v", i, b.Last(), want)
				}
				if got := tc.p.Delay(i); got != want {
					t.Errorf("Delay(%d) = %v, want %v as Next gave", i, got, want)
				}
			}
			b.Reset()
			if b.Last() != 0 || b.Next() != tc.p.Initial {
				t.Errorf("after Reset the next delay should be Initial %v", tc.p.Initial)
			}
		})
	}
}

// After is what watch.NextBackoff always was: min(max(2d, Initial), Max).
func TestAfterMatchesTheDoublingFormula(t *testing.T) {
	for _, d := range []time.Duration{0, 1, 30 * ms, 49 * ms, 50 * ms, 51 * ms, 100 * ms, 2400 * ms, 2500 * ms, 2501 * ms, 5 * time.Second, time.Hour} {
		want := min(max(2*d, 100*ms), 5*time.Second)
		if got := Fast.After(d); got != want {
			t.Errorf("Fast.After(%v) = %v, want %v", d, got, want)
		}
	}
	if got := Fast.After(math.MaxInt64); got != Fast.Max {
		t.Errorf("After of a huge delay overflowed: %v", got)
	}
}

// Delay is go-retryablehttp's DefaultBackoff without Retry-After:
// min×2^attempt, capped at max, and never overflowing.
func TestDelayMatchesRetryableHTTPsDoubling(t *testing.T) {
	p := Policy{Initial: 200 * ms, Max: 1500 * ms}
	for attempt, want := range []time.Duration{200 * ms, 400 * ms, 800 * ms, 1500 * ms, 1500 * ms} {
		if got := p.Delay(attempt); got != want {
			t.Errorf("Delay(%d) = %v, want %v", attempt, got, want)
		}
	}
	if got := p.Delay(1000); got != p.Max {
		t.Errorf("Delay(1000) = %v, want Max", got)
	}
	if got := p.Delay(-1); got != p.Initial {
		t.Errorf("Delay(-1) = %v, want Initial", got)
	}
	if got := (Policy{}).Delay(5); got != 0 {
		t.Errorf("a zero policy waits %v", got)
	}
}

func TestSleepEndsWithItsContext(t *testing.T) {
	if err := Sleep(context.Background(), ms); err != nil {
		t.Fatalf("a wait that ran its course returned %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled from an ended context, got %v", err)
	}
	if err := Sleep(ctx, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("a zero wait on an ended context should report it, got %v", err)
	}
	if time.Since(start) > time.Second {
		t.Fatal("Sleep did not return when its context ended")
	}

	ctx, cancel = context.WithTimeout(context.Background(), 10*ms)
	defer cancel()
	b := Policy{Initial: time.Hour, Max: time.Hour}.Start()
	if err := b.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want the deadline's error, got %v", err)
	}
	if b.Last() != time.Hour {
		t.Errorf("Wait should advance the backoff: Last is %v", b.Last())
	}
}
