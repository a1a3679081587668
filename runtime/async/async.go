// Package async runs Lambda's asynchronous (Event) invocations: it
// accepts them (stored in NATS JetStream through runtime/eventq, or held
// in memory by a gateway without NATS), consumes each function's stored
// events, retries them as the function's config says, and delivers the
// destination records and dead letters. It invokes through an Invoker and
// knows nothing of HTTP front ends or pools' internals.
package async

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/watch"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/auth"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/eventq"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/instances"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/invoke"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/metering"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/refusal"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/registry"
)

// Asynchronous (Event) invocations, as Lambda runs them: the caller's 202
// comes once JetStream has stored the event (runtime/eventq), and the
// gateways that share the function's consumer run it, retrying a failed
// run as the function's config says (nimbus_function_event_invoke_config;
// Lambda's defaults: twice, for up to 6 hours). An event whose retries are
// spent, or that waited too long, goes as Lambda's destination record to
// its on_failure destination, else to the dead letters: the NIMBUS_DEAD
// stream, under nimbus.dead.<function>. No event is dropped silently.

// asyncRetries is how often an asynchronous invocation held in memory is
// retried after the function failed, as on Lambda.
const asyncRetries = kvstore.DefaultAsyncRetries

// retryDelay is the pause before the n-th retry.
func retryDelay(n int) time.Duration { return time.Duration(n) * time.Second }

// eventTooLarge refuses an asynchronous invocation over Lambda's limit.
func eventTooLarge(payload []byte) *refusal.Error {
	if len(payload) <= eventq.MaxEventBytes {
		return nil
	}
	return refusal.New(http.StatusRequestEntityTooLarge, "RequestEntityTooLargeException",
		fmt.Sprintf("the payload is %d bytes; an asynchronous invocation's payload is at most 1 MB (1048576 bytes), as on Lambda: invoke synchronously for up to 6 MB", len(payload)))
}

// Accept takes an Event invocation (invoke.Events): stored in NATS
// JetStream, or, in a gateway without NATS, held in memory, run in the
// background with two retries and lost if the gateway stops; at most 1024
// wait at a time, beyond which the caller gets 429.
func (g *Service) Accept(ctx context.Context, c *auth.Caller, name, qualifier string, payload []byte, release func()) *refusal.Error {
	if bad := eventTooLarge(payload); bad != nil {
		release()
		return bad
	}
	if g.events != nil {
		defer release()
		return g.enqueue(ctx, c, name, qualifier, payload)
	}
	return g.holdInMemory(c, name, qualifier, payload, release)
}

// enqueue stores an Event invocation, or refuses it: never a 202 for an
// event that may be lost.
func (g *Service) enqueue(ctx context.Context, c *auth.Caller, name, qualifier string, payload []byte) *refusal.Error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := g.events.Enqueue(ctx, eventq.Event{Function: name, Qualifier: qualifier, RequestID: protocol.NewRequestID(), Caller: c.Name(), Payload: payload})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, eventq.ErrFull):
		return refusal.New(http.StatusTooManyRequests, "TooManyRequestsException", "the asynchronous invocation queue is full; retry later: "+err.Error())
	default:
		g.log.Error("cannot store an asynchronous invocation", "function", name, "err", err)
		return refusal.New(http.StatusServiceUnavailable, "ServiceException", "the asynchronous invocation was not stored (NATS JetStream did not acknowledge it); retry: "+err.Error())
	}
}

// holdInMemory runs an Event invocation in the background, retrying it
// asyncRetries times, when the gateway has no NATS: it is lost if the
// gateway stops. At most 1024 wait at a time; the event keeps its share of
// the body budget until it is done (release).
func (g *Service) holdInMemory(c *auth.Caller, name, qualifier string, payload []byte, release func()) *refusal.Error {
	select {
	case g.held <- struct{}{}:
	default:
		release()
		return refusal.New(http.StatusTooManyRequests, "TooManyRequestsException", "too many asynchronous invocations are queued; retry later")
	}
	// The queued event keeps its share of the body budget until it is done.
	go func() {
		defer func() { <-g.held; release() }()
		for attempt := 0; attempt <= asyncRetries; attempt++ {
			if attempt > 0 {
				time.Sleep(time.Duration(attempt) * time.Second)
			}
			// Authorized when accepted; a key disabled since does not
			// lose the event.
			inv := g.invoker.Run(context.Background(), auth.Internal("event of "+c.Name()), model.Qualify(name, qualifier), payload, false)
			if inv.Refused == nil && !inv.Answer.FunctionFailed() {
				return
			}
		}
		g.log.Warn("asynchronous invocation failed after its retries", "function", name)
	}()
	return nil
}

// Consume runs the function's stored events until the function
// goes, at most max_instances × concurrency at once; a change of either
// restarts the consumption with the new bound (events in flight finish).
func (g *Service) Consume(p *instances.Pool) {
	go g.reportQueue(p)
	for p.Context().Err() == nil {
		limit := eventLimit(p.Function())
		ctx, cancel := context.WithCancel(p.Context())
		stop := watch.Every(5*time.Second, func() {
			if eventLimit(p.Function()) != limit {
				cancel()
			}
		})
		err := g.events.Consume(ctx, p.Function().Key(), limit, func(ctx context.Context, d eventq.Delivery) eventq.Outcome {
			return g.runEvent(ctx, d)
		})
		stop()
		cancel()
		if err != nil && p.Context().Err() == nil {
			g.log.Warn("cannot consume asynchronous invocations; retrying", "function", p.Function().Key(), "err", err)
			watch.Sleep(p.Context(), 2*time.Second)
		}
	}
}

// eventLimit bounds a function's events in flight across every gateway.
func eventLimit(f *registry.Function) int { return max(f.MaxInstances, 1) * max(f.Concurrency, 1) }

// reportQueue keeps nimbus_async_queued current.
func (g *Service) reportQueue(p *instances.Pool) {
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-p.Context().Done():
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(p.Context(), 5*time.Second)
		d, err := g.events.Depth(ctx, p.Function().Key())
		cancel()
		if err == nil {
			g.metrics.Queued.WithLabelValues(p.Function().Key()).Set(float64(d.Queued))
		}
	}
}

// State describes the function's queue for GET /v1/functions/{name}.
func (g *Service) State(ctx context.Context, name string) map[string]any {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	d, err := g.events.Depth(ctx, name)
	if err != nil {
		return map[string]any{"error": err.Error()}
	}
	return map[string]any{"queued": d.Queued, "running": d.Running, "oldest_age_seconds": d.Oldest.Seconds()}
}

// runEvent runs one delivery and says what becomes of it, by the
// function's config (nimbus_function_event_invoke_config, or Lambda's
// defaults).
func (g *Service) runEvent(ctx context.Context, d eventq.Delivery) eventq.Outcome {
	cfg := g.registry.Async(d.Function)
	age := time.Since(d.Stored)
	g.metrics.EventAge.Observe(age.Seconds())
	if age > time.Duration(cfg.MaxEventAgeSeconds)*time.Second {
		return g.failed(ctx, d, cfg, conditionExpired, nil)
	}
	// Authorized when stored; a key disabled since does not lose the event.
	inv := g.invoker.Run(ctx, auth.Internal("event of "+d.Caller), model.Qualify(d.Function, d.Qualifier), d.Payload, false)
	switch {
	case inv.Refused == nil && !inv.Answer.FunctionFailed():
		if cfg.OnSuccess != nil {
			if err := g.Deliver(ctx, *cfg.OnSuccess, destinationRecord(d, conditionSuccess, inv)); err != nil {
				g.log.Warn("cannot deliver an asynchronous invocation's success record to its on_success destination", "function", d.Function, "request_id", d.RequestID, "err", err)
			}
		}
		return eventq.Outcome{}
	case inv.Refused != nil && (inv.Refused.Status == http.StatusTooManyRequests || inv.Refused.Status == http.StatusServiceUnavailable):
		// Throttled or Nomad unavailable: not the event's fault, retried
		// until it is too old, as Lambda retries throttles.
		g.metrics.Retries.WithLabelValues(d.Function).Inc()
		return eventq.Outcome{Retry: true, Delay: retryDelay(min(d.Attempt, 30))}
	case d.Attempt <= cfg.MaxRetries:
		g.metrics.Retries.WithLabelValues(d.Function).Inc()
		return eventq.Outcome{Retry: true, Delay: retryDelay(d.Attempt)}
	}
	return g.failed(ctx, d, cfg, conditionRetriesExhausted, inv)
}

// failed hands a spent or expired event's record to its on_failure
// destination, or to the dead letters when it has none or it cannot be
// delivered: never dropped.
func (g *Service) failed(ctx context.Context, d eventq.Delivery, cfg kvstore.AsyncConfig, condition string, inv *invoke.Invocation) eventq.Outcome {
	rec := destinationRecord(d, condition, inv)
	if cfg.OnFailure != nil {
		err := g.Deliver(ctx, *cfg.OnFailure, rec)
		if err == nil {
			return eventq.Outcome{}
		}
		g.log.Warn("cannot deliver a failed asynchronous invocation to its on_failure destination; stored as a dead letter", "function", d.Function, "request_id", d.RequestID, "err", err)
	}
	g.log.Warn("asynchronous invocation stored as a dead letter", "function", d.Function, "request_id", d.RequestID,
		"condition", condition, "attempts", d.Attempt, "dead_letters", eventq.DeadPrefix+d.Function)
	g.metrics.DeadLetters.WithLabelValues(d.Function, condition).Inc()
	return eventq.Outcome{DeadLetter: rec}
}

// Deliver sends a destination record: an Event invocation of a function,
// or a message on a NATS subject that a stream captures.
func (g *Service) Deliver(ctx context.Context, to kvstore.Destination, rec []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if to.Function != "" {
		if _, ok := g.registry.Get(to.Function); !ok {
			return fmt.Errorf("the destination function %s does not exist", to.Function)
		}
		if len(rec) > eventq.MaxEventBytes {
			return fmt.Errorf("the record is %d bytes, over the 1 MB of an asynchronous invocation", len(rec))
		}
		return g.events.Enqueue(ctx, eventq.Event{Function: to.Function, RequestID: protocol.NewRequestID(), Caller: "a destination", Payload: rec})
	}
	return g.events.Publish(ctx, to.NATSSubject, rec)
}

// Lambda's conditions of a destination record.
const (
	conditionSuccess          = "Success"
	conditionRetriesExhausted = "RetriesExhausted"
	conditionExpired          = "EventAgeExceeded"
)

// destinationRecord is Lambda's record of an asynchronous invocation that
// went to a destination; inv is its last run (nil when it never ran).
func destinationRecord(d eventq.Delivery, condition string, inv *invoke.Invocation) []byte {
	rec := eventq.LambdaRecord(d.RequestID, model.Qualify(d.Function, d.Qualifier), condition, d.Attempt)
	rec["requestPayload"] = json.RawMessage(eventq.OrNull(d.Payload))
	if inv != nil {
		resp := map[string]any{"executedVersion": cmp.Or(inv.ExecutedVersion(), model.Latest)}
		switch {
		case inv.Refused != nil:
			resp["statusCode"] = inv.Refused.Status
			resp["functionError"] = inv.Refused.Type
			rec["responsePayload"] = map[string]string{"errorType": inv.Refused.Type, "errorMessage": inv.Refused.Msg}
		case inv.Answer != nil:
			resp["statusCode"] = http.StatusOK
			if fe := inv.Answer.Header.Get(protocol.HeaderFunctionError); fe != "" {
				resp["functionError"] = fe
			}
			rec["responsePayload"] = json.RawMessage(eventq.OrNull(inv.Answer.Body))
		}
		rec["responseContext"] = resp
	}
	b, _ := json.Marshal(rec)
	return b
}

// Invoker runs an invocation through the gateway's chain.
type Invoker interface {
	Run(ctx context.Context, c *auth.Caller, target string, payload []byte, tail bool) *invoke.Invocation
}

// Registry is where the functions and their asynchronous invocation
// configs are.
type Registry interface {
	Async(function string) kvstore.AsyncConfig
	Get(name string) (*registry.Function, bool)
}

// Options wire the asynchronous invocations.
type Options struct {
	// Events stores them durably (NATS JetStream); nil holds them in
	// memory, where a restart loses them.
	Events   *eventq.Queue
	Invoker  Invoker
	Registry Registry
	Metrics  *metering.Metrics
	Log      *slog.Logger
}

// Service runs the asynchronous invocations.
type Service struct {
	events   *eventq.Queue
	invoker  Invoker
	registry Registry
	metrics  *metering.Metrics
	log      *slog.Logger
	held     chan struct{} // slots for invocations held in memory
}

// New returns the service.
func New(o Options) *Service {
	return &Service{events: o.Events, invoker: o.Invoker, registry: o.Registry, metrics: o.Metrics, log: o.Log, held: make(chan struct{}, 1024)}
}

// Durable reports whether accepted events are stored in JetStream.
func (g *Service) Durable() bool { return g.events != nil }

// StoreSourceDeadLetter keeps an event source's record whose retries are
// spent, in the dead letters of the source.
func (g *Service) StoreSourceDeadLetter(ctx context.Context, source, id string, rec []byte) error {
	if g.events == nil {
		return errors.New("no dead-letter stream: this gateway has no NATS (NIMBUS_GATEWAY_NATS_URL)")
	}
	return g.events.StoreDeadLetter(ctx, eventq.SourceDeadLetters(source), id, rec)
}
