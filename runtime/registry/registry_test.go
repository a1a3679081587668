package registry

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
)

// Only a function's own record and its versions' are function records.
func TestRecordKey(t *testing.T) {
	for rel, want := range map[string]string{
		"fn": "fn", "fn/versions/3": "fn:3", "fn/versions/03": "", "fn/versions/3/x": "", "fn/other": "", "/x": "",
	} {
		got, ok := recordKey(rel)
		if got != want || ok != (want != "") {
			t.Errorf("recordKey(%q) = %q, %v; want %q", rel, got, ok, want)
		}
	}
}

// One bad record never stops the others, and is named in the log: one
// that is not JSON, and one stored under another record's key.
func TestDecodeLogsAndSkipsBadRecords(t *testing.T) {
	var logged strings.Builder
	log := slog.New(slog.NewTextHandler(&logged, nil))
	good := kvstore.AsyncConfig{Function: "orders", MaxRetries: 1}
	stray := kvstore.AsyncConfig{Function: "billing"}
	pairs := consulapi.KVPairs{
		{Key: kvstore.AsyncKey("orders"), Value: good.Encode()},
		{Key: kvstore.AsyncKey("broken"), Value: []byte("{")},
		{Key: kvstore.AsyncKey("elsewhere"), Value: stray.Encode()},
	}
	got := Decode(pairs, kvstore.DecodeAsync, func(at string, a kvstore.AsyncConfig) (string, error) {
		return Keyed(kvstore.AsyncKey, a.Function, at)
	}, log, "asynchronous invocation config")
	if len(got) != 1 || got["orders"].MaxRetries != 1 {
		t.Errorf("Decode = %v, want only orders", got)
	}
	for _, key := range []string{kvstore.AsyncKey("broken"), kvstore.AsyncKey("elsewhere")} {
		if !strings.Contains(logged.String(), key) {
			t.Errorf("the log does not name the bad record %s:\n%s", key, logged.String())
		}
	}
}

// answeringKV answers listings of the access keys with one enabled key
// until it is told to stop answering, as a partition would.
type answeringKV struct {
	mu   sync.Mutex
	down bool
	key  kvstore.AccessKey
}

func (k *answeringKV) List(_ string, q *consulapi.QueryOptions) (consulapi.KVPairs, *consulapi.QueryMeta, error) {
	k.mu.Lock()
	down := k.down
	k.mu.Unlock()
	if down {
		return nil, nil, errors.New("dial tcp: i/o timeout")
	}
	if q.WaitIndex == 7 {
		// A healthy blocking query: no change within its wait.
		time.Sleep(20 * time.Millisecond)
	}
	return consulapi.KVPairs{{Key: kvstore.AccessKeyKey(k.key.ID), Value: k.key.Encode()}}, &consulapi.QueryMeta{LastIndex: 7}, nil
}

// A gateway cut off from Consul keeps admitting the keys it read for at
// most KeyStaleness, then says it is not synced: a key disabled during the
// partition stops working within that bound.
func TestAccessKeysGoStaleWithoutConsul(t *testing.T) {
	kv := &answeringKV{key: kvstore.AccessKey{ID: "NIMBKEY", Enabled: true}}
	var mu sync.Mutex
	now := time.Unix(1_800_000_000, 0)
	r := New(kv, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	r.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.WatchPrefix(ctx, kvstore.AccessKeysPrefix, func(p consulapi.KVPairs) { r.Apply(kvstore.AccessKeysPrefix, p) })
	for deadline := time.Now().Add(5 * time.Second); ; {
		if _, found, synced := r.AccessKey("NIMBKEY"); found && synced {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the key was never read")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Healthy: blocking queries keep answering, however long it has been.
	advance(10 * time.Minute)
	time.Sleep(100 * time.Millisecond)
	if _, _, synced := r.AccessKey("NIMBKEY"); !synced {
		t.Fatal("keys went stale while Consul answered every blocking query")
	}
	kv.mu.Lock()
	kv.down = true
	kv.mu.Unlock()
	time.Sleep(100 * time.Millisecond)
	advance(KeyStaleness - time.Second)
	if _, _, synced := r.AccessKey("NIMBKEY"); !synced {
		t.Error("keys went stale before KeyStaleness")
	}
	advance(2 * time.Second)
	key, found, synced := r.AccessKey("NIMBKEY")
	if synced || !found || key == nil {
		t.Fatalf("after KeyStaleness without Consul: found %v synced %v; want the key known but not trusted", found, synced)
	}
	if msg := r.NotSynced().Msg; !strings.Contains(msg, "has not heard from Consul for") || !strings.Contains(msg, "may have been disabled") {
		t.Errorf("the refusal does not say why: %s", msg)
	}
}

// recordsKV holds function records: a listing of the functions' prefix
// waits for the next write (the watch), a read of one function's records
// (the catch-up) answers at once.
type recordsKV struct {
	mu      sync.Mutex
	pairs   consulapi.KVPairs
	index   uint64
	changed chan struct{}
}

func (k *recordsKV) put(name string, rec kvstore.FunctionRecord) {
	k.mu.Lock()
	k.index++
	k.pairs = append(k.pairs, &consulapi.KVPair{Key: kvstore.FunctionKey(name), Value: rec.Encode(), ModifyIndex: k.index})
	close(k.changed)
	k.changed = make(chan struct{})
	k.mu.Unlock()
}

func (k *recordsKV) List(prefix string, q *consulapi.QueryOptions) (consulapi.KVPairs, *consulapi.QueryMeta, error) {
	k.mu.Lock()
	index, changed := k.index, k.changed
	k.mu.Unlock()
	if prefix == kvstore.FunctionsPrefix && q.WaitIndex >= index {
		select {
		case <-changed:
		case <-q.Context().Done():
			return nil, nil, q.Context().Err()
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	var out consulapi.KVPairs
	for _, p := range k.pairs {
		if strings.HasPrefix(p.Key, prefix) {
			out = append(out, p)
		}
	}
	return out, &consulapi.QueryMeta{LastIndex: max(k.index, 1)}, nil
}

// A name the snapshot does not know yet costs one read of its records:
// if Consul holds one, CatchUp waits until the watch has read it, and
// says to look again; if Consul holds none, it answers at once.
func TestCatchUpWaitsForRecordsConsulHolds(t *testing.T) {
	kv := &recordsKV{changed: make(chan struct{})}
	r := New(kv, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.WatchPrefix(ctx, kvstore.FunctionsPrefix, r.applyFunctions)

	start := time.Now()
	if r.CatchUp(ctx, "nowhere") {
		t.Error("CatchUp said to look again for a name Consul does not hold")
	}
	if waited := time.Since(start); waited > time.Second {
		t.Errorf("a name Consul does not hold waited %s", waited)
	}

	kv.put("fresh", kvstore.FunctionRecord{Name: "fresh"})
	if !r.CatchUp(ctx, "fresh") {
		t.Fatal("CatchUp gave up on a record Consul holds")
	}
	if _, ok := r.Get("fresh"); !ok {
		t.Error("CatchUp said the record was read, but the snapshot does not have it")
	}
}
