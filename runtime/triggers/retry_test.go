package triggers

import (
	"testing"
	"time"
)

// The shared backoff spaces a failing batch's attempts as the trigger
// always did: 400 ms, 800 ms, 1.6 s, ... at most 10 s.
func TestDeliveryRetryKeepsItsSpacing(t *testing.T) {
	for attempt := 1; attempt <= 8; attempt++ {
		want := min(time.Duration(1<<attempt)*200*time.Millisecond, 10*time.Second)
		if got := deliveryRetry.Delay(attempt); got != want {
			t.Errorf("attempt %d waits %v, want %v", attempt, got, want)
		}
	}
}
