// Package eventq keeps asynchronous (Event) invocations durable in NATS
// JetStream: an event is acknowledged to its caller only once JetStream has
// stored it, and it leaves the queue only when a gateway has run it, or
// dead-lettered it. Every gateway shares one durable pull consumer per
// function, so a gateway that dies mid-invocation leaves its events to be
// redelivered to another, or to itself once restarted.
//
// The package is the mechanism (store, deliver, extend, acknowledge,
// dead-letter); the gateway decides the policy (retries, event age, the
// record a dead letter carries).
package eventq

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/watch"
)

// The streams, their subjects and the consumers' names. Operators grant the
// gateway's NATS user exactly these (docs/guides/platform.md).
const (
	EventsStream   = "NIMBUS_EVENTS"
	DeadStream     = "NIMBUS_DEAD"
	EventsPrefix   = "nimbus.events."
	DeadPrefix     = "nimbus.dead."
	ConsumerPrefix = "nimbus-events-"
)

// Headers an event carries.
const (
	HeaderRequestID = "Nimbus-Request-Id"
	HeaderCaller    = "Nimbus-Caller"
	// HeaderQualifier names the version or alias the caller invoked, if
	// any: events are stored and consumed per function, and run the
	// qualifier that was asked for.
	HeaderQualifier = "Nimbus-Qualifier"
)

// MaxEventBytes is the largest event accepted: Lambda's limit for an
// asynchronous invocation's payload.
const MaxEventBytes = 1 << 20

// MaxEventAge bounds how long any event may wait (Lambda's largest
// maximum event age); the events stream keeps nothing longer, with an
// hour's margin for an event being run when it expires.
const MaxEventAge = 6 * time.Hour

// ackWait is how long a delivered event stays with its gateway without a
// sign of progress; a running invocation extends it every third of it.
const ackWait = 30 * time.Second

// ErrFull means the events stream is at its size limit: the caller should
// retry later (429), nothing was stored.
var ErrFull = errors.New("the event queue is full")

// Options configure the queue.
type Options struct {
	// Replicas of each stream: 1 for a single server, 3 for the cluster
	// examples/platform ships.
	Replicas int
	// MaxBytes bounds the events stream (0: 1 GiB).
	MaxBytes int64
	Logger   *slog.Logger
	// SigningKey, the key every gateway shares, signs each event stored
	// and is checked on each event delivered: an event that no gateway
	// stored (published by anyone else who reaches NATS) never runs.
	SigningKey []byte
}

// Queue is the events stream and its consumers.
type Queue struct {
	js     jetstream.JetStream
	events jetstream.Stream
	log    *slog.Logger
	key    []byte

	mu        sync.Mutex
	consumers map[string]jetstream.Consumer // by function
}

// Open makes sure both streams exist with this version's settings.
func Open(ctx context.Context, nc *nats.Conn, opts Options) (*Queue, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	eventsConfig, deadConfig := streamConfigs(opts)
	events, err := js.CreateOrUpdateStream(ctx, eventsConfig)
	if err != nil {
		return nil, fmt.Errorf("creating or updating the JetStream stream %s: %w", EventsStream, err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, deadConfig); err != nil {
		return nil, fmt.Errorf("creating or updating the JetStream stream %s: %w", DeadStream, err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Queue{js: js, events: events, log: log, key: opts.SigningKey, consumers: map[string]jetstream.Consumer{}}, nil
}

// streamConfigs are the settings of the events stream and of the
// dead-letter stream.
func streamConfigs(opts Options) (events, dead jetstream.StreamConfig) {
	replicas := max(opts.Replicas, 1)
	maxBytes := opts.MaxBytes
	if maxBytes == 0 {
		maxBytes = 1 << 30
	}
	events = jetstream.StreamConfig{
		Name:        EventsStream,
		Description: "Nimbus asynchronous invocations waiting to run, one subject per function",
		Subjects:    []string{EventsPrefix + ">"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		MaxAge:      MaxEventAge + time.Hour,
		MaxBytes:    maxBytes,
		// A full queue refuses new events (the caller gets 429) rather than
		// dropping stored ones.
		Discard:     jetstream.DiscardNew,
		Duplicates:  2 * time.Minute,
		AllowDirect: true,
	}
	dead = jetstream.StreamConfig{
		Name:        DeadStream,
		Description: "Nimbus asynchronous invocations that failed their retries or expired, as Lambda destination records",
		Subjects:    []string{DeadPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		MaxAge:      14 * 24 * time.Hour,
	}
	return events, dead
}

// Event is one asynchronous invocation to store.
type Event struct {
	Function  string
	Qualifier string // a version or an alias; empty for $LATEST
	RequestID string // also JetStream's deduplication id
	Caller    string
	Payload   []byte
}

// Enqueue stores the event and returns once JetStream acknowledged it.
func (q *Queue) Enqueue(ctx context.Context, ev Event) error {
	_, err := q.js.PublishMsg(ctx, eventMsg(ev, q.key), jetstream.WithMsgID(ev.RequestID), jetstream.WithExpectStream(EventsStream))
	var apiErr *jetstream.APIError
	// 10077: the stream refused to store it (its limits are reached, and
	// it discards new events rather than stored ones).
	if errors.As(err, &apiErr) && apiErr.ErrorCode == 10077 {
		return fmt.Errorf("%w: %s", ErrFull, apiErr.Description)
	}
	return err
}

// eventMsg is the event as stored: on the function's subject, the payload
// as the data, the rest in headers (read back by delivery).
func eventMsg(ev Event, key []byte) *nats.Msg {
	msg := nats.NewMsg(EventsPrefix + ev.Function)
	msg.Data = ev.Payload
	msg.Header.Set(HeaderRequestID, ev.RequestID)
	msg.Header.Set(HeaderCaller, ev.Caller)
	if ev.Qualifier != "" {
		msg.Header.Set(HeaderQualifier, ev.Qualifier)
	}
	if len(key) > 0 {
		msg.Header.Set(HeaderSignature, ev.signature(key))
	}
	return msg
}

// HeaderSignature carries the event's signature (Event.signature).
const HeaderSignature = "Nimbus-Signature"

// signature is an HMAC of everything that decides what an event runs and
// as whom: its function, qualifier, request id, caller and payload.
func (ev Event) signature(key []byte) string {
	m := hmac.New(sha256.New, key)
	payload := sha256.Sum256(ev.Payload)
	fmt.Fprintf(m, "nimbus-event\n%s\n%s\n%s\n%s\n%x", ev.Function, ev.Qualifier, ev.RequestID, ev.Caller, payload)
	return hex.EncodeToString(m.Sum(nil))
}

// errForged is an event whose signature does not hold.
var errForged = errors.New("its signature does not hold: no gateway stored it (it was published to NATS by someone else, or stored by a gateway with another signing key)")

// verify checks a delivered event's signature, when the queue signs.
func (q *Queue) verify(d Delivery, sig string) error {
	if len(q.key) == 0 {
		return nil
	}
	if !hmac.Equal([]byte(d.signature(q.key)), []byte(sig)) {
		return errForged
	}
	return nil
}

// Publish stores data under a subject of another stream, as a destination
// record: it succeeds only once a stream captured it.
func (q *Queue) Publish(ctx context.Context, subject string, data []byte) error {
	_, err := q.js.Publish(ctx, subject, data)
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("no JetStream stream captures the subject %s: create one that does (for example with subjects [\"%s>\"]) to receive destination records", subject, "nimbus.destinations.")
	}
	return err
}

// StoreDeadLetter stores a record in the dead-letter stream under
// nimbus.dead.<key>, once per id (a retried store is not kept twice).
func (q *Queue) StoreDeadLetter(ctx context.Context, key, id string, record []byte) error {
	dead := nats.NewMsg(DeadPrefix + key)
	dead.Data = record
	dead.Header.Set(HeaderRequestID, id)
	_, err := q.js.PublishMsg(ctx, dead, jetstream.WithMsgID("dead-"+key+"-"+id), jetstream.WithExpectStream(DeadStream))
	return err
}

// SourceDeadLetters is the key under which an event source's failed
// records are stored: subject nimbus.dead.sources.<source>, apart from
// any function's.
func SourceDeadLetters(source string) string { return "sources." + source }

// Delivery is one event handed to a gateway to run.
type Delivery struct {
	Event
	// Attempt counts deliveries, this one included: a delivery that a
	// gateway's death interrupted counts too.
	Attempt int
	// Stored is when JetStream stored the event.
	Stored time.Time
	msg    jetstream.Msg
}

// Outcome is what became of a delivery.
type Outcome struct {
	// Retry after the delay; otherwise the event is done.
	Retry bool
	Delay time.Duration
	// DeadLetter, when set, is stored in the dead-letter stream before the
	// event leaves the queue.
	DeadLetter []byte
}

// Consume runs the function's events with handle, at most limit at a time
// across every gateway sharing the consumer, until ctx ends.
func (q *Queue) Consume(ctx context.Context, function string, limit int, handle func(context.Context, Delivery) Outcome) error {
	limit = max(limit, 1)
	cons, err := q.js.CreateOrUpdateConsumer(ctx, EventsStream, consumerConfig(function, limit))
	if err != nil {
		return fmt.Errorf("creating the JetStream consumer of function %s: %w", function, err)
	}
	q.mu.Lock()
	q.consumers[function] = cons
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		delete(q.consumers, function)
		q.mu.Unlock()
	}()

	slots := make(chan struct{}, limit)
	var running sync.WaitGroup
	defer running.Wait()
	for ctx.Err() == nil {
		free := limit - len(slots)
		if free == 0 {
			// Wait for a slot.
			select {
			case slots <- struct{}{}:
				<-slots
			case <-ctx.Done():
			}
			continue
		}
		batch, err := cons.Fetch(free, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			if ctx.Err() == nil {
				q.log.Warn("cannot fetch asynchronous invocations; retrying", "function", function, "err", err)
				watch.Sleep(ctx, time.Second)
			}
			continue
		}
		for msg := range batch.Messages() {
			d, err := delivery(function, msg)
			if err != nil {
				q.log.Error("an event without JetStream metadata cannot be run; terminating it", "function", function, "err", err)
				_ = msg.Term()
				continue
			}
			if err := q.verify(d, msg.Headers().Get(HeaderSignature)); err != nil {
				q.log.Error("an event that no gateway stored is not run; terminating it", "function", function,
					"request_id", d.RequestID, "caller", d.Caller, "err", err)
				_ = msg.Term()
				continue
			}
			slots <- struct{}{}
			running.Add(1)
			go func() {
				defer func() { <-slots; running.Done() }()
				q.run(ctx, d, handle)
			}()
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
			q.log.Warn("fetching asynchronous invocations failed; retrying", "function", function, "err", err)
			watch.Sleep(ctx, time.Second)
		}
	}
	return nil
}

// consumerConfig is the durable consumer every gateway shares for a
// function: at most limit events out at once, each acknowledged
// explicitly, redelivered after ackWait without a sign of progress and
// never given up by count (the handler's outcome ends an event).
func consumerConfig(function string, limit int) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       ConsumerPrefix + function,
		Description:   "Nimbus gateways running the asynchronous invocations of function " + function,
		FilterSubject: EventsPrefix + function,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxAckPending: limit,
		MaxDeliver:    -1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// delivery reads a delivered event back (eventMsg stored it) with
// JetStream's count of deliveries and time of storage.
func delivery(function string, msg jetstream.Msg) (Delivery, error) {
	md, err := msg.Metadata()
	if err != nil {
		return Delivery{}, err
	}
	return Delivery{
		Event: Event{
			Function: function, Qualifier: msg.Headers().Get(HeaderQualifier), Payload: msg.Data(),
			RequestID: msg.Headers().Get(HeaderRequestID), Caller: msg.Headers().Get(HeaderCaller),
		},
		Attempt: int(md.NumDelivered), Stored: md.Timestamp, msg: msg,
	}, nil
}

// run handles one delivery, keeping it with this gateway while it runs.
func (q *Queue) run(ctx context.Context, d Delivery, handle func(context.Context, Delivery) Outcome) {
	stop := watch.Every(ackWait/3, func() { _ = d.msg.InProgress() })
	// A consumption that stops (the function's bound changed) lets the
	// events it runs finish.
	out := handle(context.WithoutCancel(ctx), d)
	stop()
	switch {
	case out.Retry:
		if err := d.msg.NakWithDelay(out.Delay); err != nil {
			q.log.Warn("cannot schedule an event's retry; JetStream redelivers it after its ack wait", "function", d.Function, "request_id", d.RequestID, "err", err)
		}
		return
	case out.DeadLetter != nil:
		pubCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err := q.StoreDeadLetter(pubCtx, d.Function, d.RequestID, out.DeadLetter)
		cancel()
		if err != nil {
			// Never drop it: leave it to be delivered again.
			q.log.Error("cannot store a dead letter; the event stays queued", "function", d.Function, "request_id", d.RequestID, "err", err)
			_ = d.msg.NakWithDelay(5 * time.Second)
			return
		}
	}
	// The ack is synchronous: the event leaves the queue only once
	// JetStream knows it is done.
	ackCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := d.msg.DoubleAck(ackCtx); err != nil {
		q.log.Warn("cannot acknowledge a finished event; it may run again", "function", d.Function, "request_id", d.RequestID, "err", err)
	}
}

// Depth is a function's queue: events waiting or running, and the age of
// the oldest.
type Depth struct {
	Queued  int           `json:"queued"`
	Running int           `json:"running"`
	Oldest  time.Duration `json:"-"`
}

// Depth reads the function's queue from its consumer.
func (q *Queue) Depth(ctx context.Context, function string) (Depth, error) {
	q.mu.Lock()
	cons, ok := q.consumers[function]
	q.mu.Unlock()
	if !ok {
		return Depth{}, fmt.Errorf("no consumer of function %s is running in this gateway", function)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return Depth{}, err
	}
	d := Depth{Queued: int(info.NumPending) + info.NumAckPending, Running: info.NumAckPending}
	if d.Queued > 0 {
		if m, err := q.events.GetMsg(ctx, info.AckFloor.Stream+1, jetstream.WithGetMsgSubject(EventsPrefix+function)); err == nil {
			d.Oldest = time.Since(m.Time)
		}
	}
	return d, nil
}
