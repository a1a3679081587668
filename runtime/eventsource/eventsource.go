// Package eventsource consumes broker-backed event sources
// (nimbus_event_source) with Lambda's batch semantics: it gathers a batch
// of up to batch_size records within the batching window, hands it to the
// function, acknowledges the records that succeeded, puts back the ones
// that failed for another attempt, and hands a record whose retries are
// spent to the caller's failure handling, so a poison message never blocks
// the source.
//
// Each broker (nats.go, rabbitmq.go) supplies its messages, its event shape
// and how a message is settled; the loop that batches and settles is
// written once, here. The gateway decides how a batch is invoked and where
// a failed record goes.
package eventsource

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/backoff"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/watch"
)

// message is one broker message of a batch.
type message interface {
	// id is the record's itemIdentifier in a partial batch failure.
	id() string
	// attempt counts the deliveries of the message that reached the
	// function, this one included.
	attempt() int
	// record is the message as the function sees it in the batch.
	record() any
	ack(ctx context.Context) error
	// retry puts the message back for another attempt after delay.
	retry(ctx context.Context, delay time.Duration) error
	// release gives the message back untried, counting no failure.
	release() error
	// keepAlive tells the broker the message is still being worked on.
	keepAlive()
}

// broker is one source's connection to its broker.
type broker interface {
	// next waits (briefly) for a first message, then gathers more, up to
	// size, for at most window; no message and no error means nothing
	// arrived yet.
	next(ctx context.Context, size int, window time.Duration) ([]message, error)
	// event is the function's event for a batch of records.
	event(records []any) []byte
}

// Result is what became of one invocation with a batch.
type Result struct {
	// Throttled means the function never ran the batch (the gateway
	// throttled it, or Nomad was unavailable): it is invoked again later,
	// and no attempt is counted.
	Throttled bool
	// FailedAll fails every record: the function returned an error, timed
	// out, or named a record that is not in the batch.
	FailedAll bool
	// Failed lists the itemIdentifiers of the records to retry (Lambda's
	// ReportBatchItemFailures); the rest succeeded.
	Failed []string
	// Failure describes the failure, for the failure records.
	Failure Failure
}

// Failure is how an invocation failed.
type Failure struct {
	StatusCode    int             `json:"statusCode"`
	FunctionError string          `json:"functionError,omitempty"`
	Response      json.RawMessage `json:"-"`
	// ExecutedVersion is the version that ran the batch ("" when none
	// did): a source on an alias runs the version the alias picks.
	ExecutedVersion string `json:"-"`
}

// FailedRecord is a record whose retries are spent.
type FailedRecord struct {
	ID       string
	Attempts int
	// Record is the record as the function saw it.
	Record  json.RawMessage
	Failure Failure
}

// Handler is what the gateway does with batches.
type Handler struct {
	// Invoke runs the function with a batch's event.
	Invoke func(ctx context.Context, event []byte) Result
	// Failed stores a record whose retries are spent (on_failure or the
	// dead letters); an error leaves the record in the source, to be
	// tried again.
	Failed func(ctx context.Context, r FailedRecord) error
	// Settled counts records by outcome: "succeeded", "retried" or
	// "failed".
	Settled func(outcome string, n int)
}

// Outcomes of a record, for Handler.Settled.
const (
	OutcomeSucceeded = "succeeded"
	OutcomeRetried   = "retried"
	OutcomeFailed    = "failed"
)

// keepAliveEvery is how often the messages of a running batch are marked
// in progress, well within their brokers' leases.
const keepAliveEvery = 10 * time.Second

// run consumes the source until ctx ends or the broker fails: each batch
// holds one of the source's MaxConcurrency slots, taken before its
// messages are. Batches in flight finish before it returns.
func run(ctx context.Context, src kvstore.EventSource, b broker, h Handler, slots slots, log *slog.Logger) error {
	var running sync.WaitGroup
	defer running.Wait()
	window := time.Duration(src.MaxBatchingWindowSeconds) * time.Second
	for {
		release, err := slots.acquire(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		msgs, err := b.next(ctx, max(src.BatchSize, 1), window)
		if err != nil || len(msgs) == 0 {
			release()
			if err != nil {
				return err
			}
			continue
		}
		running.Add(1)
		go func() {
			defer func() { release(); running.Done() }()
			runBatch(ctx, src, b, msgs, h, log)
		}()
	}
}

// runBatch invokes the function with one batch and settles each record.
func runBatch(ctx context.Context, src kvstore.EventSource, b broker, msgs []message, h Handler, log *slog.Logger) {
	defer watch.Every(keepAliveEvery, func() {
		for _, m := range msgs {
			m.keepAlive()
		}
	})()
	records := make([]any, len(msgs))
	for i, m := range msgs {
		records[i] = m.record()
	}
	event := b.event(records)
	// A stopping source lets the batch it runs finish and settle.
	work := context.WithoutCancel(ctx)
	var res Result
	// A throttled batch is invoked again after a growing pause.
	for retry := backoff.Slow.Start(); ; {
		res = h.Invoke(work, event)
		if !res.Throttled {
			break
		}
		if retry.Wait(ctx) != nil {
			// Stopping while throttled: the records go back untouched.
			for _, m := range msgs {
				_ = m.release()
			}
			return
		}
	}
	failed := map[string]bool{}
	if !res.FailedAll {
		ids := map[string]bool{}
		for _, m := range msgs {
			ids[m.id()] = true
		}
		for _, id := range res.Failed {
			if !ids[id] {
				// As on Lambda: an identifier not in the batch fails all.
				log.Warn("the function reported a batch item failure that is not in the batch; retrying the whole batch", "source", src.Name, "itemIdentifier", id)
				res.FailedAll = true
				break
			}
			failed[id] = true
		}
	}
	for i, m := range msgs {
		settle(work, src, m, records[i], res.FailedAll || failed[m.id()], res.Failure, h, log)
	}
}

// settle acknowledges a record, retries it, or hands it to the failure
// handling once its retries are spent; a record is never dropped.
func settle(ctx context.Context, src kvstore.EventSource, m message, record any, failed bool, f Failure, h Handler, log *slog.Logger) {
	switch {
	case !failed:
		if err := m.ack(ctx); err != nil {
			log.Warn("cannot acknowledge a record; the broker may deliver it again", "source", src.Name, "record", m.id(), "err", err)
		}
		h.Settled(OutcomeSucceeded, 1)
	case m.attempt() <= src.MaxRetries:
		if err := m.retry(ctx, time.Duration(m.attempt())*time.Second); err != nil {
			log.Warn("cannot put a failed record back; the broker delivers it again after its lease", "source", src.Name, "record", m.id(), "err", err)
		}
		h.Settled(OutcomeRetried, 1)
	default:
		rec, _ := json.Marshal(record)
		if err := h.Failed(ctx, FailedRecord{ID: m.id(), Attempts: m.attempt(), Record: rec, Failure: f}); err != nil {
			log.Error("cannot store a failed record; it stays in the source", "source", src.Name, "record", m.id(), "err", err)
			_ = m.retry(ctx, 5*time.Second)
			return
		}
		if err := m.ack(ctx); err != nil {
			log.Warn("cannot acknowledge a failed record after storing it; it may be delivered again", "source", src.Name, "record", m.id(), "err", err)
		}
		h.Settled(OutcomeFailed, 1)
	}
}
