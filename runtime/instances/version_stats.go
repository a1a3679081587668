package instances

import (
	"slices"
	"sync"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/progressive"
)

// invocationStats keeps the last invocations of a published version, which
// the rollback conditions of an alias's deployment judge. It is bounded:
// beyond statsSamples, the oldest are forgotten, so a busy version is
// judged on its most recent invocations.
type invocationStats struct {
	mu      sync.Mutex
	samples []invocationSample // a ring once full
	next    int
}

type invocationSample struct {
	at     time.Time
	failed bool
	took   time.Duration
}

const statsSamples = 4096

func (s *invocationStats) add(at time.Time, failed bool, took time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sample := invocationSample{at: at, failed: failed, took: took}
	if len(s.samples) < statsSamples {
		s.samples = append(s.samples, sample)
		return
	}
	s.samples[s.next] = sample
	s.next = (s.next + 1) % statsSamples
}

// since sums the invocations that ended at or after t.
func (s *invocationStats) since(t time.Time) progressive.Stats {
	s.mu.Lock()
	var st progressive.Stats
	var took []time.Duration
	for _, x := range s.samples {
		if x.at.Before(t) {
			continue
		}
		st.Requests++
		if x.failed {
			st.Errors++
		}
		took = append(took, x.took)
	}
	s.mu.Unlock()
	if len(took) > 0 {
		slices.Sort(took)
		st.P99 = took[(len(took)*99+99)/100-1]
	}
	return st
}
