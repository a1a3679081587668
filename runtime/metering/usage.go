package metering

import (
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/refusal"
)

// Usage totals invocations and GB-seconds per function since start.
type Usage struct {
	mu    sync.Mutex
	since time.Time
	by    map[string]*functionUsage
}

type functionUsage struct {
	Function    string  `json:"function"`
	Invocations int64   `json:"invocations"`
	Errors      int64   `json:"errors"`
	Throttles   int64   `json:"throttles"`
	ColdStarts  int64   `json:"cold_starts"`
	GBSeconds   float64 `json:"gb_seconds"`
}

// NewUsage starts the totals now.
func NewUsage() *Usage { return &Usage{since: time.Now(), by: map[string]*functionUsage{}} }

// Forget drops a deleted function's totals.
func (u *Usage) Forget(name string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.by, name)
}

// Add counts one invocation of name.
func (u *Usage) Add(name string, o Outcome) {
	u.mu.Lock()
	defer u.mu.Unlock()
	fu, ok := u.by[name]
	if !ok {
		fu = &functionUsage{Function: name}
		u.by[name] = fu
	}
	fu.Invocations++
	if o.ErrorType != "" {
		fu.Errors++
	}
	if o.Status == http.StatusTooManyRequests {
		fu.Throttles++
	}
	if o.Cold {
		fu.ColdStarts++
	}
	fu.GBSeconds += gbSeconds(o)
}

// ServeHTTP answers /v1/usage.
func (u *Usage) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	u.mu.Lock()
	list := make([]functionUsage, 0, len(u.by))
	for _, fu := range u.by {
		list = append(list, *fu)
	}
	since := u.since
	u.mu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].Function < list[j].Function })
	refusal.WriteJSON(w, http.StatusOK, map[string]any{"since": since.UTC().Format(time.RFC3339), "functions": list})
}
