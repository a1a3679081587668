package metering

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestObserveAndForget(t *testing.T) {
	m := NewMetrics()
	m.Observe("fn", Outcome{Status: http.StatusOK, Cold: true, DurationMs: 20, BilledMs: 1000, MemoryMB: 512})
	m.Observe("fn", Outcome{Status: http.StatusTooManyRequests, ErrorType: "TooManyRequestsException"})
	m.Observe("other", Outcome{Status: http.StatusOK, Cold: true, ColdPath: ColdPathPool})
	text := scrape(t, m)
	for _, want := range []string{
		`nimbus_invocations_total{function="fn",status="200"} 1`,
		`nimbus_throttles_total{function="fn"} 1`,
		`nimbus_cold_starts_total{function="fn",path="nomad"} 1`,
		`nimbus_cold_starts_total{function="other",path="pool"} 1`,
		`nimbus_billed_gb_seconds_total{function="fn"} 0.5`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	m.Forget("fn")
	if text := scrape(t, m); strings.Contains(text, `function="fn"`) || !strings.Contains(text, `function="other"`) {
		t.Errorf("after Forget(fn) the metrics still name fn, or lost other:\n%s", text)
	}
}

func TestUsageTotals(t *testing.T) {
	u := NewUsage()
	u.Add("b", Outcome{Status: http.StatusOK, BilledMs: 2000, MemoryMB: 1024})
	u.Add("a", Outcome{Status: http.StatusTooManyRequests, ErrorType: "TooManyRequestsException"})
	u.Add("a", Outcome{Status: http.StatusOK, Cold: true})
	u.Forget("gone")
	rec := httptest.NewRecorder()
	u.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/usage", nil))
	var body struct {
		Functions []struct {
			Function                                   string
			Invocations, Errors, Throttles, ColdStarts int64
			GBSeconds                                  float64 `json:"gb_seconds"`
		}
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if len(body.Functions) != 2 || body.Functions[0].Function != "a" || body.Functions[0].Invocations != 2 ||
		body.Functions[0].Errors != 1 || body.Functions[1].GBSeconds != 2 {
		t.Errorf("usage: %s", rec.Body)
	}
}

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
