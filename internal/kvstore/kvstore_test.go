package kvstore

import "testing"

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
