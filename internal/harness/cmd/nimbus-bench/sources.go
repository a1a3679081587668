package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
)

// sourceResult is an event source's throughput, from the first publish to
// the last record settled as a success.
type sourceResult struct {
	messages, batchSize, concurrency int
	all                              time.Duration
}

// sourceThroughput publishes n messages to a JetStream stream that an event
// source of the warm Go function consumes, in batches of 10 with 8 at
// once, and times them until the gateway settled them all.
func sourceThroughput(ctx context.Context, env *testenv.Env, gatewayURL, fn string, n int) (sourceResult, error) {
	r := sourceResult{messages: n, batchSize: 10, concurrency: concurrentClients}
	fmt.Println("bench: an event source on a JetStream stream")
	nc, err := nats.Connect(env.NATS.URL, env.NATS.Admin.Options()...)
	if err != nil {
		return r, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return r, err
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: testenv.SourceStream, Subjects: []string{"orders.>"}, Storage: jetstream.FileStorage}); err != nil {
		return r, err
	}
	defer func() { _ = js.DeleteStream(context.WithoutCancel(ctx), testenv.SourceStream) }()
	src := kvstore.EventSource{Name: "bench-orders", Function: fn, Enabled: true, BatchSize: r.batchSize, MaxConcurrency: r.concurrency,
		NATS: &kvstore.NATSSource{Stream: testenv.SourceStream, FilterSubject: "orders.bench.>", StartingPosition: kvstore.StartTrimHorizon}}
	// As the provider does: the gateway prepares the consumer, then the
	// record goes to KV.
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, gatewayURL+"/v1/event-sources/"+src.Name, bytes.NewReader(src.Encode()))
	resp, err := client.Do(req)
	if err != nil {
		return r, err
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return r, fmt.Errorf("preparing the bench's event source: %s %s", resp.Status, body)
	}
	if _, err := env.Consul.KV().Put(&consulapi.KVPair{Key: kvstore.EventSourceKey(src.Name), Value: src.Encode()}, nil); err != nil {
		return r, err
	}
	defer func() { _, _ = env.Consul.KV().Delete(kvstore.EventSourceKey(src.Name), nil) }()

	base, err := settled(env, gatewayURL, src.Name)
	if err != nil {
		return r, err
	}
	payload := []byte(asyncEvent)
	start := time.Now()
	if _, err := timedCalls(n, func() error {
		_, err := js.Publish(ctx, "orders.bench.new", bytes.Clone(payload))
		return err
	}); err != nil {
		return r, err
	}
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(5 * time.Millisecond) {
		done, err := settled(env, gatewayURL, src.Name)
		if err != nil {
			return r, err
		}
		if done-base >= n {
			r.all = time.Since(start)
			break
		}
		if time.Now().After(deadline) {
			return r, fmt.Errorf("%d of %d messages were consumed within 5 minutes", done-base, n)
		}
	}
	return r, toZero(env, gatewayURL, fn)
}

// settled is the source's records settled as a success, from /metrics.
func settled(env *testenv.Env, gatewayURL, source string) (int, error) {
	v, err := env.GatewayAt(gatewayURL).Metric(`nimbus_event_source_records_total{outcome="succeeded",source="` + source + `"}`)
	return int(v), err
}

func formatSource(b *strings.Builder, r sourceResult, floor asyncResult) {
	if r.messages == 0 || floor.events == 0 {
		return
	}
	rate := func(n int, d time.Duration) float64 { return float64(n) / d.Seconds() }
	fmt.Fprintf(b, "**Event source** (`nimbus_event_source` on a JetStream stream: %d messages of the same size, published as above by 8 publishers, consumed by the warm Go function in batches of up to %d, %d batches at once; the floor is the raw JetStream run above):\n\n", r.messages, r.batchSize, r.concurrency)
	b.WriteString("| | Floor: raw JetStream | Through the event source | Ratio |\n| --- | --- | --- | --- |\n")
	fmt.Fprintf(b, "| Throughput, first publish → last record settled after the function ran it | %.0f messages/s | %.0f messages/s | **%.2f** |\n\n",
		rate(floor.events, floor.floorAll), rate(r.messages, r.all), rate(r.messages, r.all)/rate(floor.events, floor.floorAll))
}
