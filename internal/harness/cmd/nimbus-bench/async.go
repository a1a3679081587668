package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
)

// asyncResult is the asynchronous path against raw JetStream.
type asyncResult struct {
	events                int
	floorAcks, gatewayAck []time.Duration // publish → ack; request → 202
	floorAll, gatewayAll  time.Duration   // first publish → last event done
}

// asyncEvent is what each event carries.
const asyncEvent = `{"action":"echo","value":"async"}`

// asyncThroughput sends n Event invocations of a warm Go function through
// the gateway (8 senders) and times the 202s and the whole run, until the
// function ran them all; the floor publishes as many messages of the same
// size to a JetStream work queue on the same server (8 publishers, each
// waiting for its ack) while 8 consumers fetch and acknowledge them.
func asyncThroughput(ctx context.Context, env *testenv.Env, gatewayURL, fn string, n int) (asyncResult, error) {
	r := asyncResult{events: n}
	fmt.Println("bench: asynchronous invocations, raw JetStream floor")
	var err error
	if r.floorAcks, r.floorAll, err = jetStreamFloor(ctx, env, n); err != nil {
		return r, err
	}
	fmt.Println("bench: asynchronous invocations through the gateway")
	// Warm the function's instances first: the run measures the queue,
	// not cold starts.
	if _, _, err := gatewayEvents(ctx, gatewayURL, fn, 200); err != nil {
		return r, err
	}
	if r.gatewayAck, r.gatewayAll, err = gatewayEvents(ctx, gatewayURL, fn, n); err != nil {
		return r, err
	}
	// The warm path that follows starts from one instance.
	return r, toZero(env, gatewayURL, fn)
}

func gatewayEvents(ctx context.Context, gatewayURL, fn string, n int) ([]time.Duration, time.Duration, error) {
	base, err := invocations(gatewayURL, fn)
	if err != nil {
		return nil, 0, err
	}
	start := time.Now()
	acks, err := timedCalls(n, func() error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, gatewayURL+"/2015-03-31/functions/"+fn+"/invocations", strings.NewReader(asyncEvent))
		req.Header.Set("X-Amz-Invocation-Type", "Event")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("an Event invocation got %s", resp.Status)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		done, err := invocations(gatewayURL, fn)
		if err != nil {
			return nil, 0, err
		}
		if done-base >= int64(n) {
			return acks, time.Since(start), nil
		}
		if time.Now().After(deadline) {
			return nil, 0, fmt.Errorf("%d of %d events ran within 5 minutes", done-base, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// invocations is the function's count in GET /v1/usage.
func invocations(gatewayURL, fn string) (int64, error) {
	resp, err := client.Get(gatewayURL + "/v1/usage")
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	var u struct {
		Functions []struct {
			Function    string `json:"function"`
			Invocations int64  `json:"invocations"`
		} `json:"functions"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&u); err != nil {
		return 0, err
	}
	for _, f := range u.Functions {
		if f.Function == fn {
			return f.Invocations, nil
		}
	}
	return 0, nil
}

func jetStreamFloor(ctx context.Context, env *testenv.Env, n int) ([]time.Duration, time.Duration, error) {
	nc, err := nats.Connect(env.NATS.URL, env.NATS.Admin.Options()...)
	if err != nil {
		return nil, 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, 0, err
	}
	stream, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "BENCH_FLOOR", Subjects: []string{"bench.floor"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage})
	if err != nil {
		return nil, 0, err
	}
	defer func() { _ = js.DeleteStream(context.WithoutCancel(ctx), "BENCH_FLOOR") }()
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "floor", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: concurrentClients})
	if err != nil {
		return nil, 0, err
	}
	var consumed sync.WaitGroup
	consumed.Add(n)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	for range concurrentClients {
		go func() {
			for runCtx.Err() == nil {
				batch, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
				if err != nil {
					continue
				}
				for m := range batch.Messages() {
					if m.DoubleAck(runCtx) == nil {
						consumed.Done()
					}
				}
			}
		}()
	}
	payload := []byte(asyncEvent)
	start := time.Now()
	acks, err := timedCalls(n, func() error {
		_, err := js.Publish(ctx, "bench.floor", bytes.Clone(payload))
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	consumed.Wait()
	return acks, time.Since(start), nil
}

// timedCalls runs call n times from concurrentClients goroutines and times
// each call.
func timedCalls(n int, call func() error) ([]time.Duration, error) {
	var mu sync.Mutex
	var times []time.Duration
	var firstErr error
	next := make(chan struct{})
	var wg sync.WaitGroup
	for range concurrentClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				t0 := time.Now()
				err := call()
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				times = append(times, time.Since(t0))
				mu.Unlock()
			}
		}()
	}
	for range n {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	return times, firstErr
}

func formatAsync(b *strings.Builder, r asyncResult) {
	if r.events == 0 {
		return
	}
	rate := func(d time.Duration) float64 { return float64(r.events) / d.Seconds() }
	fmt.Fprintf(b, "**Asynchronous invocations** (%d events of a warm Go function, 8 senders; the floor: as many messages of the same size published to a JetStream work queue on the same nats-server, each publisher waiting for its ack, while 8 consumers fetch and acknowledge them):\n\n", r.events)
	b.WriteString("| | Floor: raw JetStream | Through the gateway | Ratio |\n| --- | --- | --- | --- |\n")
	fmt.Fprintf(b, "| Acknowledged to the sender, p50 (JetStream's ack; the gateway's 202) | %s | %s | **%.2f** |\n", us(pct(r.floorAcks, .5)), us(pct(r.gatewayAck, .5)), ratio(pct(r.gatewayAck, .5), pct(r.floorAcks, .5)))
	fmt.Fprintf(b, "| Acknowledged to the sender, p99 | %s | %s | %.2f |\n", us(pct(r.floorAcks, .99)), us(pct(r.gatewayAck, .99)), ratio(pct(r.gatewayAck, .99), pct(r.floorAcks, .99)))
	fmt.Fprintf(b, "| Throughput, first send → last event done (the function ran it) | %.0f events/s | %.0f events/s | **%.2f** |\n\n", rate(r.floorAll), rate(r.gatewayAll), rate(r.gatewayAll)/rate(r.floorAll))
}
