package eventq

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// These tests need no NATS: a fake JetStream records what the queue
// publishes, a fake message what the queue does with a delivery. A method
// they do not override panics (the embedded interface is nil), so a test
// also proves the queue calls nothing else.

type fakeJS struct {
	jetstream.JetStream
	err       error // returned by every publish
	published []*nats.Msg
}

func (j *fakeJS) PublishMsg(_ context.Context, m *nats.Msg, _ ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	j.published = append(j.published, m)
	if j.err != nil {
		return nil, j.err
	}
	return &jetstream.PubAck{Stream: "test"}, nil
}

func (j *fakeJS) Publish(ctx context.Context, subject string, data []byte, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	return j.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: data}, opts...)
}

type fakeMsg struct {
	jetstream.Msg
	md      *jetstream.MsgMetadata
	mdErr   error
	data    []byte
	headers nats.Header

	mu    sync.Mutex
	calls []string
}

func (m *fakeMsg) Metadata() (*jetstream.MsgMetadata, error) { return m.md, m.mdErr }
func (m *fakeMsg) Data() []byte                              { return m.data }
func (m *fakeMsg) Headers() nats.Header                      { return m.headers }
func (m *fakeMsg) NakWithDelay(d time.Duration) error        { m.record("nak " + d.String()); return nil }
func (m *fakeMsg) DoubleAck(context.Context) error           { m.record("ack"); return nil }
func (m *fakeMsg) InProgress() error                         { m.record("in progress"); return nil }

func (m *fakeMsg) record(call string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, call)
}

func testQueue(js *fakeJS) *Queue {
	return &Queue{js: js, log: slog.New(slog.DiscardHandler), consumers: map[string]jetstream.Consumer{}}
}

// An event is stored with its request id, caller and qualifier in headers
// and read back as it was, with JetStream's delivery count as its attempt.
func TestEventRoundTrip(t *testing.T) {
	stored := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, ev := range []Event{
		{Function: "orders", Qualifier: "live", RequestID: "req-1", Caller: "key AKIA1", Payload: []byte(`{"id":1}`)},
		{Function: "orders", RequestID: "req-2", Caller: "a destination", Payload: []byte(`{}`)},
	} {
		msg := eventMsg(ev, nil)
		if msg.Subject != "nimbus.events.orders" || !bytes.Equal(msg.Data, ev.Payload) {
			t.Errorf("stored on %s with %q, want nimbus.events.orders with the payload", msg.Subject, msg.Data)
		}
		if got := msg.Header.Get("Nimbus-Request-Id"); got != ev.RequestID {
			t.Errorf("request id header %q, want %q", got, ev.RequestID)
		}
		if got := msg.Header.Get("Nimbus-Caller"); got != ev.Caller {
			t.Errorf("caller header %q, want %q", got, ev.Caller)
		}
		if _, set := msg.Header[HeaderQualifier]; set != (ev.Qualifier != "") {
			t.Errorf("qualifier %q: header present %v", ev.Qualifier, set)
		}

		d, err := delivery("orders", &fakeMsg{data: msg.Data, headers: msg.Header,
			md: &jetstream.MsgMetadata{NumDelivered: 3, Timestamp: stored}})
		if err != nil {
			t.Fatal(err)
		}
		if d.Function != ev.Function || d.Qualifier != ev.Qualifier || d.RequestID != ev.RequestID || d.Caller != ev.Caller || !bytes.Equal(d.Payload, ev.Payload) {
			t.Errorf("read back %+v, stored %+v", d.Event, ev)
		}
		if d.Attempt != 3 || !d.Stored.Equal(stored) {
			t.Errorf("attempt %d stored %v, want 3 and %v", d.Attempt, d.Stored, stored)
		}
	}
	// A message without JetStream metadata is no delivery (Consume
	// terminates it).
	if _, err := delivery("orders", &fakeMsg{mdErr: jetstream.ErrNotJSMessage}); !errors.Is(err, jetstream.ErrNotJSMessage) {
		t.Errorf("delivery without metadata: %v", err)
	}
}

// A stream at its limit refuses the event (API error 10077): ErrFull, the
// caller's 429. Any other failure is passed on as it is.
func TestEnqueueErrors(t *testing.T) {
	ev := Event{Function: "orders", RequestID: "req-1", Caller: "c", Payload: []byte("x")}
	js := &fakeJS{}
	if err := testQueue(js).Enqueue(context.Background(), ev); err != nil || len(js.published) != 1 || js.published[0].Subject != "nimbus.events.orders" {
		t.Fatalf("Enqueue: %v, published %v", err, js.published)
	}

	full := &jetstream.APIError{Code: 503, ErrorCode: 10077, Description: "maximum bytes exceeded"}
	err := testQueue(&fakeJS{err: full}).Enqueue(context.Background(), ev)
	if !errors.Is(err, ErrFull) || err.Error() != "the event queue is full: maximum bytes exceeded" {
		t.Errorf("a full stream: %v, want ErrFull with the server's description", err)
	}

	other := &jetstream.APIError{Code: 400, ErrorCode: 10060, Description: "expected stream does not match"}
	if err := testQueue(&fakeJS{err: other}).Enqueue(context.Background(), ev); err != other {
		t.Errorf("another API error: %v, want it unchanged", err)
	}
	if err := testQueue(&fakeJS{err: context.DeadlineExceeded}).Enqueue(context.Background(), ev); err != context.DeadlineExceeded || errors.Is(err, ErrFull) {
		t.Errorf("a timeout: %v", err)
	}
}

// A destination record that no stream captures says which subject needs a
// stream.
func TestPublishWithoutStream(t *testing.T) {
	for _, cause := range []error{jetstream.ErrNoStreamResponse, nats.ErrNoResponders} {
		err := testQueue(&fakeJS{err: cause}).Publish(context.Background(), "nimbus.destinations.audit", []byte("{}"))
		if err == nil || !strings.HasPrefix(err.Error(), "no JetStream stream captures the subject nimbus.destinations.audit: ") {
			t.Errorf("%v: %v", cause, err)
		}
	}
	if err := testQueue(&fakeJS{err: context.Canceled}).Publish(context.Background(), "nimbus.destinations.audit", nil); err != context.Canceled {
		t.Errorf("another failure: %v, want it unchanged", err)
	}
}

func TestStoreDeadLetter(t *testing.T) {
	js := &fakeJS{}
	q := testQueue(js)
	if err := q.StoreDeadLetter(context.Background(), "orders", "req-1", []byte("record")); err != nil {
		t.Fatal(err)
	}
	if err := q.StoreDeadLetter(context.Background(), SourceDeadLetters("kv-orders"), "rec-9", []byte("source record")); err != nil {
		t.Fatal(err)
	}
	for i, want := range []struct{ subject, id, data string }{
		{"nimbus.dead.orders", "req-1", "record"},
		{"nimbus.dead.sources.kv-orders", "rec-9", "source record"},
	} {
		m := js.published[i]
		if m.Subject != want.subject || m.Header.Get(HeaderRequestID) != want.id || string(m.Data) != want.data {
			t.Errorf("dead letter %d on %s (id %q): %q; want %+v", i, m.Subject, m.Header.Get(HeaderRequestID), m.Data, want)
		}
		if !strings.HasPrefix(m.Subject, DeadPrefix) {
			t.Errorf("%s is outside the dead-letter stream", m.Subject)
		}
	}
}

// What becomes of a delivery by its handler's outcome: a retry is a
// negative acknowledgement with the outcome's delay (even if a dead letter
// is set: the event is not done); a dead letter is stored before the
// event is acknowledged, and an event whose dead letter cannot be stored
// stays queued; a finished event is acknowledged.
func TestRunSettlesEachOutcome(t *testing.T) {
	for _, tc := range []struct {
		name      string
		out       Outcome
		storeErr  error
		calls     []string
		deadStore bool
	}{
		{"done", Outcome{}, nil, []string{"ack"}, false},
		{"retry", Outcome{Retry: true, Delay: 2 * time.Minute}, nil, []string{"nak 2m0s"}, false},
		{"retry at once", Outcome{Retry: true}, nil, []string{"nak 0s"}, false},
		{"retry wins over a dead letter", Outcome{Retry: true, Delay: time.Second, DeadLetter: []byte("rec")}, nil, []string{"nak 1s"}, false},
		{"dead letter", Outcome{DeadLetter: []byte("rec")}, nil, []string{"ack"}, true},
		{"dead letter not stored", Outcome{DeadLetter: []byte("rec")}, errors.New("no quorum"), []string{"nak 5s"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			js := &fakeJS{err: tc.storeErr}
			msg := &fakeMsg{}
			d := Delivery{Event: Event{Function: "orders", RequestID: "req-1"}, Attempt: 2, msg: msg}
			// The consumption has stopped: the event it runs still finishes
			// and is settled.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			var handled Delivery
			testQueue(js).run(ctx, d, func(ctx context.Context, got Delivery) Outcome {
				if ctx.Err() != nil {
					t.Errorf("the handler's context is done: %v", ctx.Err())
				}
				handled = got
				return tc.out
			})
			if handled.RequestID != "req-1" || handled.Attempt != 2 {
				t.Errorf("handled %+v", handled)
			}
			if !slices.Equal(msg.calls, tc.calls) {
				t.Errorf("the delivery got %q, want %q", msg.calls, tc.calls)
			}
			if stored := len(js.published) == 1 && js.published[0].Subject == "nimbus.dead.orders" && string(js.published[0].Data) == "rec"; stored != tc.deadStore || len(js.published) > 1 {
				t.Errorf("dead letters published %v, want one: %v", js.published, tc.deadStore)
			}
		})
	}
}

// The streams keep an event no longer than any function may let it wait,
// with an hour's margin, refuse new events when full, and keep dead
// letters two weeks.
func TestStreamConfigs(t *testing.T) {
	if MaxEventAge != 6*time.Hour {
		t.Errorf("MaxEventAge %v, want Lambda's largest maximum event age, 6h", MaxEventAge)
	}
	events, dead := streamConfigs(Options{})
	if events.Name != EventsStream || !slices.Equal(events.Subjects, []string{"nimbus.events.>"}) ||
		events.Retention != jetstream.WorkQueuePolicy || events.Storage != jetstream.FileStorage {
		t.Errorf("events stream %+v", events)
	}
	if events.MaxAge != MaxEventAge+time.Hour {
		t.Errorf("events kept %v, want MaxEventAge and an hour", events.MaxAge)
	}
	if events.Discard != jetstream.DiscardNew {
		t.Errorf("a full events stream discards %v, want new events (stored ones are never dropped)", events.Discard)
	}
	if events.Duplicates != 2*time.Minute || !events.AllowDirect {
		t.Errorf("events deduplicate over %v (direct gets %v)", events.Duplicates, events.AllowDirect)
	}
	if events.Replicas != 1 || dead.Replicas != 1 || events.MaxBytes != 1<<30 {
		t.Errorf("defaults: replicas %d/%d, max bytes %d; want 1 and 1 GiB", events.Replicas, dead.Replicas, events.MaxBytes)
	}
	if dead.Name != DeadStream || !slices.Equal(dead.Subjects, []string{"nimbus.dead.>"}) ||
		dead.Retention != jetstream.LimitsPolicy || dead.MaxAge != 14*24*time.Hour || dead.Storage != jetstream.FileStorage {
		t.Errorf("dead-letter stream %+v", dead)
	}

	events, dead = streamConfigs(Options{Replicas: 3, MaxBytes: 64 << 20})
	if events.Replicas != 3 || dead.Replicas != 3 || events.MaxBytes != 64<<20 {
		t.Errorf("replicas %d/%d, max bytes %d; want 3 and 64 MiB", events.Replicas, dead.Replicas, events.MaxBytes)
	}
}

// Every gateway shares one durable consumer per function: it hands out at
// most limit events at once, takes one back after ackWait without a sign
// of progress (a running invocation gives one every third of it), and
// never drops an event for its number of deliveries: the outcome decides.
func TestConsumerConfig(t *testing.T) {
	c := consumerConfig("orders", 4)
	if c.Durable != "nimbus-events-orders" || c.FilterSubject != "nimbus.events.orders" {
		t.Errorf("consumer %s on %s", c.Durable, c.FilterSubject)
	}
	if c.AckPolicy != jetstream.AckExplicitPolicy || c.AckWait != 30*time.Second || c.MaxAckPending != 4 {
		t.Errorf("ack policy %v, wait %v, pending %d", c.AckPolicy, c.AckWait, c.MaxAckPending)
	}
	if c.MaxDeliver != -1 || c.DeliverPolicy != jetstream.DeliverAllPolicy {
		t.Errorf("max deliver %d, deliver policy %v; want unlimited, all", c.MaxDeliver, c.DeliverPolicy)
	}
	if progress := ackWait / 3; progress >= ackWait || progress <= 0 {
		t.Errorf("progress every %v with an ack wait of %v", progress, ackWait)
	}
}

// Every gateway signs the events it stores; an event anyone else publishes
// on a function's subject (reaching NATS directly, or through a cluster
// route), or one altered in the stream, does not verify and never runs.
func TestEventsRunOnlyWithTheGatewaysSignature(t *testing.T) {
	key := []byte("the gateways' shared signing key")
	q := &Queue{key: key, log: slog.New(slog.DiscardHandler)}
	ev := Event{Function: "orders", Qualifier: "live", RequestID: "req-1", Caller: "access key NIMB1", Payload: []byte(`{"id":1}`)}
	read := func(msg *nats.Msg) (Delivery, string) {
		t.Helper()
		d, err := delivery(ev.Function, &fakeMsg{data: msg.Data, headers: msg.Header, md: &jetstream.MsgMetadata{NumDelivered: 1}})
		if err != nil {
			t.Fatal(err)
		}
		return d, msg.Header.Get(HeaderSignature)
	}
	if d, sig := read(eventMsg(ev, key)); q.verify(d, sig) != nil {
		t.Fatal("an event this queue stored does not verify")
	}
	forged := eventMsg(ev, nil) // no signature at all
	if d, sig := read(forged); !errors.Is(q.verify(d, sig), errForged) {
		t.Error("an unsigned event verified")
	}
	other := eventMsg(ev, []byte("another key"))
	if d, sig := read(other); !errors.Is(q.verify(d, sig), errForged) {
		t.Error("an event signed with another key verified")
	}
	for name, change := range map[string]func(*nats.Msg){
		"payload":   func(m *nats.Msg) { m.Data = []byte(`{"id":2}`) },
		"qualifier": func(m *nats.Msg) { m.Header.Set(HeaderQualifier, "1") },
		"caller":    func(m *nats.Msg) { m.Header.Set(HeaderCaller, "operator") },
	} {
		msg := eventMsg(ev, key)
		change(msg)
		if d, sig := read(msg); !errors.Is(q.verify(d, sig), errForged) {
			t.Errorf("an event whose %s changed after it was signed verified", name)
		}
	}
	// The same event on another function's subject (a replay).
	msg := eventMsg(ev, key)
	d, err := delivery("billing", &fakeMsg{data: msg.Data, headers: msg.Header, md: &jetstream.MsgMetadata{NumDelivered: 1}})
	if err != nil || !errors.Is(q.verify(d, msg.Header.Get(HeaderSignature)), errForged) {
		t.Error("an event replayed on another function's subject verified")
	}
}
