package progressive

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
)

func TestSteps(t *testing.T) {
	for _, c := range []struct {
		spec Spec
		want []float64
	}{
		{Spec{Type: kvstore.DeployCanary, Percentage: 10}, []float64{0.1, 1}},
		{Spec{Type: kvstore.DeployLinear, Percentage: 25}, []float64{0.25, 0.5, 0.75, 1}},
		{Spec{Type: kvstore.DeployLinear, Percentage: 30}, []float64{0.3, 0.6, 0.9, 1}},
		{Spec{Type: kvstore.DeployLinear, Percentage: 50}, []float64{0.5, 1}},
		{Spec{Type: kvstore.DeployAllAtOnce}, []float64{1}},
	} {
		if got := c.spec.Steps(); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s %g%%: steps %v; want %v", c.spec.Type, c.spec.Percentage, got, c.want)
		}
	}
}

func TestParseSpecRefusesWhatThePlanRefuses(t *testing.T) {
	for _, d := range []kvstore.AliasDeployment{
		{Type: "blue"},
		{Type: kvstore.DeployCanary, Percentage: 0, Interval: "1m"},
		{Type: kvstore.DeployCanary, Percentage: 100, Interval: "1m"},
		{Type: kvstore.DeployLinear, Percentage: 10, Interval: "10ms"},
		{Type: kvstore.DeployLinear, Percentage: 10, Interval: "1m", ErrorRateAbove: 120},
		{Type: kvstore.DeployLinear, Percentage: 10, Interval: "soon"},
	} {
		if _, err := ParseSpec(d); err == nil {
			t.Errorf("ParseSpec(%+v) accepted it", d)
		}
	}
	s, err := ParseSpec(kvstore.AliasDeployment{Type: kvstore.DeployCanary, Percentage: 10, Interval: "1m"})
	if err != nil || s.Window != DefaultWindow || s.MinRequests != DefaultMinRequests {
		t.Errorf("defaults: %+v, %v", s, err)
	}
}

// A linear deployment moves one step per interval and succeeds at 100%;
// the alias routes by each step's weight on the way.
func TestLinearDeploymentReachesAll(t *testing.T) {
	a := kvstore.AliasRecord{Name: "live", Function: "fn", FunctionVersion: "2", PreviousVersion: "1", DeploymentID: "d1",
		Deployment: &kvstore.AliasDeployment{Type: kvstore.DeployLinear, Percentage: 50, Interval: "1m"}}
	s, err := ParseSpec(*a.Deployment)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	if p, w := Routing(a, nil); p != "1" || w != nil {
		t.Errorf("before the driver starts it: %s %v; want all on version 1", p, w)
	}
	st := Start(a, s, now)
	if p, w := Routing(a, &st); p != "1" || w["2"] != 0.5 {
		t.Errorf("step 1: %s %v; want half on version 2", p, w)
	}
	healthy := Stats{Requests: 100, Errors: 0, P99: 10 * time.Millisecond}
	if next, changed := Advance(st, s, healthy, now.Add(30*time.Second)); changed || next.Step != 1 {
		t.Errorf("within the interval: step %d, changed %v", next.Step, changed)
	}
	st, changed := Advance(st, s, healthy, now.Add(time.Minute))
	if !changed || st.Status != kvstore.DeploymentSucceeded || st.Step != 2 || st.Weight != 1 {
		t.Errorf("after the interval: %+v", st)
	}
	if p, w := Routing(a, &st); p != "2" || w != nil {
		t.Errorf("succeeded: %s %v; want all on version 2", p, w)
	}
}

// A condition that trips rolls the deployment back, says why, and routes
// everything to the previous version; too few requests judge nothing.
func TestRollback(t *testing.T) {
	a := kvstore.AliasRecord{Name: "live", Function: "fn", FunctionVersion: "2", PreviousVersion: "1", DeploymentID: "d1",
		Deployment: &kvstore.AliasDeployment{Type: kvstore.DeployCanary, Percentage: 10, Interval: "1m", ErrorRateAbove: 5, P99Above: "500ms", MinRequests: 20}}
	s, err := ParseSpec(*a.Deployment)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	st := Start(a, s, now)
	if next, changed := Advance(st, s, Stats{Requests: 10, Errors: 10}, now.Add(time.Second)); changed || next.Status != kvstore.DeploymentRunning {
		t.Errorf("10 requests, fewer than min_requests, rolled back: %+v", next)
	}
	next, changed := Advance(st, s, Stats{Requests: 40, Errors: 20}, now.Add(time.Second))
	if !changed || next.Status != kvstore.DeploymentRolledBack || !strings.Contains(next.Reason, "50.0% of its 40 invocations") {
		t.Errorf("half failing: %+v", next)
	}
	if p, w := Routing(a, &next); p != "1" || w != nil {
		t.Errorf("rolled back: %s %v; want all on version 1", p, w)
	}
	slow, _ := Advance(st, s, Stats{Requests: 40, P99: time.Second}, now.Add(time.Second))
	if slow.Status != kvstore.DeploymentRolledBack || !strings.Contains(slow.Reason, "p99_above (500ms)") {
		t.Errorf("slow: %+v", slow)
	}
	// A state of an earlier deployment routes nothing to the new version.
	old := next
	old.ID = "d0"
	old.Status = kvstore.DeploymentSucceeded
	if p, _ := Routing(a, &old); p != "1" {
		t.Errorf("an earlier deployment's state routed to %s", p)
	}
}
