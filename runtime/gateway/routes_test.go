package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/registry"
)

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
