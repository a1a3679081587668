// Package progressive is the logic of an alias's deployment: the steps by
// which it shifts invocations from one version to another, when it moves
// to the next step, when it rolls back, and how the alias routes at each
// point. It keeps no state of its own: the state lives in Consul KV
// (kvstore.DeploymentState), so that any gateway can take over a
// deployment where another left it.
package progressive

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
)

// Spec is an alias's deployment, parsed.
type Spec struct {
	Type           string
	Percentage     float64 // per step, 0 to 100
	Interval       time.Duration
	ErrorRateAbove float64 // percent; 0 judges nothing
	P99Above       time.Duration
	Window         time.Duration
	MinRequests    int
}

// Defaults of the rollback window.
const (
	DefaultWindow      = time.Minute
	DefaultMinRequests = 10
)

// ParseSpec parses and checks a deployment as the provider wrote it.
func ParseSpec(d kvstore.AliasDeployment) (Spec, error) {
	s := Spec{Type: d.Type, Percentage: d.Percentage, ErrorRateAbove: d.ErrorRateAbove, MinRequests: d.MinRequests, Window: DefaultWindow}
	var err error
	if d.Interval != "" {
		if s.Interval, err = time.ParseDuration(d.Interval); err != nil {
			return s, fmt.Errorf("interval: %w", err)
		}
	}
	if d.P99Above != "" {
		if s.P99Above, err = time.ParseDuration(d.P99Above); err != nil {
			return s, fmt.Errorf("p99_above: %w", err)
		}
	}
	if d.Window != "" {
		if s.Window, err = time.ParseDuration(d.Window); err != nil {
			return s, fmt.Errorf("window: %w", err)
		}
	}
	if s.MinRequests <= 0 {
		s.MinRequests = DefaultMinRequests
	}
	return s, s.Validate()
}

// Validate checks what the provider checks at plan time.
func (s Spec) Validate() error {
	switch s.Type {
	case kvstore.DeployAllAtOnce:
		return nil
	case kvstore.DeployCanary, kvstore.DeployLinear:
	default:
		return fmt.Errorf("type %q is none of %s, %s and %s", s.Type, kvstore.DeployAllAtOnce, kvstore.DeployCanary, kvstore.DeployLinear)
	}
	switch {
	case s.Percentage <= 0 || s.Percentage >= 100:
		return errors.New("percentage must be above 0 and below 100: the share of the invocations each step sends to the new version")
	case s.Interval < time.Second:
		return errors.New("interval must be at least 1s: how long each step lasts")
	case s.Window < time.Second:
		return errors.New("window must be at least 1s: how far back the rollback conditions look")
	case s.ErrorRateAbove < 0 || s.ErrorRateAbove >= 100:
		return errors.New("error_rate_above is a percentage from 0 to below 100")
	}
	return nil
}

// Steps are the new version's share of the invocations at each step, the
// last always 1.
func (s Spec) Steps() []float64 {
	p := s.Percentage / 100
	switch s.Type {
	case kvstore.DeployCanary:
		return []float64{p, 1}
	case kvstore.DeployLinear:
		var steps []float64
		for i := 1; float64(i)*p < 1-1e-9; i++ {
			steps = append(steps, math.Round(float64(i)*p*1e6)/1e6)
		}
		return append(steps, 1)
	}
	return []float64{1}
}

// Start is a deployment's first step.
func Start(a kvstore.AliasRecord, s Spec, now time.Time) kvstore.DeploymentState {
	steps := s.Steps()
	return kvstore.DeploymentState{
		ID: a.DeploymentID, Function: a.Function, Alias: a.Name, From: a.PreviousVersion, To: a.FunctionVersion,
		Status: kvstore.DeploymentRunning, Step: 1, Steps: len(steps), Weight: steps[0],
		Started: now, StepStarted: now, Updated: now,
	}
}

// Stats are the new version's invocations over the window.
type Stats struct {
	Requests, Errors int
	P99              time.Duration
}

// Since is where the window of the rollback conditions starts: no earlier
// than the deployment, so that invocations of the new version from before
// it are not judged.
func Since(st kvstore.DeploymentState, s Spec, now time.Time) time.Time {
	if since := now.Add(-s.Window); since.After(st.Started) {
		return since
	}
	return st.Started
}

// Advance judges a running deployment on the new version's stats: it rolls
// back when a condition trips, and otherwise moves to the next step once
// the current one has lasted its interval. changed says whether the step
// or the status moved (the observed figures are updated either way).
func Advance(st kvstore.DeploymentState, s Spec, stats Stats, now time.Time) (next kvstore.DeploymentState, changed bool) {
	if st.Status != kvstore.DeploymentRunning {
		return st, false
	}
	st.Requests, st.ErrorRate, st.P99Ms, st.Updated = stats.Requests, 0, float64(stats.P99.Microseconds())/1000, now
	if stats.Requests > 0 {
		st.ErrorRate = 100 * float64(stats.Errors) / float64(stats.Requests)
	}
	if reason := tripped(st, s, stats); reason != "" {
		st.Status, st.Reason, st.Weight = kvstore.DeploymentRolledBack, reason, 0
		return st, true
	}
	if now.Sub(st.StepStarted) < s.Interval {
		return st, false
	}
	steps := s.Steps()
	st.Step = min(st.Step+1, len(steps))
	st.Steps, st.Weight, st.StepStarted = len(steps), steps[st.Step-1], now
	if st.Weight >= 1 {
		st.Status = kvstore.DeploymentSucceeded
	}
	return st, true
}

// tripped says which rollback condition the stats trip, or "".
func tripped(st kvstore.DeploymentState, s Spec, stats Stats) string {
	if stats.Requests < s.MinRequests || stats.Requests == 0 {
		return ""
	}
	if s.ErrorRateAbove > 0 && st.ErrorRate > s.ErrorRateAbove {
		return fmt.Sprintf("version %s failed %.1f%% of its %d invocations over the last %s, above error_rate_above (%g%%)",
			st.To, st.ErrorRate, stats.Requests, s.Window, s.ErrorRateAbove)
	}
	if s.P99Above > 0 && stats.P99 > s.P99Above {
		return fmt.Sprintf("version %s answered in %s at p99 over its %d invocations of the last %s, above p99_above (%s)",
			st.To, stats.P99.Round(time.Millisecond), stats.Requests, s.Window, s.P99Above)
	}
	return ""
}

// Routing is how the alias routes now: the version that gets the rest of
// the invocations, and the others' weights. A deployment the driving
// gateway has not started yet keeps everything on the previous version;
// a running one splits by its step's weight; a finished one sends
// everything to the new version, or back to the previous one.
func Routing(a kvstore.AliasRecord, st *kvstore.DeploymentState) (primary string, weights map[string]float64) {
	if !a.Deploying() {
		return a.FunctionVersion, a.AdditionalVersionWeights
	}
	switch {
	case st == nil || st.ID != a.DeploymentID:
		return a.PreviousVersion, nil
	case st.Status == kvstore.DeploymentRunning:
		return a.PreviousVersion, map[string]float64{a.FunctionVersion: st.Weight}
	case st.Status == kvstore.DeploymentSucceeded:
		return a.FunctionVersion, nil
	}
	return a.PreviousVersion, nil
}
