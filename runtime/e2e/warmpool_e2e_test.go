package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
)

// TestWarmPoolServesColdStarts runs a warm pool on real Nomad, as the
// provider declares it (its job and its record), and checks what a user
// of it would: a cold start is served by a pool instance while the
// function's own instance starts; the instance is then released and its
// allocation stopped, never to serve another function; the pool refills
// with a fresh allocation; and a function is held to its own memory size
// on a pool of a larger class.
func TestWarmPoolServesColdStarts(t *testing.T) {
	env, gw := gateway(t)
	pool := model.Pool{Runtime: model.RuntimeProvided, MemoryMB: 256, Size: 1}
	opts := nomadjob.Options{HostNetwork: env.Network == nil}
	rec := nomadjob.PoolRecord(pool, opts)
	if _, _, err := env.Nomad.Jobs().Register(nomadjob.RenderPool(pool, opts), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Consul.KV().Put(&consulapi.KVPair{Key: kvstore.PoolKey(rec.JobID), Value: rec.Encode()}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = env.Consul.KV().Delete(kvstore.PoolKey(rec.JobID), nil)
		_, _, _ = env.Nomad.Jobs().Deregister(rec.JobID, true, nil)
	})
	waitIdle(t, gw, rec.JobID, 1)

	deploy(t, model.Function{Name: "pooled", Runtime: model.RuntimeProvided, MemoryMB: 128, MaxInstances: 1, Timeout: 10 * time.Second})
	a := invoke(t, gw, "pooled", `{"action":"echo","value":"from the pool"}`)
	if a.status != http.StatusOK || a.body["echo"] != "from the pool" {
		t.Fatalf("cold start through the pool: %d %s", a.status, a.raw)
	}
	if a.header.Get("X-Nimbus-Cold") != "true" || a.header.Get("X-Nimbus-Cold-Path") != "pool" {
		t.Fatalf("the cold start was not served by the pool: X-Nimbus-Cold %q, X-Nimbus-Cold-Path %q",
			a.header.Get("X-Nimbus-Cold"), a.header.Get("X-Nimbus-Cold-Path"))
	}
	first := servedBy(t, gw, "pooled")
	if v := metric(t, gw, `nimbus_cold_starts_total{function="pooled",path="pool"}`); v != 1 {
		t.Errorf("nimbus_cold_starts_total{path=\"pool\"} = %v, want 1", v)
	}

	// The function's own instance takes over; the pool instance is
	// released: its allocation stops and a fresh one takes its place.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	waitAlloc(ctx, t, env, first, func(a *nomadapi.Allocation) bool { return a.ClientStatus == nomadapi.AllocClientStatusComplete })
	waitIdle(t, gw, rec.JobID, 1)
	refilled := false
	for !refilled && ctx.Err() == nil {
		allocs, _, err := env.Nomad.Jobs().Allocations(rec.JobID, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, al := range allocs {
			refilled = refilled || al.ID != first && al.ClientStatus == nomadapi.AllocClientStatusRunning
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !refilled {
		t.Fatalf("the pool did not refill with a fresh allocation after %s was released", first)
	}
	if a := invoke(t, gw, "pooled", `{"action":"echo","value":"own"}`); a.status != http.StatusOK || a.header.Get("X-Nimbus-Cold") != "false" {
		t.Errorf("a warm invocation on the function's own instance: %d cold=%s %s", a.status, a.header.Get("X-Nimbus-Cold"), a.raw)
	}

	// A changed environment reaches the next pooled cold start: the gateway
	// reuses a job's environment only while the function's record names
	// its digest. The new job starts at 0 instances.
	deploy(t, model.Function{Name: "pooled", Runtime: model.RuntimeProvided, MemoryMB: 128, MaxInstances: 1, Timeout: 10 * time.Second,
		Environment: map[string]string{"USER_SETTING": "changed"}})
	redeployed, cancelRedeploy := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancelRedeploy()
	waitInstances(redeployed, t, gw, "pooled", 0)
	waitIdle(t, gw, rec.JobID, 1)
	a = invoke(t, gw, "pooled", `{"action":"env"}`)
	if a.header.Get("X-Nimbus-Cold-Path") != "pool" || a.body["USER_SETTING"] != "changed" {
		t.Fatalf("a pooled cold start after the environment changed: path %q, USER_SETTING %v (%d %s), want the pool and \"changed\"",
			a.header.Get("X-Nimbus-Cold-Path"), a.body["USER_SETTING"], a.status, a.raw)
	}

	// Another function's cold start gets a fresh instance, never the one
	// that served "pooled"; a function of 128 MB on the 256 MB pool is held
	// to its 128 MB.
	waitIdle(t, gw, rec.JobID, 1)
	deploy(t, model.Function{Name: "hungry", Runtime: model.RuntimeProvided, MemoryMB: 128, MaxInstances: 1, Timeout: 10 * time.Second})
	a = invoke(t, gw, "hungry", `{"action":"alloc","n":200}`)
	if a.header.Get("X-Nimbus-Cold-Path") != "pool" {
		t.Fatalf("the second cold start was not served by the pool: %q %d %s", a.header.Get("X-Nimbus-Cold-Path"), a.status, a.raw)
	}
	if second := servedBy(t, gw, "hungry"); second == first {
		t.Fatalf("allocation %s served a second function", first)
	}
	if et := a.header.Get("X-Nimbus-Error-Type"); et != protocol.ErrOutOfMemory {
		t.Errorf("200 MB in a 128 MB function on a 256 MB pool: error type %q (%s), want %s", et, a.raw, protocol.ErrOutOfMemory)
	}
}

// waitIdle waits until the gateway counts n idle instances of the pool.
func waitIdle(t *testing.T, gw *testenv.Gateway, pool string, n float64) {
	t.Helper()
	series := `nimbus_warm_pool_idle{pool="` + pool + `"}`
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if metric(t, gw, series) == n {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s never reached %v", series, n)
}

// metric reads one series from the gateway's /metrics (-1 when absent).
func metric(t *testing.T, gw *testenv.Gateway, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(metricsText(t, gw), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, _ := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v
		}
	}
	return -1
}

// servedBy is the pool allocation the gateway's log names for the
// function's cold start.
func servedBy(t *testing.T, gw *testenv.Gateway, function string) string {
	t.Helper()
	f, err := os.Open(gw.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	alloc := ""
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l struct{ Msg, Function, AllocID string }
		var raw map[string]any
		if json.Unmarshal(sc.Bytes(), &raw) != nil {
			continue
		}
		l.Msg, _ = raw["msg"].(string)
		l.Function, _ = raw["function"].(string)
		l.AllocID, _ = raw["alloc_id"].(string)
		if l.Msg == "cold start served from a warm pool" && l.Function == function {
			alloc = l.AllocID
		}
	}
	if !regexp.MustCompile(`^[0-9a-f-]{36}$`).MatchString(alloc) {
		t.Fatalf("the gateway's log names no pool allocation for %s", function)
	}
	return alloc
}

// waitInstances waits until the gateway knows n instances of the function.
func waitInstances(ctx context.Context, t *testing.T, gw *testenv.Gateway, function string, n int) {
	t.Helper()
	var state struct {
		Instances int `json:"instances"`
	}
	for ctx.Err() == nil {
		resp, err := gw.Do(http.MethodGet, "/v1/functions/"+function, nil)
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&state)
			_ = resp.Body.Close()
			if err == nil && state.Instances == n {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the gateway never counted %d instances of %s (last %d)", n, function, state.Instances)
}

func waitAlloc(ctx context.Context, t *testing.T, env *testenv.Env, id string, done func(*nomadapi.Allocation) bool) {
	t.Helper()
	for ctx.Err() == nil {
		a, _, err := env.Nomad.Allocations().Info(id, nil)
		if err == nil && done(a) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("allocation %s did not reach the expected state", id)
}
