package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/eventq"
)

// functionLines returns the lines the function's instances printed on
// stdout, read from Nomad.
func functionLines(t *testing.T, env *testenv.Env, function string) []string {
	t.Helper()
	allocs, _, err := env.Nomad.Jobs().Allocations(nomadjob.JobID(function), true, nil)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, stub := range allocs {
		alloc, _, err := env.Nomad.Allocations().Info(stub.ID, nil)
		if err != nil {
			continue
		}
		files, _, err := env.Nomad.AllocFS().List(alloc, "alloc/logs", nil)
		if err != nil {
			continue
		}
		for _, f := range files {
			if !strings.HasPrefix(f.Name, nomadjob.TaskName+".stdout.") {
				continue
			}
			r, err := env.Nomad.AllocFS().Cat(alloc, "alloc/logs/"+f.Name, nil)
			if err != nil {
				continue
			}
			sc := bufio.NewScanner(r)
			for sc.Scan() {
				lines = append(lines, sc.Text())
			}
			_ = r.Close()
		}
	}
	return lines
}

var (
	recordLine = regexp.MustCompile(`record (\S+) (attempt|redelivered) `)
	batchLine  = regexp.MustCompile(`batch (\d+) (\d+) (\d+)$`)
)

// consumed is what a batch handler (testdata/sqsconsumer,
// testdata/rabbitmqconsumer) printed: the runs of each record, and the
// batches' spans.
type consumed struct {
	runs    map[string]int
	batches [][2]int64
}

func readConsumed(t *testing.T, env *testenv.Env, function string) consumed {
	t.Helper()
	c := consumed{runs: map[string]int{}}
	for _, l := range functionLines(t, env, function) {
		if m := recordLine.FindStringSubmatch(l); m != nil {
			c.runs[m[1]]++
		}
		if m := batchLine.FindStringSubmatch(l); m != nil {
			start, _ := strconv.ParseInt(m[1], 10, 64)
			end, _ := strconv.ParseInt(m[2], 10, 64)
			c.batches = append(c.batches, [2]int64{start, end})
		}
	}
	return c
}

// overlap is the most batches that ran at once, among those that started
// in [from, to).
func (c consumed) overlap(from, to time.Time) int {
	type edge struct {
		at    int64
		delta int
	}
	var edges []edge
	for _, b := range c.batches {
		if b[0] >= from.UnixNano() && b[0] < to.UnixNano() {
			edges = append(edges, edge{b[0], 1}, edge{b[1], -1})
		}
	}
	// An end before a start at the same instant.
	sort.Slice(edges, func(i, j int) bool {
		return edges[i].at < edges[j].at || (edges[i].at == edges[j].at && edges[i].delta < edges[j].delta)
	})
	most, now := 0, 0
	for _, e := range edges {
		now += e.delta
		most = max(most, now)
	}
	return most
}

// waitConsumed waits until every id ran at least once, and returns what
// the function printed.
func waitConsumed(t *testing.T, env *testenv.Env, function string, ids []string, within time.Duration) consumed {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		c := readConsumed(t, env, function)
		var missing []string
		for _, id := range ids {
			if c.runs[id] == 0 {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d records never reached the function (lost), such as %v", len(missing), len(ids), missing[:min(5, len(missing))])
		}
		time.Sleep(2 * time.Second)
	}
}

// record is the body a test publishes.
func record(id, fail string) []byte {
	return fmt.Appendf(nil, `{"id":%q,"fail":%q,"sleep_ms":30}`, id, fail)
}

// prepareSource does what nimbus_event_source does: the gateway checks the
// source against its broker (PUT /v1/event-sources/{name}), then the
// record goes to KV. It returns the gateway's answer when it refuses.
func prepareSource(t *testing.T, env *testenv.Env, gw *testenv.Gateway, src kvstore.EventSource) (int, string) {
	t.Helper()
	resp, err := gw.Do(http.MethodPut, "/v1/event-sources/"+src.Name, bytes.NewReader(src.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, b.String()
	}
	if _, err := env.Consul.KV().Put(&consulapi.KVPair{Key: kvstore.EventSourceKey(src.Name), Value: src.Encode()}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = env.Consul.KV().Delete(kvstore.EventSourceKey(src.Name), nil)
		stream := ""
		if src.NATS != nil {
			stream = "?stream=" + src.NATS.Stream
		}
		if resp, err := gw.Do(http.MethodDelete, "/v1/event-sources/"+src.Name+stream, nil); err == nil {
			_ = resp.Body.Close()
		}
	})
	return resp.StatusCode, ""
}

// sourceDeadLetters subscribes, as the operator, to a source's dead letters.
func sourceDeadLetters(t *testing.T, env *testenv.Env, source string) <-chan *nats.Msg {
	t.Helper()
	_, dead := deadLetters(t, env, eventq.SourceDeadLetters(source))
	return dead
}

// sourceFailure is the part of a failed record's dead letter the tests read.
type sourceFailure struct {
	RequestContext struct {
		Condition              string `json:"condition"`
		ApproximateInvokeCount int    `json:"approximateInvokeCount"`
	} `json:"requestContext"`
	EventSource struct {
		Name string `json:"name"`
	} `json:"eventSource"`
	Record json.RawMessage `json:"record"`
}

// settledBy reads how many records of the source a gateway settled, by
// outcome, from its /metrics.
func settledBy(t *testing.T, gw *testenv.Gateway, source, outcome string) int {
	t.Helper()
	v, err := gw.Metric(`nimbus_event_source_records_total{outcome="` + outcome + `",source="` + source + `"}`)
	if err != nil {
		t.Fatal(err)
	}
	return int(v)
}

// checkPhase asserts what a batch handler printed for one undisturbed run:
// each plain record once, each record failing once twice (only it was
// retried, not its batch), the poison record 1 + retries times.
func checkPhase(t *testing.T, c consumed, plain, flaky []string, poison string, retries int) {
	t.Helper()
	for _, id := range plain {
		if c.runs[id] != 1 {
			t.Errorf("record %s ran %d times, want once: a partial batch failure must retry only the failed records", id, c.runs[id])
		}
	}
	for _, id := range flaky {
		if c.runs[id] != 2 {
			t.Errorf("record %s, failed once, ran %d times, want 2", id, c.runs[id])
		}
	}
	if c.runs[poison] != 1+retries {
		t.Errorf("the poison record ran %d times, want %d (1 + maximum_retry_attempts)", c.runs[poison], 1+retries)
	}
}

// phaseRecords names n records of a phase: every 50th fails once, and one
// poison record fails always.
func phaseRecords(phase string, n int) (all, plain, flaky []string, poison string) {
	for i := range n {
		id := fmt.Sprintf("%s-%d", phase, i)
		all = append(all, id)
		if i%50 == 25 {
			flaky = append(flaky, id)
		} else {
			plain = append(plain, id)
		}
	}
	poison = phase + "-poison"
	return all, plain, flaky, poison
}

func failureOf(id string, flaky []string, poison string) string {
	switch {
	case id == poison:
		return "always"
	case contains(flaky, id):
		return "once"
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// brokerUnderTest is what a source test drives on its broker.
type brokerUnderTest struct {
	// publish stores the records, the poison one failing always and the
	// flaky ones once, riding out a restart.
	publish func(ids, flaky []string, poison string)
	// restart restarts the broker, as an operator would.
	restart func(context.Context) error
	// poisonID reads the record's identifier from a dead letter.
	poisonID func(record json.RawMessage) string
}

// runSourceScenario is what each broker's test proves. Phase 1, with one
// gateway: 1,000 records (every 50th failing once) and a poison record;
// every record runs, a partial batch failure retries only the failed
// records, the poison record reaches the dead letters after its retries
// while the rest flow, and no more than maximum_concurrency batches run at
// once. Phase 2: a second gateway joins and the broker restarts while
// 4,000 more records flow; none is lost, duplicates are counted, the
// second gateway takes a share, and both together stay within
// maximum_concurrency.
func runSourceScenario(t *testing.T, env *testenv.Env, gw *testenv.Gateway, src kvstore.EventSource, b brokerUnderTest) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dead := sourceDeadLetters(t, env, src.Name)

	start := time.Now()
	all, plain, flaky, poison := phaseRecords("p1", 1000)
	b.publish(append(all, poison), flaky, poison)
	waitConsumed(t, env, src.Function, append(all, poison), 3*time.Minute)
	var failure sourceFailure
	awaitDeadLetter(t, dead, time.Minute, "the poison record", &failure)
	if failure.RequestContext.Condition != "RetryAttemptsExhausted" || failure.RequestContext.ApproximateInvokeCount != 1+src.MaxRetries ||
		failure.EventSource.Name != src.Name || b.poisonID(failure.Record) != poison {
		t.Errorf("the poison record's dead letter: %+v with record %s", failure, failure.Record)
	}
	time.Sleep(3 * time.Second) // retries still in flight would show
	c := readConsumed(t, env, src.Function)
	checkPhase(t, c, plain, flaky, poison, src.MaxRetries)
	most := c.overlap(start, time.Now())
	t.Logf("phase 1: %d batches, at most %d at once (maximum_concurrency %d)", len(c.batches), most, src.MaxConcurrency)
	if most > src.MaxConcurrency {
		t.Errorf("%d batches ran at once; maximum_concurrency is %d", most, src.MaxConcurrency)
	}
	if most < 2 {
		t.Errorf("at most %d batch ran at once under a backlog of 1,000 records: the source does not use its concurrency", most)
	}

	resp, err := gw.Do(http.MethodGet, "/v1/event-sources/"+src.Name, nil)
	if err != nil {
		t.Fatal(err)
	}
	var state struct{ State, Function string }
	_ = json.NewDecoder(resp.Body).Decode(&state)
	_ = resp.Body.Close()
	if state.State != "consuming" || state.Function != src.Function {
		t.Errorf("GET /v1/event-sources/%s: %+v, want it consuming for %s", src.Name, state, src.Function)
	}

	second, err := env.StartGatewayAs(fx.gatewayBin, "sources-gateway-"+src.Name, env.Principals.Gateway)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(second.Stop)
	phase2 := time.Now()
	all2, _, _, _ := phaseRecords("p2", 4000)
	b.publish(all2[:2000], nil, "")
	if err := b.restart(ctx); err != nil {
		t.Fatal(err)
	}
	b.publish(all2[2000:], nil, "")
	c = waitConsumed(t, env, src.Function, all2, 5*time.Minute)
	if most := c.overlap(phase2, time.Now()); most > src.MaxConcurrency {
		t.Errorf("with two gateways %d batches ran at once; maximum_concurrency is %d", most, src.MaxConcurrency)
	} else {
		t.Logf("phase 2: at most %d batches at once across both gateways (maximum_concurrency %d)", most, src.MaxConcurrency)
	}
	dups := 0
	for _, id := range all2 {
		dups += c.runs[id] - 1
	}
	shared := settledBy(t, second, src.Name, "succeeded")
	t.Logf("phase 2: 4,000 records, 0 lost, %d duplicate runs (at-least-once); the second gateway settled %d", dups, shared)
	if shared == 0 {
		t.Error("the second gateway settled no record: it does not share the source")
	}
}

// TestNATSEventSource consumes a JetStream stream with an events.SQSEvent
// handler (runSourceScenario), after the refusals of sources that
// JetStream or the gateway's permissions refuse.
func TestNATSEventSource(t *testing.T) {
	env, gw := gateway(t)
	deployFrom(t, model.Function{Name: "nats-consumer", Runtime: model.RuntimeProvided, MaxInstances: 8, Timeout: 30 * time.Second}, fx.sqsSource, 0)

	js := operatorJetStream(t, env)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: testenv.SourceStream, Subjects: []string{"orders.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	src := kvstore.EventSource{Name: "nats-orders", Function: "nats-consumer", Enabled: true, BatchSize: 10, MaxConcurrency: 3, MaxRetries: 1,
		NATS: &kvstore.NATSSource{Stream: testenv.SourceStream, FilterSubject: "orders.nats.>", StartingPosition: kvstore.StartTrimHorizon}}

	// Refusals at apply carry the broker's own message, or say what to
	// grant; a refused source leaves no consumer.
	for _, c := range []struct {
		name, stream, filter, want string
	}{
		{"nats-missing", testenv.UncreatedStream, "", "stream not found"},
		{"nats-ungranted", "NOT_GRANTED", "", "gateway-permissions.conf"},
		{"nats-outside", testenv.SourceStream, "invoices.>", "matches none of stream ORDERS's subjects"},
	} {
		bad := src
		bad.Name, bad.NATS = c.name, &kvstore.NATSSource{Stream: c.stream, FilterSubject: c.filter, StartingPosition: kvstore.StartTrimHorizon}
		if status, body := prepareSource(t, env, gw, bad); status != http.StatusUnprocessableEntity || !strings.Contains(body, c.want) {
			t.Errorf("source %s: %d %s, want 422 saying %q", c.name, status, body, c.want)
		}
	}
	if _, err := js.Consumer(ctx, testenv.SourceStream, "nimbus-source-nats-outside"); err == nil {
		t.Error("a refused source left a consumer behind")
	}

	if status, body := prepareSource(t, env, gw, src); status != http.StatusOK {
		t.Fatalf("preparing the source: %d %s", status, body)
	}
	runSourceScenario(t, env, gw, src, brokerUnderTest{
		publish: func(ids, flaky []string, poison string) {
			for _, id := range ids {
				for {
					if _, err := js.Publish(ctx, "orders.nats."+id, record(id, failureOf(id, flaky, poison))); err == nil {
						break
					}
					// The server is restarting: publish again.
					time.Sleep(200 * time.Millisecond)
				}
			}
		},
		restart: env.NATS.Restart,
		poisonID: func(raw json.RawMessage) string {
			var rec struct{ Body, Subject string }
			_ = json.Unmarshal(raw, &rec)
			var b struct{ ID string }
			_ = json.Unmarshal([]byte(rec.Body), &b)
			if rec.Subject != "orders.nats."+b.ID {
				return "the record's subject " + rec.Subject + " is not its message's"
			}
			return b.ID
		},
	})
}

// TestRabbitMQEventSource consumes a RabbitMQ queue with an unmodified
// events.RabbitMQEvent handler (runSourceScenario), its credentials coming
// from a Nomad Variable, after the refusals of sources RabbitMQ refuses.
func TestRabbitMQEventSource(t *testing.T) {
	env, gw := gateway(t)
	deployFrom(t, model.Function{Name: "rabbitmq-consumer", Runtime: model.RuntimeProvided, MaxInstances: 8, Timeout: 30 * time.Second}, fx.rabbitMQSource, 0)
	const queue = "src-orders"
	admin := func() (*amqp.Connection, *amqp.Channel) {
		conn, err := amqp.Dial(env.RabbitMQ.AdminURL())
		if err != nil {
			t.Fatal(err)
		}
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		if err := ch.Confirm(false); err != nil {
			t.Fatal(err)
		}
		return conn, ch
	}
	conn, ch := admin()
	defer func() { _ = conn.Close() }()
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	src := kvstore.EventSource{Name: "rmq-orders", Function: "rabbitmq-consumer", Enabled: true, BatchSize: 10, MaxConcurrency: 3, MaxRetries: 1,
		RabbitMQ: &kvstore.RabbitMQSource{URL: env.RabbitMQ.URL, Queue: queue}}

	// Without its Variable the gateway cannot log in, and says what to do.
	if status, body := prepareSource(t, env, gw, src); status != http.StatusUnprocessableEntity || !strings.Contains(body, "nomad var put nimbus/event-sources/rmq-orders") {
		t.Errorf("a source without credentials: %d %s, want 422 saying how to create the Variable", status, body)
	}
	putCredentials := func(name, user, password string) {
		v := &nomadapi.Variable{Path: kvstore.EventSourceVariable(name), Items: nomadapi.VariableItems{"username": user, "password": password}}
		if _, _, err := env.Nomad.Variables().Update(v, nil); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _, _ = env.Nomad.Variables().Delete(kvstore.EventSourceVariable(name), nil) })
	}
	putCredentials("rmq-wrong", env.RabbitMQ.Gateway.User, "not-the-password")
	wrong := src
	wrong.Name = "rmq-wrong"
	if status, body := prepareSource(t, env, gw, wrong); status != http.StatusUnprocessableEntity || !strings.Contains(body, "username or password not allowed") {
		t.Errorf("a source with a wrong password: %d %s, want 422 with RabbitMQ's refusal", status, body)
	}
	putCredentials(src.Name, env.RabbitMQ.Gateway.User, env.RabbitMQ.Gateway.Password)
	noQueue := src
	noQueue.RabbitMQ = &kvstore.RabbitMQSource{URL: env.RabbitMQ.URL, Queue: "src-missing"}
	if status, body := prepareSource(t, env, gw, noQueue); status != http.StatusUnprocessableEntity || !strings.Contains(body, "NOT_FOUND") {
		t.Errorf("a source on a missing queue: %d %s, want 422 with RabbitMQ's NOT_FOUND", status, body)
	}
	if status, body := prepareSource(t, env, gw, src); status != http.StatusOK {
		t.Fatalf("preparing the source: %d %s", status, body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	runSourceScenario(t, env, gw, src, brokerUnderTest{
		publish: func(ids, flaky []string, poison string) {
			for _, id := range ids {
				for {
					conf, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, true, false, amqp.Publishing{
						DeliveryMode: amqp.Persistent, ContentType: "application/json", MessageId: id, Body: record(id, failureOf(id, flaky, poison)),
					})
					if err == nil {
						if ok, werr := conf.WaitContext(ctx); werr == nil && ok {
							break
						}
					}
					// The broker is restarting: connect again, publish again.
					_ = conn.Close()
					for {
						if c, err := amqp.Dial(env.RabbitMQ.AdminURL()); err == nil {
							_ = c.Close()
							break
						}
						time.Sleep(500 * time.Millisecond)
					}
					conn, ch = admin()
				}
			}
		},
		restart: env.RabbitMQ.Restart,
		poisonID: func(raw json.RawMessage) string {
			var rec struct {
				BasicProperties struct {
					MessageID string `json:"messageId"`
				} `json:"basicProperties"`
			}
			_ = json.Unmarshal(raw, &rec)
			return rec.BasicProperties.MessageID
		},
	})
	// The handler saw Lambda's event: its source, and the queue by
	// "<queue>::<virtual host>".
	for _, l := range functionLines(t, env, "rabbitmq-consumer") {
		if strings.Contains(l, "record p1-0 ") && !strings.Contains(l, "queue src-orders::/ source aws:rmq") {
			t.Errorf("the events.RabbitMQEvent handler saw %q, want the queue src-orders::/ and source aws:rmq", l)
		}
	}
}
