package eventsource

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/backoff"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/watch"
)

// A source's maximum_concurrency bounds its batches in flight across every
// gateway, as Lambda bounds a mapping's. Each batch holds a slot: one key
// of a JetStream key-value bucket, created by the gateway that takes it
// (creation fails while another holds it), rewritten while the batch runs,
// and deleted after. Keys live slotTTL past their last write, so a gateway
// that dies frees its slots within that time.

// SlotsBucket is the key-value bucket of the sources' slots.
const SlotsBucket = "NIMBUS_SOURCE_SLOTS"

// slotTTL is how long a slot outlives its holder's last sign of life;
// slotRefresh is how often a holder renews it.
const (
	slotTTL     = 30 * time.Second
	slotRefresh = slotTTL / 3
)

// slotWait is the pause before looking again for a free slot: short, as
// slots free as soon as batches end.
var slotWait = backoff.Policy{Initial: 10 * time.Millisecond, Max: 250 * time.Millisecond}

// slots hands out a source's concurrency slots.
type slots interface {
	// acquire waits for a free slot; release gives it back.
	acquire(ctx context.Context) (release func(), err error)
}

// Slots are the gateways' shared slots, in NATS JetStream.
type Slots struct {
	js     jetstream.JetStream
	cfg    jetstream.KeyValueConfig
	holder string
	log    *slog.Logger

	mu sync.Mutex
	kv jetstream.KeyValue
}

// OpenSlots makes sure the bucket exists (replicas as the gateway's other
// streams), and names this gateway as the holder of the slots it takes.
func OpenSlots(ctx context.Context, nc *nats.Conn, replicas int, holder string, log *slog.Logger) (*Slots, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	s := &Slots{js: js, holder: holder, log: log, cfg: jetstream.KeyValueConfig{
		Bucket:      SlotsBucket,
		Description: "Nimbus event sources' concurrency slots, one key per batch in flight",
		TTL:         slotTTL,
		History:     1,
		// On file, so that a slot held survives a server's restart (and
		// the bucket with it) and the bound holds across it.
		Storage:  jetstream.FileStorage,
		Replicas: max(replicas, 1),
	}}
	if _, err := s.bucket(ctx, true); err != nil {
		return nil, err
	}
	return s, nil
}

// bucket is the slots' bucket, made again when fresh is set (the bucket
// went away: a server lost its storage, or an operator deleted it).
func (s *Slots) bucket(ctx context.Context, fresh bool) (jetstream.KeyValue, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kv != nil && !fresh {
		return s.kv, nil
	}
	kv, err := s.js.CreateOrUpdateKeyValue(ctx, s.cfg)
	if err != nil {
		return nil, fmt.Errorf("creating or updating the JetStream key-value bucket %s: %w", SlotsBucket, err)
	}
	s.kv = kv
	return kv, nil
}

// gone reports an error that says the bucket is no longer there.
func gone(err error) bool {
	return errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound)
}

// of is the slots of one source.
func (s *Slots) of(source string, limit int) slots {
	if s == nil {
		return newLocalSlots(limit)
	}
	return &sharedSlots{Slots: s, source: source, limit: max(limit, 1)}
}

type sharedSlots struct {
	*Slots
	source string
	limit  int
}

func (s *sharedSlots) acquire(ctx context.Context) (func(), error) {
	retry := slotWait.Start()
	for {
		// From a random slot, so that gateways seldom race for the same.
		first := rand.IntN(s.limit) //nolint:gosec // spreads gateways over the slots; nothing to guess
		kv, err := s.bucket(ctx, false)
		if err != nil {
			return nil, err
		}
		for i := range s.limit {
			key := s.source + "." + strconv.Itoa((first+i)%s.limit)
			rev, err := kv.Create(ctx, key, []byte(s.holder))
			if err == nil {
				return s.hold(kv, key, rev), nil
			}
			if gone(err) {
				s.log.Warn("the event sources' slot bucket is gone; making it again", "bucket", SlotsBucket, "err", err)
				if _, err := s.bucket(ctx, true); err != nil {
					return nil, err
				}
				break
			}
			if !errors.Is(err, jetstream.ErrKeyExists) {
				return nil, fmt.Errorf("taking a concurrency slot of source %s: %w", s.source, err)
			}
		}
		if err := retry.Wait(ctx); err != nil {
			return nil, err
		}
	}
}

// hold renews the slot until released, then deletes it.
func (s *sharedSlots) hold(kv jetstream.KeyValue, key string, rev uint64) func() {
	var mu sync.Mutex
	stop := watch.Every(slotRefresh, func() {
		mu.Lock()
		defer mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		next, err := kv.Update(ctx, key, []byte(s.holder), rev)
		if err != nil {
			s.log.Warn("cannot renew an event source's concurrency slot; another gateway may take it", "slot", key, "err", err)
			return
		}
		rev = next
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			stop()
			mu.Lock()
			defer mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := kv.Delete(ctx, key, jetstream.LastRevision(rev)); err != nil {
				s.log.Warn("cannot free an event source's concurrency slot; it frees itself after its TTL", "slot", key, "ttl", slotTTL, "err", err)
			}
		})
	}
}

// localSlots bound a source's batches in this gateway only: the bound
// without NATS.
type localSlots chan struct{}

func newLocalSlots(limit int) localSlots { return make(localSlots, max(limit, 1)) }

func (l localSlots) acquire(ctx context.Context) (func(), error) {
	select {
	case l <- struct{}{}:
		return func() { <-l }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
