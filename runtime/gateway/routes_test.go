package gateway

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/auth"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/metering"
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
	writeFunctionResponse(w, []byte(`{"statusCode":201,"headers":{"X-Made":"1"},"cookies":["s=1"],"body":"aGk=","isBase64Encoded":true}`))
	if w.Code != 201 || w.Body.String() != "hi" || w.Header().Get("X-Made") != "1" || w.Header().Get("Set-Cookie") != "s=1" {
		t.Errorf("full response: %d %q %v", w.Code, w.Body.String(), w.Header())
	}
	w = httptest.NewRecorder()
	writeFunctionResponse(w, []byte(`{"hello":"world"}`))
	if w.Code != 200 || w.Body.String() != `{"hello":"world"}` || w.Header().Get("Content-Type") != "application/json" {
		t.Errorf("a plain object is a 200 JSON body: %d %q", w.Code, w.Body.String())
	}
}

// flakyKV answers once per prefix, then fails, as Consul going away would.
type flakyKV struct {
	mu       sync.Mutex
	answered map[string]bool
}

func (f *flakyKV) List(prefix string, q *consulapi.QueryOptions) (consulapi.KVPairs, *consulapi.QueryMeta, error) {
	f.mu.Lock()
	first := !f.answered[prefix]
	if f.answered == nil {
		f.answered = map[string]bool{}
	}
	f.answered[prefix] = true
	f.mu.Unlock()
	if first {
		rec := kvstore.FunctionRecord{Name: "keep", Timeout: "3s", IdleTimeout: "5m"}
		if strings.HasSuffix(prefix, "functions/") {
			return consulapi.KVPairs{{Key: prefix + "keep", Value: rec.Encode()}}, &consulapi.QueryMeta{LastIndex: 5}, nil
		}
		return nil, &consulapi.QueryMeta{LastIndex: 5}, nil
	}
	select {
	case <-q.Context().Done():
	case <-time.After(10 * time.Millisecond):
	}
	return nil, nil, errors.New("connection refused")
}

func TestRegistryKeepsLastKnownStateWhenConsulIsUnreachable(t *testing.T) {
	reg := registry.New(&flakyKV{}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go reg.Run(ctx)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := reg.Status(); err != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	synced, err := reg.Status()
	if !synced || err == nil {
		t.Fatalf("want synced with an error once Consul fails: synced=%v err=%v", synced, err)
	}
	if _, ok := reg.Get("keep"); !ok {
		t.Error("the last known function must still be served")
	}
	g := &Gateway{registry: reg, auth: &auth.Authenticator{}}
	w := httptest.NewRecorder()
	g.serveHealth(w, httptest.NewRequest("GET", "/healthz", nil))
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "unreachable, serving the last known") {
		t.Errorf("/healthz should say it serves stale state: %d %s", w.Code, w.Body.String())
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
			if bad := writeFunctionResponse(w, []byte(body)); bad != nil {
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
	g := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _, bad := g.readPayload(w, r)
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

// downKV is Consul unreachable from the start.
type downKV struct{}

func (downKV) List(_ string, q *consulapi.QueryOptions) (consulapi.KVPairs, *consulapi.QueryMeta, error) {
	select {
	case <-q.Context().Done():
	case <-time.After(10 * time.Millisecond):
	}
	return nil, nil, errors.New("dial tcp 127.0.0.1:8500: connect: connection refused")
}

// Before its first listing of functions and routes, the gateway cannot know
// that a name is unknown: it answers 503 with Retry-After, which callers
// and deliveries retry, rather than a 404 that loses their work.
func TestUnsyncedGatewayAnswers503(t *testing.T) {
	g := New(Options{KV: downKV{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Auth: auth.Options{Open: true}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go g.registry.Run(ctx)
	time.Sleep(50 * time.Millisecond) // a few failed listings
	h := g.Handler()
	for _, req := range []*http.Request{
		httptest.NewRequest("POST", "/v1/functions/orders/invoke", strings.NewReader(`{}`)),
		httptest.NewRequest("POST", "/2015-03-31/functions/orders/invocations", strings.NewReader(`{}`)),
		httptest.NewRequest("GET", "/orders/7", nil),
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" ||
			!strings.Contains(w.Body.String(), "not read the functions, routes and access keys from Consul yet") ||
			!strings.Contains(w.Body.String(), "connection refused") {
			t.Errorf("%s %s before sync: %d (Retry-After %q) %s; want 503 with Retry-After naming Consul's error",
				req.Method, req.URL.Path, w.Code, w.Header().Get("Retry-After"), w.Body.String())
		}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/healthz", nil))
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), `"status":"syncing"`) {
		t.Errorf("/healthz before sync: %d %s; want 503 saying syncing", w.Code, w.Body.String())
	}
}

// Only functions that exist are metered, and a deleted function's series
// and usage go with it: names that come and go cannot grow the gateway's
// memory.
func TestUnknownAndDeletedFunctionsLeaveNoTrace(t *testing.T) {
	g := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Health: quietHealth{}, Jobs: quietJobs{}, Auth: auth.Options{Open: true}})
	rec := kvstore.FunctionRecord{Name: "kept", Timeout: "3s", IdleTimeout: "5m"}
	g.registry.Apply(kvstore.RoutesPrefix, nil)
	g.registry.Apply(kvstore.AccessKeysPrefix, nil)
	g.registry.Apply(kvstore.FunctionsPrefix, consulapi.KVPairs{{Key: kvstore.FunctionKey("kept"), Value: rec.Encode()}})
	h := g.Handler()
	long := strings.Repeat("x", 1024)
	for i := 0; i < 2000; i++ {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("POST", fmt.Sprintf("/v1/functions/nope-%d-%s/invoke", i, long), strings.NewReader(`{}`)))
		if w.Code != http.StatusNotFound {
			t.Fatalf("an unknown name answered %d, want 404", w.Code)
		}
	}
	// The kept function has been invoked once, as the meter records it.
	g.metrics.Observe("kept", metering.Outcome{Status: http.StatusOK, BilledMs: 10, MemoryMB: 128})
	g.usage.Add("kept", metering.Outcome{Status: http.StatusOK, BilledMs: 10, MemoryMB: 128})
	series := func() (unknown, kept bool) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
		u := httptest.NewRecorder()
		h.ServeHTTP(u, httptest.NewRequest("GET", "/v1/usage", nil))
		all := w.Body.String() + u.Body.String()
		return strings.Contains(all, "nope-"), strings.Contains(all, `function="kept"`) || strings.Contains(u.Body.String(), `"kept"`)
	}
	if unknown, kept := series(); unknown || !kept {
		t.Fatalf("after 2000 unknown names: series of unknown names %v (want none), of the kept function %v (want some)", unknown, kept)
	}
	g.registry.Apply(kvstore.FunctionsPrefix, nil) // the function is deleted
	if _, kept := series(); kept {
		t.Error("the deleted function's metrics or usage remain")
	}
}

// quietHealth and quietJobs stand for agents that have nothing to say: the
// pools of TestUnknownAndDeletedFunctionsLeaveNoTrace are never invoked.
type quietHealth struct{}

func (quietHealth) Service(_, _ string, _ bool, q *consulapi.QueryOptions) ([]*consulapi.ServiceEntry, *consulapi.QueryMeta, error) {
	<-q.Context().Done()
	return nil, nil, q.Context().Err()
}

type quietJobs struct{}

func (quietJobs) Scale(string, string, *int, string, bool, map[string]interface{}, *nomadapi.WriteOptions) (*nomadapi.JobRegisterResponse, *nomadapi.WriteMeta, error) {
	return nil, nil, errors.New("no Nomad here")
}

func (quietJobs) ScaleStatus(string, *nomadapi.QueryOptions) (*nomadapi.JobScaleStatusResponse, *nomadapi.QueryMeta, error) {
	return &nomadapi.JobScaleStatusResponse{TaskGroups: map[string]nomadapi.TaskGroupScaleStatus{}}, &nomadapi.QueryMeta{}, nil
}

func (quietJobs) Info(string, *nomadapi.QueryOptions) (*nomadapi.Job, *nomadapi.QueryMeta, error) {
	return nil, nil, errors.New("no Nomad here")
}
