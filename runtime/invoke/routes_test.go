package invoke

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/refusal"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/registry"
)

func sortedRoutes(rs ...kvstore.Route) []kvstore.Route {
	var pairs consulapi.KVPairs
	for _, r := range rs {
		r.ID = kvstore.RouteID(r.Host, r.Path, r.Match, r.Methods)
		pairs = append(pairs, &consulapi.KVPair{Key: kvstore.RouteKey(r.ID), Value: r.Encode()})
	}
	reg := registry.New(nil, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	reg.Apply(kvstore.RoutesPrefix, pairs)
	return reg.Routes()
}

func TestMatchRoute(t *testing.T) {
	routes := sortedRoutes(
		kvstore.Route{Function: "root", Path: "/", Match: "prefix"},
		kvstore.Route{Function: "api", Path: "/api", Match: "prefix"},
		kvstore.Route{Function: "orders", Path: "/api/orders", Match: "prefix", Methods: []string{"GET", "POST"}},
		kvstore.Route{Function: "health", Path: "/api/orders/health", Match: "exact"},
		kvstore.Route{Function: "hosted", Host: "shop.example.com", Path: "/api", Match: "prefix"},
	)
	tests := []struct {
		method, host, path string
		want               string // function, or "405:<allowed>" or "404"
	}{
		{"GET", "gw", "/api/orders/7", "orders"},
		{"GET", "gw", "/api/orders/health", "health"},
		{"DELETE", "gw", "/api/orders/7", "api"}, // falls back to the shorter prefix
		{"GET", "gw", "/apix", "root"},           // whole segments only
		{"GET", "gw", "/api", "api"},
		{"GET", "shop.example.com:8080", "/api/x", "hosted"},
		{"GET", "gw", "/", "root"},
	}
	for _, tc := range tests {
		r := httptest.NewRequest(tc.method, "http://"+tc.host+tc.path, nil)
		got, allowed := matchRoute(routes, r)
		name := "404"
		if got != nil {
			name = got.Function
		} else if allowed != nil {
			name = "405:" + strings.Join(allowed, ",")
		}
		if name != tc.want {
			t.Errorf("%s %s%s → %s, want %s", tc.method, tc.host, tc.path, name, tc.want)
		}
	}
	only := sortedRoutes(kvstore.Route{Function: "orders", Path: "/orders", Match: "exact", Methods: []string{"POST"}})
	if got, allowed := matchRoute(only, httptest.NewRequest("GET", "/orders", nil)); got != nil || strings.Join(allowed, ",") != "POST" {
		t.Errorf("a path routed for other methods is a 405 naming them: %v %v", got, allowed)
	}
}

func TestAPIGatewayEventAndResponse(t *testing.T) {
	r := httptest.NewRequest("POST", "http://gw/api/items?q=a&q=b", strings.NewReader("\xff\xfe binary"))
	r.Header.Set("Cookie", "a=1; b=2")
	r.Header.Set("X-Custom", "yes")
	ev := apiGatewayEvent(r, &kvstore.Route{ID: "/api*"}, []byte("\xff\xfe binary"))
	if ev["rawPath"] != "/api/items" || ev["rawQueryString"] != "q=a&q=b" || ev["isBase64Encoded"] != true {
		t.Errorf("event %v", ev)
	}
	if b, _ := base64.StdEncoding.DecodeString(ev["body"].(string)); string(b) != "\xff\xfe binary" {
		t.Errorf("binary body must round-trip through base64: %q", ev["body"])
	}
	if ev["headers"].(map[string]string)["x-custom"] != "yes" || len(ev["cookies"].([]string)) != 2 ||
		ev["queryStringParameters"].(map[string]string)["q"] != "a,b" {
		t.Errorf("headers/cookies/query: %v", ev)
	}

	w := httptest.NewRecorder()
	writeFunctionResponse(w, []byte(`{"statusCode":201,"headers":{"X-Made":"1"},"cookies":["s=1"],"body":"aGk=","isBase64Encoded":true}`), "shop.example.com")
	if w.Code != 201 || w.Body.String() != "hi" || w.Header().Get("X-Made") != "1" || w.Header().Get("Set-Cookie") != "s=1" {
		t.Errorf("full response: %d %q %v", w.Code, w.Body.String(), w.Header())
	}
	w = httptest.NewRecorder()
	writeFunctionResponse(w, []byte(`{"hello":"world"}`), "shop.example.com")
	if w.Code != 200 || w.Body.String() != `{"hello":"world"}` || w.Header().Get("Content-Type") != "application/json" {
		t.Errorf("a plain object is a 200 JSON body: %d %q", w.Code, w.Body.String())
	}
}

// A route's function may answer with any JSON; what the gateway cannot
// send as HTTP is a 502 with a JSON error, never a panic or an empty reply.
func TestMalformedFunctionResponsesAre502(t *testing.T) {
	for name, body := range map[string]string{
		"status below 200":   `{"statusCode":42,"body":"x"}`,
		"status above 999":   `{"statusCode":1000,"body":"x"}`,
		"status above 599":   `{"statusCode":600,"body":"x"}`,
		"informational":      `{"statusCode":100,"body":"x"}`,
		"body is not base64": `{"statusCode":200,"body":"not base64!","isBase64Encoded":true}`,
	} {
		t.Run(name, func(t *testing.T) {
			w := httptest.NewRecorder()
			if bad := writeFunctionResponse(w, []byte(body), "shop.example.com"); bad != nil {
				refusal.Write(w, refusal.Native, bad)
			}
			var got map[string]string
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || w.Code != http.StatusBadGateway ||
				!strings.Contains(got["errorMessage"], "malformed") {
				t.Errorf("%s: answered %d %q; want 502 with a JSON error saying the response is malformed", body, w.Code, w.Body.String())
			}
		})
	}
}

// A body that ends before its Content-Length (the client went away) is
// refused, never passed on as if it were complete.
func TestTruncatedBodyIsRefused(t *testing.T) {
	type outcome struct {
		body []byte
		bad  *refusal.Error
	}
	got := make(chan outcome, 1)
	g := New(Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _, bad := g.readPayload(w, r, nil)
		got <- outcome{b, bad}
	}))
	defer srv.Close()
	conn := rawRequest(t, srv, "/hook", 100, 10)
	_ = conn.(*net.TCPConn).CloseWrite() // the client goes away
	select {
	case o := <-got:
		if o.bad == nil || o.bad.Status != http.StatusBadRequest {
			t.Fatalf("a body cut at 10 of 100 bytes was read as %q (refusal %v); want a 400", o.body, o.bad)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler never finished reading")
	}
}

// A route's function may set cookies for its own host only: a cookie for
// a wider domain would reach every other tenant's routes under it.
func TestRouteCookiesStayOnTheirHost(t *testing.T) {
	w := httptest.NewRecorder()
	writeFunctionResponse(w, []byte(`{"statusCode":200,"headers":{"set-cookie":"h=1; Domain=example.com"},"cookies":[
		"own=1; Path=/", "same=1; Domain=shop.example.com", "dot=1; Domain=.shop.example.com",
		"parent=1; Domain=example.com", "other=1; Domain=evil.example.net", "broken"],"body":"ok"}`), "shop.example.com")
	var got []string
	for _, c := range w.Result().Cookies() {
		got = append(got, c.Name)
	}
	if want := []string{"own", "same", "dot"}; !slices.Equal(got, want) {
		t.Errorf("cookies set %v, want only the host's own %v", got, want)
	}
}
