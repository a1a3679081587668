package kvstore

import (
	"strings"
	"testing"
)

func TestRouteOverlaps(t *testing.T) {
	base := Route{Path: "/orders", Match: "prefix"}
	tests := []struct {
		other Route
		want  bool
	}{
		{Route{Path: "/orders", Match: "prefix"}, true},
		{Route{Path: "/orders", Match: "exact"}, false},
		{Route{Path: "/orders", Match: "prefix", Host: "api.example.com"}, false},
		{Route{Path: "/orders", Match: "prefix", Methods: []string{"GET"}}, true},
	}
	for _, tc := range tests {
		if got := base.Overlaps(tc.other); got != tc.want {
			t.Errorf("%+v overlaps %+v = %v", base, tc.other, got)
		}
	}
	get := Route{Path: "/x", Match: "exact", Methods: []string{"GET"}}
	post := Route{Path: "/x", Match: "exact", Methods: []string{"post"}}
	if get.Overlaps(post) {
		t.Error("GET and POST on one path do not overlap")
	}
	if !post.Overlaps(Route{Path: "/x", Match: "exact", Methods: []string{"POST", "PUT"}}) {
		t.Error("methods compare case-insensitively")
	}
}

func TestRouteIDAndKey(t *testing.T) {
	id := RouteID("api.example.com", "/orders", "prefix", []string{"POST", "GET"})
	if id != "api.example.com/orders* GET,POST" {
		t.Errorf("id %q", id)
	}
	if RouteKey(id) == RouteKey(RouteID("", "/orders", "prefix", nil)) || len(RouteKey(id)) != len(RoutesPrefix)+24 {
		t.Errorf("keys must differ per route and have a fixed size: %s", RouteKey(id))
	}
}

func TestCheckReservations(t *testing.T) {
	if msg := CheckReservations(1000, map[string]int{"a": 100, "b": 800}); msg != "" {
		t.Errorf("900 of 1000 leaves 100: %s", msg)
	}
	msg := CheckReservations(1000, map[string]int{"a": 500, "b": 450, "c": 0})
	for _, want := range []string{"total 950", "a: 500", "b: 450", "leaving 50", "at least 100", "1050 or more"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q should mention %q", msg, want)
		}
	}
	if CheckReservations(5, nil) != "" {
		t.Error("without reservations a small max_concurrency is fine")
	}
}
