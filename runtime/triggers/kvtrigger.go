// Package triggers runs the KV triggers (nimbus_kv_trigger): for each, one
// gateway at a time (a Consul session lock) follows a KV prefix and
// invokes the function with batches of changes, at least once, keeping
// its progress in Consul so that the next holder resumes. It invokes
// through an Invoker; it serves no HTTP.
package triggers

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/backoff"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/clients"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/watch"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/auth"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/invoke"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/registry"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/workers"
)

// ChangeRecord is one change of a key, shaped after DynamoDB Streams'
// records: INSERT, MODIFY or REMOVE, with old and new values where known.
type ChangeRecord struct {
	EventID     string `json:"eventID"`
	EventName   string `json:"eventName"`
	Key         string `json:"key"`
	ModifyIndex uint64 `json:"modifyIndex"`
	NewValue    string `json:"newValue,omitempty"`
	OldValue    string `json:"oldValue,omitempty"`
	// Encoding is "base64" when the values are not UTF-8.
	Encoding string `json:"encoding,omitempty"`
}

// kvBatch is the event a KV trigger delivers.
type kvBatch struct {
	Trigger string         `json:"trigger"`
	Prefix  string         `json:"prefix"`
	Records []ChangeRecord `json:"Records"`
}

// Runner runs one worker per KV trigger; a Consul session lock makes
// sure only one gateway works on each.
type Runner struct {
	invoker Invoker
	log     *slog.Logger
	consul  *consulapi.Client
	workers *workers.Set[kvstore.KVTrigger]
}

// Invoker runs an invocation through the gateway's chain.
type Invoker interface {
	Run(ctx context.Context, c *auth.Caller, target string, payload []byte, tail bool) *invoke.Invocation
}

type triggerWorker = workers.Worker[kvstore.KVTrigger]

// New returns the triggers' runner.
func New(c *consulapi.Client, inv Invoker, log *slog.Logger) *Runner {
	return &Runner{invoker: inv, log: log, consul: c, workers: workers.New[kvstore.KVTrigger]()}
}

// SyncPairs starts, restarts and stops workers to match a listing of the
// trigger records.
func (ts *Runner) SyncPairs(ctx context.Context, pairs consulapi.KVPairs) {
	ts.sync(ctx, registry.Decode(pairs, kvstore.DecodeKVTrigger, func(at string, t kvstore.KVTrigger) (string, error) {
		return registry.Keyed(kvstore.KVTriggerKey, t.Name, at)
	}, ts.log, "KV trigger record"))
}

// sync starts, restarts and stops workers to match the trigger records.
func (ts *Runner) sync(ctx context.Context, defs map[string]kvstore.KVTrigger) {
	ts.workers.Sync(ctx, defs, func(kvstore.KVTrigger) bool { return true }, ts.work)
}

// work holds the trigger's lock and delivers changes until ctx ends or the
// lock is lost, then tries to take the lock again.
func (ts *Runner) work(ctx context.Context, w *triggerWorker) {
	def := w.Def
	log := ts.log.With("trigger", def.Name)
	if kvstore.OverlapsNimbus(def.Prefix) {
		// The provider refuses such a prefix at plan; a record written
		// some other way must not start an endless loop either.
		problem := fmt.Sprintf("the prefix %q covers Nimbus's own keys under %s, where the trigger's own progress would invoke it forever: the trigger does not run; give it a prefix of your own", def.Prefix, kvstore.Prefix)
		w.Problem.Store(&problem)
		log.Error("KV trigger refused", "prefix", def.Prefix, "problem", problem)
		<-ctx.Done()
		return
	}
	ts.awaitPrefixRead(ctx, w, log)
	workers.HoldLock(ctx, ts.consul, kvstore.KVTriggerLocks+def.Name, "nimbus-gateway kv trigger "+def.Name, log, func(ctx context.Context) {
		log.Info("holding the trigger lock; delivering changes", "prefix", def.Prefix)
		ts.deliverLoop(ctx, def)
	})
}

func (ts *Runner) stateKeyOf(name string) string { return kvstore.KVTriggerState + name }

// awaitPrefixRead returns once the gateway may read the trigger's prefix.
// Consul answers a listing it may not read as an empty one (404), which
// would leave the trigger silent forever; a plain read of the prefix's own
// key is refused with 403 instead, so that is the probe. Until the right
// is granted the trigger reports the rule to add, and checks again.
func (ts *Runner) awaitPrefixRead(ctx context.Context, w *triggerWorker, log *slog.Logger) {
	def := w.Def
	wait := time.Second
	for ctx.Err() == nil {
		_, _, err := ts.consul.KV().Get(def.Prefix, (&consulapi.QueryOptions{}).WithContext(ctx))
		if !clients.Denied(err) {
			if w.Problem.Swap(nil) != nil {
				log.Info("the gateway may read the trigger's prefix now", "prefix", def.Prefix)
			}
			return
		}
		problem := fmt.Sprintf("the gateway's Consul token may not read the prefix %q: add key_prefix %q { policy = \"read\" } to its nimbus-gateway-triggers policy (see examples/platform/policies/consul/gateway.hcl)", def.Prefix, def.Prefix)
		if old := w.Problem.Swap(&problem); old == nil || *old != problem {
			log.Error("KV trigger cannot watch its prefix", "prefix", def.Prefix, "problem", problem)
		}
		watch.Sleep(ctx, wait)
		wait = min(wait*2, 30*time.Second)
	}
}

// Problems lists, for the triggers that invoke function (any of its
// versions or aliases included), the ones that cannot deliver and why.
func (ts *Runner) Problems(function string) map[string]string {
	return ts.workers.Problems(func(t kvstore.KVTrigger) bool {
		name, _ := model.SplitQualified(t.Function)
		return name == function
	})
}

// deliverLoop follows the prefix with blocking queries, turns each new
// listing into change records against the progress, and delivers them in
// batches.
func (ts *Runner) deliverLoop(ctx context.Context, def kvstore.KVTrigger) {
	log := ts.log.With("trigger", def.Name)
	var progress *triggerProgress
	var resumed bool
	for retry := backoff.Fast.Start(); ; {
		var err error
		if progress, resumed, err = ts.loadProgress(ctx, def.Name); err == nil {
			break
		}
		wait := retry.Next()
		log.Warn("cannot read the trigger's progress; not starting until it can be read", "err", err, "retry_in", wait)
		if backoff.Sleep(ctx, wait) != nil {
			return
		}
	}
	save := func() {
		// A worker that is stopping (its trigger deleted or changed, its
		// lock lost) saves nothing: the next holder resumes from the last
		// save, which repeats changes and never skips one.
		if ctx.Err() != nil {
			return
		}
		if err := ts.saveProgress(ctx, def.Name, progress); err != nil {
			log.Warn("cannot save trigger progress; changes may repeat after a restart", "err", err)
		}
	}
	values := map[string][]byte{} // last seen values, for old values while running
	first := !resumed
	apply := func(l registry.Listing) {
		pairs, index := l.Pairs, l.Index
		if first && def.StartingPosition != "existing" {
			// "latest": what is there now is the starting point.
			for _, p := range pairs {
				progress.add(p.Key)
				values[p.Key] = p.Value
			}
			progress.Index = index
			save()
			first = false
			return
		}
		first = false
		records := diff(progress, values, pairs, index, wants(def.Events))
		batch := max(def.BatchSize, 1)
		for start := 0; start < len(records); start += batch {
			chunk := records[start:min(start+batch, len(records))]
			ts.deliver(ctx, def, chunk)
			if ctx.Err() != nil {
				// deliver gave up midway: the chunk is not delivered.
				return
			}
			// Records come in modify-index order, removals last at the
			// listing's index: every change up to the chunk's last index is
			// delivered.
			for _, r := range chunk {
				if r.EventName == "REMOVE" {
					progress.remove(r.Key)
				} else {
					progress.add(r.Key)
				}
				progress.Index = max(progress.Index, r.ModifyIndex)
			}
			save()
		}
		if ctx.Err() != nil {
			return
		}
		// Changes of events the trigger does not want still move progress.
		current := make(map[string]bool, len(pairs))
		for _, p := range pairs {
			current[p.Key] = true
			progress.add(p.Key)
			values[p.Key] = p.Value
		}
		var gone []string
		progress.keys(func(k string) {
			if !current[k] {
				gone = append(gone, k)
			}
		})
		for _, k := range gone {
			progress.remove(k)
			delete(values, k)
		}
		if progress.Index != index || len(progress.dirty) > 0 {
			progress.Index = index
			save()
		}
	}
	watch.Loop[registry.Listing]{What: "trigger " + def.Name + " prefix " + def.Prefix, Log: log, Query: registry.ListPrefix(ts.consul.KV(), def.Prefix), Apply: apply}.Run(ctx)
}

func wants(events []string) map[string]bool {
	w := map[string]bool{}
	if len(events) == 0 {
		events = []string{"put", "delete"}
	}
	for _, e := range events {
		w[strings.ToLower(e)] = true
	}
	return w
}

// diff lists the changes from the progress to the listing, in
// modify-index order, deletions last: a key changed after the progress's
// index (MODIFY if seen before, else INSERT), and a seen key that is gone.
func diff(seen *triggerProgress, values map[string][]byte, pairs consulapi.KVPairs, index uint64, want map[string]bool) []ChangeRecord {
	var out []ChangeRecord
	current := map[string]bool{}
	for _, p := range pairs {
		current[p.Key] = true
		had := seen.has(p.Key)
		if p.ModifyIndex <= seen.Index && had {
			continue
		}
		if !want["put"] {
			continue
		}
		r := ChangeRecord{Key: p.Key, ModifyIndex: p.ModifyIndex, EventName: "INSERT"}
		if had {
			r.EventName = "MODIFY"
		}
		r.NewValue, r.Encoding = encodeValue(p.Value, "")
		if ov, ok := values[p.Key]; ok && had {
			r.OldValue, r.Encoding = encodeValue(ov, r.Encoding)
		}
		r.EventID = fmt.Sprintf("%s@%d", p.Key, p.ModifyIndex)
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ModifyIndex < out[j].ModifyIndex })
	if want["delete"] {
		var gone []string
		seen.keys(func(k string) {
			if !current[k] {
				gone = append(gone, k)
			}
		})
		sort.Strings(gone)
		for _, k := range gone {
			r := ChangeRecord{Key: k, EventName: "REMOVE", ModifyIndex: index, EventID: fmt.Sprintf("%s@%d-removed", k, index)}
			if ov, ok := values[k]; ok {
				r.OldValue, r.Encoding = encodeValue(ov, "")
			}
			out = append(out, r)
		}
	}
	return out
}

func encodeValue(v []byte, encoding string) (string, string) {
	if encoding != "base64" && utf8.Valid(v) {
		return string(v), encoding
	}
	return base64.StdEncoding.EncodeToString(v), "base64"
}

// deliveryRetry spaces a failing batch's attempts: 400 ms, 800 ms, ... up
// to 10 s.
var deliveryRetry = backoff.Policy{Initial: 200 * time.Millisecond, Max: 10 * time.Second}

// deliver invokes the function with one batch, retrying with backoff up to
// max_retries; a batch that still fails goes to the dead-letter prefix.
func (ts *Runner) deliver(ctx context.Context, def kvstore.KVTrigger, records []ChangeRecord) {
	event, _ := json.Marshal(kvBatch{Trigger: def.Name, Prefix: def.Prefix, Records: records})
	var lastErr string
	for attempt := 0; attempt <= def.MaxRetries && ctx.Err() == nil; attempt++ {
		if attempt > 0 {
			_ = backoff.Sleep(ctx, deliveryRetry.Delay(attempt))
		}
		inv := ts.invoker.Run(ctx, auth.Internal("KV trigger "+def.Name), def.Function, event, false)
		switch {
		case inv.Refused != nil:
			lastErr = inv.Refused.Type + ": " + inv.Refused.Msg
		case inv.Answer.Status != http.StatusOK || inv.Answer.FunctionFailed():
			lastErr = string(inv.Answer.Body)
		default:
			return
		}
	}
	if ctx.Err() != nil {
		return
	}
	dead := map[string]any{"trigger": def.Name, "function": def.Function, "error": lastErr, "failed_at": time.Now().UTC().Format(time.RFC3339), "event": json.RawMessage(event)}
	b, _ := json.Marshal(dead)
	key := kvstore.KVTriggerDeadPrefix + def.Name + "/" + strconv.FormatUint(records[0].ModifyIndex, 10) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if _, err := ts.consul.KV().Put(&consulapi.KVPair{Key: key, Value: b}, (&consulapi.WriteOptions{}).WithContext(ctx)); err != nil {
		ts.log.Error("cannot record a failed batch in the dead-letter prefix", "trigger", def.Name, "err", err)
		return
	}
	ts.log.Warn("batch failed after its retries; recorded as dead letter", "trigger", def.Name, "key", key, "records", len(records), "error", lastErr)
}
