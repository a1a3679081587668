package triggers

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
)

// progressShards is how many Consul values hold a trigger's seen keys. A
// Consul value holds at most 512 KB: one value for all keys overflowed at
// about 10,000 keys, and from then on every save failed. 64 shards hold
// about a million keys of ordinary length.
const progressShards = 64

// A Consul transaction takes at most 64 operations and a 512 KB request
// (txn_max_req_len), in which values travel base64-encoded: saves split
// into transactions within both.
const (
	txnOps   = 64
	txnBytes = 300 << 10 // raw value bytes per transaction
)

// triggerProgress is what a trigger has delivered: every change up to
// Index, and the keys it has seen (for MODIFY and REMOVE), sharded by a
// hash of the key. Saving writes only the shards that changed, then the
// index: a crash in between repeats changes, never skips them.
type triggerProgress struct {
	Index  uint64
	shards [progressShards]map[string]bool
	dirty  map[int]bool
}

func newProgress() *triggerProgress {
	p := &triggerProgress{dirty: map[int]bool{}}
	for i := range p.shards {
		p.shards[i] = map[string]bool{}
	}
	return p
}

func shardOf(key string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % progressShards)
}

func (p *triggerProgress) has(key string) bool { return p.shards[shardOf(key)][key] }

func (p *triggerProgress) add(key string) {
	if s := shardOf(key); !p.shards[s][key] {
		p.shards[s][key] = true
		p.dirty[s] = true
	}
}

func (p *triggerProgress) remove(key string) {
	if s := shardOf(key); p.shards[s][key] {
		delete(p.shards[s], key)
		p.dirty[s] = true
	}
}

// keys calls fn for every seen key.
func (p *triggerProgress) keys(fn func(string)) {
	for _, s := range p.shards {
		for k := range s {
			fn(k)
		}
	}
}

// progressMeta is the value at the trigger's state key. Keys is the
// format before sharding (key → modify index), read once and converted.
type progressMeta struct {
	Version int               `json:"version"`
	Index   uint64            `json:"index"`
	Keys    map[string]uint64 `json:"keys,omitempty"`
}

func (ts *Runner) shardPrefix(name string) string { return kvstore.KVTriggerProgressKeys(name) }

// loadProgress reads a trigger's progress. resumed is false when there is
// none (a first start). An error means it could not be read, which is not
// the same: the caller retries rather than start over and skip or repeat
// what happened meanwhile.
func (ts *Runner) loadProgress(ctx context.Context, name string) (p *triggerProgress, resumed bool, err error) {
	q := (&consulapi.QueryOptions{}).WithContext(ctx)
	pair, _, err := ts.consul.KV().Get(ts.stateKeyOf(name), q)
	if err != nil {
		return nil, false, fmt.Errorf("reading the trigger's progress: %w", err)
	}
	p = newProgress()
	if pair == nil {
		return p, false, nil
	}
	var meta progressMeta
	if err := json.Unmarshal(pair.Value, &meta); err != nil {
		return nil, false, fmt.Errorf("the trigger's progress at %s is unreadable: %w; delete it to start over from the trigger's starting position", pair.Key, err)
	}
	if meta.Keys != nil { // the unsharded format: every key's index
		for k, idx := range meta.Keys {
			p.add(k)
			p.Index = max(p.Index, idx)
		}
		return p, true, nil
	}
	p.Index = meta.Index
	pairs, _, err := ts.consul.KV().List(ts.shardPrefix(name), q)
	if err != nil {
		return nil, false, fmt.Errorf("reading the trigger's seen keys: %w", err)
	}
	for _, sp := range pairs {
		var keys []string
		if err := json.Unmarshal(sp.Value, &keys); err != nil {
			return nil, false, fmt.Errorf("the trigger's seen keys at %s are unreadable: %w", sp.Key, err)
		}
		for _, k := range keys {
			p.add(k)
		}
	}
	p.dirty = map[int]bool{}
	return p, true, nil
}

// saveProgress writes the changed shards, then the index, in transactions
// of at most txnOps operations.
func (ts *Runner) saveProgress(ctx context.Context, name string, p *triggerProgress) error {
	var ops consulapi.KVTxnOps
	dirty := make([]int, 0, len(p.dirty))
	for s := range p.dirty {
		dirty = append(dirty, s)
	}
	sort.Ints(dirty)
	for _, s := range dirty {
		keys := make([]string, 0, len(p.shards[s]))
		for k := range p.shards[s] {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b, _ := json.Marshal(keys)
		ops = append(ops, &consulapi.KVTxnOp{Verb: consulapi.KVSet, Key: ts.shardPrefix(name) + strconv.Itoa(s), Value: b})
	}
	meta, _ := json.Marshal(progressMeta{Version: 2, Index: p.Index})
	ops = append(ops, &consulapi.KVTxnOp{Verb: consulapi.KVSet, Key: ts.stateKeyOf(name), Value: meta})
	q := (&consulapi.QueryOptions{}).WithContext(ctx)
	for len(ops) > 0 {
		n, size := 0, 0
		for n < len(ops) && n < txnOps && (n == 0 || size+len(ops[n].Value) <= txnBytes) {
			size += len(ops[n].Value)
			n++
		}
		ok, resp, _, err := ts.consul.KV().Txn(ops[:n], q)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("Consul refused the progress transaction: %v", resp.Errors)
		}
		ops = ops[n:]
	}
	p.dirty = map[int]bool{}
	return nil
}
