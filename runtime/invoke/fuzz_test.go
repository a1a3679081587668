package invoke

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
)

// The gateway's parsers of untrusted input, fuzzed. `make test` runs each
// briefly (scripts/fuzz.sh), `make fuzz` longer; a crasher found becomes a
// file under testdata/fuzz and so a regression test.

// An invoke body is accepted only as JSON within the limit, and never
// panics the gateway.
func FuzzReadEvent(f *testing.F) {
	for _, s := range []string{"", "{}", `{"a":1}`, "[1,2", "\xff", strings.Repeat("[", 1000), `"x"`} {
		f.Add([]byte(s))
	}
	g := New(Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest(http.MethodPost, "/v1/functions/f/invoke", strings.NewReader(string(body)))
		payload, release, bad := g.readEvent(httptest.NewRecorder(), r, nil)
		if bad != nil {
			if bad.Status < 400 || bad.Status > 499 {
				t.Fatalf("a bad body got %d", bad.Status)
			}
			return
		}
		release()
		if !json.Valid(payload) || len(payload) > protocol.MaxPayloadBytes {
			t.Fatalf("accepted %q", payload)
		}
		if g.bodies.held != 0 {
			t.Fatalf("%d bytes of budget still held", g.bodies.held)
		}
	})
}

// A request on a route becomes an API Gateway event that is valid JSON and
// carries the body exactly, as text or as base64.
func FuzzAPIGatewayEvent(f *testing.F) {
	f.Add("GET", "/api/items", "q=a&q=b", "a=1; b=2", []byte("hello"))
	f.Add("POST", "/", "", "", []byte("\xff\xfe binary"))
	f.Fuzz(func(t *testing.T, method, path, query, cookie string, body []byte) {
		r, err := http.NewRequest(http.MethodGet, "http://gw/", nil)
		if err != nil {
			t.Skip()
		}
		r.Method, r.URL.Path, r.URL.RawQuery = method, path, query
		r.Header.Set("Cookie", cookie)
		ev := apiGatewayEvent(r, &kvstore.Route{ID: "/"}, body)
		out, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("the event does not marshal: %v", err)
		}
		var back map[string]any
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatal(err)
		}
		if len(body) == 0 {
			return
		}
		got, _ := back["body"].(string)
		if back["isBase64Encoded"] == true {
			dec, err := base64.StdEncoding.DecodeString(got)
			if err != nil || string(dec) != string(body) {
				t.Fatalf("base64 body does not round-trip: %q", body)
			}
		} else if !utf8.Valid(body) || got != string(body) {
			t.Fatalf("text body does not round-trip: %q → %q", body, got)
		}
	})
}

// Whatever a route's function answers, the gateway writes a valid HTTP
// response or refuses it with 502; it never panics.
func FuzzWriteFunctionResponse(f *testing.F) {
	for _, s := range []string{`{"statusCode":201,"body":"aGk=","isBase64Encoded":true}`, `{"statusCode":42}`, `{"hello":1}`, `null`, `{"statusCode":200,"headers":{"":"x"}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		w := httptest.NewRecorder()
		if bad := writeFunctionResponse(w, body, "shop.example.com"); bad != nil {
			if bad.Status != http.StatusBadGateway {
				t.Fatalf("refused with %d", bad.Status)
			}
			return
		}
		if w.Code < 200 || w.Code > 599 {
			t.Fatalf("wrote status %d", w.Code)
		}
	})
}

// Route matching never panics and only returns a route that matches.
func FuzzMatchRoute(f *testing.F) {
	routes := sortedRoutes(
		kvstore.Route{Function: "root", Path: "/", Match: "prefix"},
		kvstore.Route{Function: "api", Path: "/api", Match: "prefix"},
		kvstore.Route{Function: "orders", Path: "/api/orders", Match: "prefix", Methods: []string{"GET"}},
		kvstore.Route{Function: "health", Path: "/api/health", Match: "exact"},
		kvstore.Route{Function: "hosted", Host: "shop.example.com", Path: "/api", Match: "prefix"},
	)
	f.Add("GET", "gw", "/api/orders/7")
	f.Add("DELETE", "shop.example.com:80", "/api")
	f.Fuzz(func(t *testing.T, method, host, path string) {
		r, err := http.NewRequest(http.MethodGet, "http://gw/", nil)
		if err != nil {
			t.Skip()
		}
		r.Method, r.Host, r.URL.Path = method, host, path
		rt, _ := matchRoute(routes, r)
		if rt == nil {
			return
		}
		if rt.Match == "exact" && path != rt.Path || rt.Match != "exact" && !pathHasPrefix(path, rt.Path) {
			t.Fatalf("%s %s matched %+v", method, path, rt)
		}
	})
}
