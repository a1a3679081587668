// Package sources consumes the event sources (nimbus_event_source): NATS
// JetStream streams and RabbitMQ queues, with Lambda's batch semantics
// (runtime/eventsource batches and settles). Every gateway consumes every
// enabled source and invokes its function through an Invoker; it also
// serves the provider's preparation and removal of a source's consumer.
package sources

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"
	"github.com/nats-io/nats.go"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/backoff"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/auth"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/eventq"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/eventsource"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/invoke"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/metering"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/refusal"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/registry"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/workers"
)

// Event sources (nimbus_event_source): every gateway consumes every
// enabled source (runtime/eventsource does the batching and settling) and
// invokes its function with the batches. The provider prepares a source
// through this gateway before it writes the record (PUT
// /v1/event-sources/{name}), so the broker's refusal reaches the apply
// and nothing is half-created; it removes the NATS consumer the same way
// once the record is gone.

// Variables reads Nomad Variables: a RabbitMQ source's credentials.
type Variables interface {
	Read(path string, q *nomadapi.QueryOptions) (*nomadapi.Variable, *nomadapi.QueryMeta, error)
}

// Runner runs one worker per enabled event source.
type Runner struct {
	invoker  Invoker
	failures Failures
	auth     *auth.Authenticator
	metrics  *metering.Metrics
	log      *slog.Logger
	nats     *nats.Conn
	vars     Variables
	// slots bound each source's batches across every gateway; nil (no
	// NATS) bounds them in each gateway only.
	slots   *eventsource.Slots
	workers *workers.Set[kvstore.EventSource]
}

type sourceWorker = workers.Worker[kvstore.EventSource]

// Invoker runs an invocation through the gateway's chain.
type Invoker interface {
	Run(ctx context.Context, c *auth.Caller, target string, payload []byte, tail bool) *invoke.Invocation
}

// Failures takes the records whose retries are spent: to the source's
// on_failure destination, else to its dead letters.
type Failures interface {
	Deliver(ctx context.Context, to kvstore.Destination, rec []byte) error
	Durable() bool
	StoreSourceDeadLetter(ctx context.Context, source, id string, rec []byte) error
}

// Options wire the event sources.
type Options struct {
	Invoker  Invoker
	Failures Failures
	Auth     *auth.Authenticator
	Metrics  *metering.Metrics
	Log      *slog.Logger
	// NATS is the connection sources of type nats consume through; nil:
	// no NATS sources.
	NATS *nats.Conn
	// Variables reads RabbitMQ sources' credentials.
	Variables Variables
	// Slots bound each source's batches across every gateway (in NATS);
	// nil bounds them in this gateway only.
	Slots *eventsource.Slots
}

// New returns the runner.
func New(o Options) *Runner {
	return &Runner{invoker: o.Invoker, failures: o.Failures, auth: o.Auth, metrics: o.Metrics, log: o.Log,
		nats: o.NATS, vars: o.Variables, slots: o.Slots, workers: workers.New[kvstore.EventSource]()}
}

// SyncPairs starts, restarts and stops workers to match a listing of the
// source records.
func (s *Runner) SyncPairs(ctx context.Context, pairs consulapi.KVPairs) {
	s.sync(ctx, registry.Decode(pairs, kvstore.DecodeEventSource, func(at string, src kvstore.EventSource) (string, error) {
		return registry.Keyed(kvstore.EventSourceKey, src.Name, at)
	}, s.log, "event source record"))
}

// sync starts, restarts and stops workers to match the source records.
func (s *Runner) sync(ctx context.Context, defs map[string]kvstore.EventSource) {
	s.workers.Sync(ctx, defs, func(def kvstore.EventSource) bool { return def.Enabled }, s.work)
}

// work consumes the source until ctx ends, connecting again after a
// failure.
func (s *Runner) work(ctx context.Context, w *sourceWorker) {
	def := w.Def
	log := s.log.With("event_source", def.Name, "function", def.Function)
	h := s.handler(def, log)
	for retry := backoff.Slow.Start(); ctx.Err() == nil; {
		started := time.Now()
		w.Problem.Store(nil)
		var err error
		switch {
		case def.NATS != nil && s.nats == nil:
			err = errors.New("this gateway has no NATS (set NIMBUS_GATEWAY_NATS_URL), so it cannot consume a JetStream stream")
		case def.NATS != nil:
			log.Info("consuming the JetStream stream", "stream", def.NATS.Stream, "consumer", eventsource.NATSConsumer(def.Name))
			err = eventsource.ConsumeNATS(ctx, s.nats, def, h, s.slots, log)
		case def.RabbitMQ != nil:
			var creds eventsource.Credentials
			if creds, err = s.credentials(def.Name); err == nil {
				log.Info("consuming the RabbitMQ queue", "queue", def.RabbitMQ.Queue)
				err = eventsource.ConsumeRabbitMQ(ctx, def, creds, h, s.slots, log)
			}
		default:
			err = errors.New("the record names no broker")
		}
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("the consumption stopped")
		}
		problem := err.Error()
		w.Problem.Store(&problem)
		if time.Since(started) > time.Minute {
			retry.Reset() // it consumed for a while: a new failure starts over
		}
		wait := retry.Next()
		log.Warn("event source is not consuming; trying again", "err", err, "in", wait)
		_ = backoff.Sleep(ctx, wait)
	}
}

// credentials reads a RabbitMQ source's Nomad Variable.
func (s *Runner) credentials(source string) (eventsource.Credentials, error) {
	path := kvstore.EventSourceVariable(source)
	if s.vars == nil {
		return eventsource.Credentials{}, errors.New("this gateway cannot read Nomad Variables")
	}
	v, _, err := s.vars.Read(path, nil)
	if err != nil {
		if errors.Is(err, nomadapi.ErrVariablePathNotFound) {
			return eventsource.Credentials{}, fmt.Errorf("the Nomad Variable %s does not exist: create it with items username and password (nomad var put %s username=… password=…)", path, path)
		}
		return eventsource.Credentials{}, fmt.Errorf("reading the Nomad Variable %s (the gateway's Nomad policy must allow reading nimbus/event-sources/*): %w", path, err)
	}
	c := eventsource.Credentials{Username: v.Items["username"], Password: v.Items["password"]}
	if c.Username == "" {
		return c, fmt.Errorf("the Nomad Variable %s has no item username: set items username and password", path)
	}
	return c, nil
}

// handler invokes the source's function with batches and stores records
// whose retries are spent.
func (s *Runner) handler(def kvstore.EventSource, log *slog.Logger) eventsource.Handler {
	return eventsource.Handler{
		Invoke: func(ctx context.Context, event []byte) eventsource.Result {
			return batchResult(s.invoker.Run(ctx, auth.Internal("event source "+def.Name), def.Function, event, false))
		},
		Failed: func(ctx context.Context, r eventsource.FailedRecord) error {
			return s.failed(ctx, def, r, log)
		},
		Settled: func(outcome string, n int) {
			s.metrics.SourceRecords.WithLabelValues(def.Name, outcome).Add(float64(n))
		},
	}
}

// batchResult reads what became of a batch: throttled, failed as a whole,
// or failed in part (Lambda's ReportBatchItemFailures answer).
func batchResult(inv *invoke.Invocation) eventsource.Result {
	switch {
	case inv.Refused != nil && (inv.Refused.Status == http.StatusTooManyRequests || inv.Refused.Status == http.StatusServiceUnavailable):
		return eventsource.Result{Throttled: true}
	case inv.Refused != nil:
		body, _ := json.Marshal(map[string]string{"errorType": inv.Refused.Type, "errorMessage": inv.Refused.Msg})
		return eventsource.Result{FailedAll: true, Failure: eventsource.Failure{StatusCode: inv.Refused.Status, FunctionError: inv.Refused.Type, Response: body,
			ExecutedVersion: inv.ExecutedVersion()}}
	case inv.Answer.FunctionFailed():
		return eventsource.Result{FailedAll: true, Failure: eventsource.Failure{StatusCode: http.StatusOK,
			FunctionError: inv.Answer.Header.Get(protocol.HeaderFunctionError), Response: eventq.OrNull(inv.Answer.Body), ExecutedVersion: inv.ExecutedVersion()}}
	}
	var partial struct {
		BatchItemFailures []struct {
			ItemIdentifier *string `json:"itemIdentifier"`
		} `json:"batchItemFailures"`
	}
	if json.Unmarshal(inv.Answer.Body, &partial) != nil || len(partial.BatchItemFailures) == 0 {
		return eventsource.Result{}
	}
	res := eventsource.Result{Failure: eventsource.Failure{StatusCode: http.StatusOK, Response: eventq.OrNull(inv.Answer.Body), ExecutedVersion: inv.ExecutedVersion()}}
	for _, f := range partial.BatchItemFailures {
		if f.ItemIdentifier == nil || *f.ItemIdentifier == "" {
			// As on Lambda: a failure without an identifier fails the batch.
			res.FailedAll = true
			continue
		}
		res.Failed = append(res.Failed, *f.ItemIdentifier)
	}
	return res
}

// failed sends a spent record to the source's on_failure destination, or
// to the dead letters (nimbus.dead.sources.<source>).
func (s *Runner) failed(ctx context.Context, def kvstore.EventSource, r eventsource.FailedRecord, log *slog.Logger) error {
	fields := eventq.LambdaRecord(r.ID, def.Function, "RetryAttemptsExhausted", r.Attempts)
	fields["responseContext"] = map[string]any{"statusCode": r.Failure.StatusCode, "executedVersion": cmp.Or(r.Failure.ExecutedVersion, model.Latest), "functionError": r.Failure.FunctionError}
	fields["responsePayload"] = r.Failure.Response
	fields["eventSource"] = map[string]any{"name": def.Name, "type": sourceType(def)}
	fields["record"] = r.Record
	rec, _ := json.Marshal(fields)
	if def.OnFailure != nil {
		err := s.failures.Deliver(ctx, *def.OnFailure, rec)
		if err == nil {
			return nil
		}
		log.Warn("cannot deliver a failed record to its on_failure destination; storing it as a dead letter", "record", r.ID, "err", err)
	}
	if !s.failures.Durable() {
		return errors.New("no dead-letter stream: this gateway has no NATS (NIMBUS_GATEWAY_NATS_URL)")
	}
	log.Warn("event source record stored as a dead letter", "record", r.ID, "attempts", r.Attempts, "dead_letters", eventq.DeadPrefix+eventq.SourceDeadLetters(def.Name))
	return s.failures.StoreSourceDeadLetter(ctx, def.Name, r.ID, rec)
}

func sourceType(def kvstore.EventSource) string {
	if def.RabbitMQ != nil {
		return "rabbitmq"
	}
	return "nats"
}

// state describes a source as this gateway runs it.
func (s *Runner) state(name string) (map[string]any, bool) {
	def, w, ok := s.workers.Get(name)
	if !ok {
		return nil, false
	}
	st := map[string]any{"name": def.Name, "function": def.Function, "type": sourceType(def), "enabled": def.Enabled, "state": "disabled"}
	if w != nil {
		st["state"] = "consuming"
		if p := w.Problem.Load(); p != nil {
			st["state"], st["problem"] = "failing", *p
		}
	}
	return st, true
}

// ServeSource describes a source (GET /v1/event-sources/{name}).
func (s *Runner) ServeSource(w http.ResponseWriter, r *http.Request) {
	if !s.auth.Allowed(w, r, (*auth.Caller).MayReadOperations) {
		return
	}
	st, ok := s.state(r.PathValue("name"))
	if !ok {
		refusal.Write(w, refusal.Native, refusal.New(http.StatusNotFound, "ResourceNotFoundException", "no event source "+r.PathValue("name")+" is known to this gateway"))
		return
	}
	refusal.WriteJSON(w, http.StatusOK, st)
}

// ServePrepare checks a source against its broker before the
// provider records it (PUT /v1/event-sources/{name}): for NATS it creates
// or updates the durable consumer; for RabbitMQ it logs in with the
// Variable's credentials and finds the queue. The deployer's key (one
// with upload_artifacts) may call it.
func (s *Runner) ServePrepare(w http.ResponseWriter, r *http.Request) {
	if !s.auth.Allowed(w, r, (*auth.Caller).MayUpload) {
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		refusal.Write(w, refusal.Native, refusal.New(http.StatusBadRequest, "InvalidRequestContentException", "cannot read the body: "+err.Error()))
		return
	}
	def, err := kvstore.DecodeEventSource(body)
	if err != nil || def.Name != r.PathValue("name") || (def.NATS == nil) == (def.RabbitMQ == nil) {
		refusal.Write(w, refusal.Native, refusal.New(http.StatusBadRequest, "InvalidRequestContentException", "the body must be the event source's record, with its name and exactly one of nats and rabbitmq"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	switch {
	case def.NATS != nil && s.nats == nil:
		err = errors.New("the gateway has no NATS (set NIMBUS_GATEWAY_NATS_URL), so it cannot consume a JetStream stream")
	case def.NATS != nil:
		err = eventsource.PrepareNATS(ctx, s.nats, def)
	default:
		var creds eventsource.Credentials
		if creds, err = s.credentials(def.Name); err == nil {
			err = eventsource.PrepareRabbitMQ(ctx, def, creds)
		}
	}
	if err != nil {
		refusal.Write(w, refusal.Native, refusal.New(http.StatusUnprocessableEntity, "EventSourceRefused", err.Error()))
		return
	}
	refusal.WriteJSON(w, http.StatusOK, map[string]string{"name": def.Name, "status": "prepared"})
}

// ServeDelete removes a NATS source's durable consumer once the
// provider has deleted its record (DELETE
// /v1/event-sources/{name}?stream=S).
func (s *Runner) ServeDelete(w http.ResponseWriter, r *http.Request) {
	if !s.auth.Allowed(w, r, (*auth.Caller).MayUpload) {
		return
	}
	stream := r.URL.Query().Get("stream")
	if stream != "" {
		if s.nats == nil {
			refusal.Write(w, refusal.Native, refusal.New(http.StatusServiceUnavailable, "ServiceException", "the gateway has no NATS, so it cannot remove the consumer"))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
		defer cancel()
		if err := eventsource.DeleteNATS(ctx, s.nats, stream, r.PathValue("name")); err != nil {
			refusal.Write(w, refusal.Native, refusal.New(http.StatusBadGateway, "EventSourceRefused", "JetStream refused to delete the consumer: "+err.Error()))
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}
