package eventsource

import "testing"

func TestFilterCoveredByStreamSubjects(t *testing.T) {
	for _, c := range []struct {
		filter   string
		subjects []string
		want     bool
	}{
		{"orders.>", []string{"orders.>"}, true},
		{"orders.eu.*", []string{"orders.>"}, true},
		{"orders.eu.new", []string{"orders.*.new"}, true},
		{"orders.*.new", []string{"orders.eu.new"}, false},
		{"orders.>", []string{"orders.*"}, false},
		{"orders", []string{"orders.>"}, false},
		{"invoices.>", []string{"orders.>", "payments.*"}, false},
		{"payments.x", []string{"orders.>", "payments.*"}, true},
		{">", []string{">"}, true},
		{"a.b", []string{"a.b.c"}, false},
	} {
		if got := coveredByAny(c.filter, c.subjects); got != c.want {
			t.Errorf("filter %s on subjects %v: covered %t, want %t", c.filter, c.subjects, got, c.want)
		}
	}
}
