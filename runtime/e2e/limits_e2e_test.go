package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
)

func setLimits(t *testing.T, env *testenv.Env, l kvstore.Limits) {
	t.Helper()
	if _, err := env.Consul.KV().Put(&consulapi.KVPair{Key: kvstore.LimitsKey(l.Namespace), Value: l.Encode()}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = env.Consul.KV().Delete(kvstore.LimitsKey(l.Namespace), nil) })
	time.Sleep(300 * time.Millisecond) // the gateway follows KV within moments
}

// waitReady invokes until a warm instance answers.
func waitWarm(t *testing.T, gw *testenv.Gateway, fn, event string) {
	t.Helper()
	for i := 0; i < 100; i++ {
		if a := invoke(t, gw, fn, event); a.status == http.StatusOK {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s never answered", fn)
}

func TestMaxConcurrencyHolds(t *testing.T) {
	env, gw := gateway(t)
	deploy(t, model.Function{Name: "capped", Runtime: model.RuntimeProvided, MinInstances: 5, MaxInstances: 10, Timeout: 10 * time.Second})
	waitWarm(t, gw, "capped", `{"action":"echo","value":"x"}`)
	setLimits(t, env, kvstore.Limits{Namespace: "default", MaxConcurrency: 5})

	results := invokeAll(t, gw, "capped", `{"action":"sleep","n":1500}`, 20)
	ok, throttled := 0, 0
	for _, a := range results {
		switch {
		case a.status == http.StatusOK:
			ok++
		case a.status == http.StatusTooManyRequests && a.header.Get("Retry-After") != "" && strings.Contains(a.raw, "max_concurrency of 5"):
			throttled++
		default:
			t.Errorf("unexpected answer %d %s", a.status, a.raw)
		}
	}
	if ok != 5 || throttled != 15 {
		t.Errorf("with max_concurrency 5, 20 concurrent slow requests: %d ran and %d got 429; want 5 and 15", ok, throttled)
	}
}

func TestReservedConcurrencyIsGuaranteed(t *testing.T) {
	env, gw := gateway(t)
	deployFrom(t, model.Function{Name: "reserved", Runtime: model.RuntimeProvided, MinInstances: 1, MaxInstances: 2}, fx.goSource, 10)
	deployFrom(t, model.Function{Name: "greedy", Runtime: model.RuntimeHTTP, Concurrency: 100, MinInstances: 1, MaxInstances: 1, Timeout: 20 * time.Second}, fx.httpSource, 0)
	slow := `{"rawPath":"/sleep","rawQueryString":"ms=3000","requestContext":{"http":{"method":"GET"}}}`
	waitWarm(t, gw, "greedy", `{"rawPath":"/sleep","rawQueryString":"ms=1","requestContext":{"http":{"method":"GET"}}}`)
	waitWarm(t, gw, "reserved", `{"action":"echo","value":"x"}`)
	// 110 in all, 10 reserved: the other functions share 100.
	setLimits(t, env, kvstore.Limits{Namespace: "default", MaxConcurrency: 110})

	var wg sync.WaitGroup
	greedy := make([]answer, 100)
	for i := range greedy {
		wg.Add(1)
		go func() { defer wg.Done(); greedy[i] = invoke(t, gw, "greedy", slow) }()
	}
	time.Sleep(800 * time.Millisecond) // let them all be admitted
	extra := invoke(t, gw, "greedy", slow)
	mine := invoke(t, gw, "reserved", `{"action":"echo","value":"still served"}`)
	wg.Wait()

	if extra.status != http.StatusTooManyRequests || !strings.Contains(extra.raw, "max_concurrency of 110") {
		t.Errorf("the 101st request of the saturating function: %d %s; want a 429 naming max_concurrency", extra.status, extra.raw)
	}
	if mine.status != http.StatusOK || mine.body["echo"] != "still served" {
		t.Errorf("the reserved function must keep its capacity while the rest is saturated: %d %s", mine.status, mine.raw)
	}
	served := 0
	for _, a := range greedy {
		if a.status == http.StatusOK {
			served++
		}
	}
	if served != 100 {
		t.Errorf("%d of the 100 saturating requests were served; want all 100 (they fit the unreserved share)", served)
	}
}

func TestMaxInstancesStopsScaleUps(t *testing.T) {
	env, gw := gateway(t)
	deploy(t, model.Function{Name: "wide", Runtime: model.RuntimeProvided, MaxInstances: 4, Timeout: 10 * time.Second})
	setLimits(t, env, kvstore.Limits{Namespace: "default", MaxConcurrency: 1000, MaxInstances: 1})

	results := invokeAll(t, gw, "wide", `{"action":"sleep","n":300}`, 4)
	for _, a := range results {
		if a.status != http.StatusOK {
			t.Errorf("queued behind the one allowed instance, every request should still be served: %d %s", a.status, a.raw)
		}
	}
	if n := groupCount(t, env, "wide"); n != 1 {
		t.Errorf("max_instances 1 but the function has %d instances", n)
	}
	resp, err := gw.Do(http.MethodGet, "/v1/functions/wide", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var state map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&state)
	if !strings.Contains(fmt.Sprint(state["scale_error"]), "max_instances 1") {
		t.Errorf("the gateway should say why it did not scale: %v", state["scale_error"])
	}
}
