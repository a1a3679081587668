package invoke

import (
	"net/http"
	"testing"
)

// A caller names what it invokes in the path, the query, or both when they
// agree.
func TestInvokeTarget(t *testing.T) {
	for _, c := range []struct {
		path, query, name, qualifier string
		status                       int
	}{
		{"fn", "", "fn", "", 0},
		{"fn:3", "", "fn", "3", 0},
		{"fn", "live", "fn", "live", 0},
		{"fn:live", "live", "fn", "live", 0},
		{"fn:live", "3", "", "", http.StatusBadRequest},
		{"fn:01", "", "", "", http.StatusBadRequest},
		{"fn", "a/b", "", "", http.StatusBadRequest},
	} {
		name, q, bad := Target(c.path, c.query)
		status := 0
		if bad != nil {
			status = bad.Status
		}
		if name != c.name || q != c.qualifier || status != c.status {
			t.Errorf("Target(%q, %q) = %q, %q, %v; want %q, %q, status %d", c.path, c.query, name, q, bad, c.name, c.qualifier, c.status)
		}
	}
	if got := lambdaFunctionName("arn:aws:lambda:us-east-1:123456789012:function:fn:7"); got != "fn:7" {
		t.Errorf("lambdaFunctionName of a qualified ARN = %q; want fn:7", got)
	}
}

// An alias sends each additional version its weight of the draws, and its
// own version the rest.
func TestPickVersion(t *testing.T) {
	weights := map[string]float64{"2": 0.1, "10": 0.25}
	for r, want := range map[float64]string{0: "2", 0.099: "2", 0.1: "10", 0.349: "10", 0.35: "1", 0.999: "1"} {
		if got := pickVersion("1", weights, r); got != want {
			t.Errorf("pickVersion(%v) = %s; want %s", r, got, want)
		}
	}
	if got := pickVersion("$LATEST", nil, 0.5); got != "$LATEST" {
		t.Errorf("an alias without weights picked %s", got)
	}
}
