package model

import (
	"strings"
	"testing"
)

func TestRateToCron(t *testing.T) {
	for rate, want := range map[string]string{"1m": "* * * * *", "5m": "*/5 * * * *", "30m": "*/30 * * * *", "1h": "0 * * * *", "6h": "0 */6 * * *", "1d": "0 0 * * *"} {
		if got, err := RateToCron(rate); err != nil || got != want {
			t.Errorf("%s → %q %v, want %q", rate, got, err, want)
		}
	}
	for _, rate := range []string{"7m", "90m", "5h", "10s", "soon", "-1m"} {
		if _, err := RateToCron(rate); err == nil || !strings.Contains(err.Error(), "cron expression for anything else") {
			t.Errorf("%s: want an error listing the supported rates, got %v", rate, err)
		}
	}
}

func TestScheduleRules(t *testing.T) {
	ok := Schedule{Name: "nightly", Function: "report", Cron: "0 3 * * *", TimeZone: "Europe/Berlin", Payload: `{"a":1}`}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		mutate func(*Schedule)
		field  string
		says   string
	}{
		{func(s *Schedule) { s.Cron = "61 * * * *" }, "cron", "not a valid cron"},
		{func(s *Schedule) { s.Cron = "* *" }, "cron", "has 2 fields"},
		{func(s *Schedule) { s.Rate = "5m" }, "rate", "not both"},
		{func(s *Schedule) { s.Cron = "" }, "cron", "set cron"},
		{func(s *Schedule) { s.TimeZone = "Mars/Olympus" }, "time_zone", "IANA"},
		{func(s *Schedule) { s.Payload = "{oops" }, "payload", "jsonencode"},
		{func(s *Schedule) { s.Function = "Bad_Fn" }, "function", "DNS label"},
	}
	for _, tc := range tests {
		s := ok
		tc.mutate(&s)
		errs := AsFieldErrors(s.Validate())
		if len(errs) != 1 || errs[0].Field != tc.field || !strings.Contains(errs[0].Message, tc.says) {
			t.Errorf("want one %s error saying %q, got %v", tc.field, tc.says, errs)
		}
	}
}
