package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
)

// poolResult is the cold starts served by warm pools, with the floor's
// cold starts interleaved.
type poolResult struct {
	floor       []time.Duration
	functions   []coldSeries
	breakdown   []step
	breakdownOf string
}

// poolColdStarts declares a warm pool of one instance per runtime, as
// nimbus_warm_pool does, and times cold starts that the pools serve,
// round by round with the floor's; the pools are removed at the end.
func poolColdStarts(ctx context.Context, env *testenv.Env, gatewayURL string, functions []benchFunction, trials int) (poolResult, error) {
	r := poolResult{functions: make([]coldSeries, len(functions))}
	var pools []string
	for i, f := range functions {
		r.functions[i].label = f.label
		p := model.Pool{Runtime: f.fn.Runtime, MemoryMB: f.fn.WithDefaults().MemoryMB, Size: 1}
		rec := nomadjob.PoolRecord(p, nomadjob.Options{})
		if _, _, err := env.Nomad.Jobs().Register(nomadjob.RenderPool(p, nomadjob.Options{}), nil); err != nil {
			return r, err
		}
		if _, err := env.Consul.KV().Put(&consulapi.KVPair{Key: kvstore.PoolKey(rec.JobID), Value: rec.Encode()}, nil); err != nil {
			return r, err
		}
		pools = append(pools, rec.JobID)
	}
	defer func() {
		for _, id := range pools {
			_, _ = env.Consul.KV().Delete(kvstore.PoolKey(id), nil)
			_, _, _ = env.Nomad.Jobs().Deregister(id, true, nil)
		}
	}()
	for i := 0; i < trials; i++ {
		fmt.Printf("bench: cold starts from warm pools, round %d/%d\n", i+1, trials)
		d, err := coldRawTrial(ctx, env, floorBridge)
		if err != nil {
			return r, err
		}
		r.floor = append(r.floor, d)
		for j, f := range functions {
			if err := waitPoolIdle(gatewayURL, pools[j]); err != nil {
				return r, err
			}
			d, err := poolColdTrial(env, gatewayURL, f.fn.Name)
			if err != nil {
				return r, err
			}
			r.functions[j].trials = append(r.functions[j].trials, d)
		}
	}
	fmt.Println("bench: one cold start from a warm pool, step by step")
	steps, err := poolBreakdown(env, gatewayURL, functions[0].fn.Name, pools[0])
	if err != nil {
		return r, err
	}
	r.breakdown, r.breakdownOf = steps, functions[0].label+", from its warm pool"
	if err := scaleTo(env, floorBridge, 0); err != nil {
		return r, err
	}
	for _, f := range functions {
		if err := scaleTo(env, f.fn.Name, 0); err != nil {
			return r, err
		}
	}
	return r, nil
}

// poolColdTrial is coldGatewayTrial where a warm pool must serve.
func poolColdTrial(env *testenv.Env, gatewayURL, name string) (time.Duration, error) {
	if err := toZero(env, gatewayURL, name); err != nil {
		return 0, err
	}
	start := time.Now()
	resp, err := client.Post(gatewayURL+"/v1/functions/"+name+"/invoke", "application/json", strings.NewReader(event))
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	d := time.Since(start)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Nimbus-Cold-Path") != "pool" {
		return 0, fmt.Errorf("a cold start of %s: %s, X-Nimbus-Cold-Path %q; want 200 from the warm pool", name, resp.Status, resp.Header.Get("X-Nimbus-Cold-Path"))
	}
	return d, nil
}

// waitPoolIdle waits until the gateway counts an idle instance of pool.
func waitPoolIdle(gatewayURL, pool string) error {
	if gatewaySays(gatewayURL+"/metrics", `nimbus_warm_pool_idle{pool="`+pool+`"} 1`) {
		return nil
	}
	return fmt.Errorf("the gateway never counted an idle instance of %s", pool)
}

func formatPools(b *strings.Builder, r poolResult) {
	if len(r.floor) == 0 {
		return
	}
	goals := map[string]string{model.RuntimeProvided: "50 ms", model.RuntimePython: "120 ms", model.RuntimeNode: "150 ms"}
	b.WriteString("**Cold start from a warm pool** (a `nimbus_warm_pool` of one instance per runtime; the function at 0 instances → answer through the gateway, served by a pool instance specialised on demand; the floor's cold starts interleaved):\n\n")
	b.WriteString("| Path | p50 | p99 | Ratio to the floor (p50) | Goal (p50) |\n| --- | --- | --- | --- | --- |\n")
	fmt.Fprintf(b, "| Floor: Nomad scale call → first 200 from the static server | %s | %s | 1 | |\n", ms(pct(r.floor, .5)), ms(pct(r.floor, .99)))
	for _, f := range r.functions {
		goal := ""
		for rt, g := range goals {
			if strings.Contains(f.label, "`"+rt+"`") {
				goal = "≤ " + g
			}
		}
		fmt.Fprintf(b, "| %s | %s | %s | **%.2f** | %s |\n", f.label, ms(pct(f.trials, .5)), ms(pct(f.trials, .99)), ratio(pct(f.trials, .5), pct(r.floor, .5)), goal)
	}
	b.WriteString("\n")
	formatBreakdown(b, r.breakdownOf, r.breakdown)
}
