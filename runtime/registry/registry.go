// Package registry keeps the gateway's snapshot of Nimbus's records in
// Consul KV: functions and their versions, aliases and their deployment
// states, routes, limits, access keys and asynchronous invocation
// configs. It follows them with blocking queries and serves the last one
// read, also while Consul is unreachable. It decides nothing about the
// records: the invoke chain, the instances and the other parts read them.
package registry

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/progressive"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/watch"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/refusal"
)

// Function is a function, or one of its published versions, as the
// gateway serves it.
type Function struct {
	kvstore.FunctionRecord
	TimeoutD time.Duration
	IdleD    time.Duration
}

// Key is the function's name, qualified by its version for a published
// version: the registry's and the pools' key, and the name in logs.
func (f *Function) Key() string {
	if f.Version == "" {
		return f.Name
	}
	return model.Qualify(f.Name, f.Version)
}

// NomadJob is the Nomad job that runs the function's instances.
func (f *Function) NomadJob() string {
	if f.JobID == "" {
		return nomadjob.JobID(f.Name)
	}
	return f.JobID
}

// ConsulService is the Consul service its instances register.
func (f *Function) ConsulService() string {
	if f.Service == "" {
		return nomadjob.ServiceName(f.Name)
	}
	return f.Service
}

// KV is the part of Consul's KV API the registry needs.
type KV interface {
	List(prefix string, q *consulapi.QueryOptions) (consulapi.KVPairs, *consulapi.QueryMeta, error)
}

// Snapshot follows Nimbus's records in Consul KV with blocking queries.
// When Consul is unreachable it keeps serving the last known functions and
// reports itself stale.
type Snapshot struct {
	kv  KV
	log *slog.Logger

	mu      sync.RWMutex
	fns     map[string]*Function           // by name, and <name>:<n> for versions
	aliases map[string]kvstore.AliasRecord // by <name>:<alias>
	// deployments are the aliases' deployment states, by <name>:<alias>.
	deployments map[string]kvstore.DeploymentState
	// aliasesChanged (may be nil) sees every new set of aliases; set
	// before Run.
	aliasesChanged func(map[string]kvstore.AliasRecord)
	routes         []kvstore.Route
	limits         map[string]kvstore.Limits
	keys           map[string]*kvstore.AccessKey
	async          map[string]kvstore.AsyncConfig // by function
	synced         bool                           // functions read at least once
	routed         bool                           // routes read at least once
	keyed          bool                           // access keys read at least once
	lastErr        error
	changed        func(map[string]*Function)
	// keysHeard is when Consul last answered a listing of the access
	// keys (AccessKey); now is the clock (time.Now when nil).
	keysHeard time.Time
	now       func() time.Time
	// fnIndex is the highest modify index among the function records
	// last read, and fnRead is closed when the next are read: catchUp
	// waits on them.
	fnIndex uint64
	fnRead  chan struct{}
}

// New watches kv; onChange (may be nil) sees every new set.
func New(kv KV, log *slog.Logger, onChange func(map[string]*Function)) *Snapshot {
	return &Snapshot{kv: kv, log: log, fns: map[string]*Function{}, changed: onChange, fnRead: make(chan struct{})}
}

// catchUpWait bounds how long an invocation of a name the registry does
// not know waits for a record Consul already holds.
const catchUpWait = 3 * time.Second

// CatchUp reads function's records (its own, its versions' and its
// aliases') from Consul, and waits, up to catchUpWait, until the registry
// has read them if it has not yet: a record written a moment ago (an alias
// that terraform apply just created) must not answer 404 for the tens of
// milliseconds the watch takes. It reports whether the registry has now
// read every record of function that Consul holds (it may have done so
// since the caller looked), so that the caller looks the name up again.
// Only a name the registry does not know costs this read.
func (r *Snapshot) CatchUp(ctx context.Context, function string) bool {
	if r.kv == nil { // a gateway fed by hand, in unit tests
		return false
	}
	key := kvstore.FunctionKey(function)
	pairs, _, err := r.kv.List(key, (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return false
	}
	var newest uint64
	for _, p := range pairs {
		if p.Key == key || strings.HasPrefix(p.Key, key+"/") {
			newest = max(newest, p.ModifyIndex)
		}
	}
	if newest == 0 { // Consul holds nothing of it either
		return false
	}
	deadline := time.NewTimer(catchUpWait)
	defer deadline.Stop()
	for {
		r.mu.RLock()
		read, next := r.fnIndex, r.fnRead
		r.mu.RUnlock()
		if newest <= read {
			return true
		}
		select {
		case <-next:
		case <-deadline.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// Get returns a function by name, or one of its versions by its qualified
// name (<name>:<n>).
func (r *Snapshot) Get(name string) (*Function, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	f, ok := r.fns[name]
	return f, ok
}

// Artifacts lists the code digests of all functions; ok is false until the
// functions have been read, when an absent digest proves nothing.
func (r *Snapshot) Artifacts() (digests map[string]bool, ok bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if !r.synced {
		return nil, false
	}
	digests = make(map[string]bool, len(r.fns))
	for _, f := range r.fns {
		digests[f.SourceSHA256] = true
	}
	return digests, true
}

// Status says whether the registry has read the functions and routes at
// least once (before that, no name can be judged unknown), and the last
// error reading them.
func (r *Snapshot) Status() (synced bool, err error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.synced && r.routed && r.keyed, r.lastErr
}

// AccessKey finds an access key by id; synced is false until the keys
// have been read, when an absent key proves nothing.
//
// The keys are current only while Consul answers: a gateway cut off from
// Consul longer than KeyStaleness no longer knows whether a key was
// disabled or deleted since, and says it is not synced (callers get 503,
// to retry) rather than keep admitting keys that may be gone.
func (r *Snapshot) AccessKey(id string) (key *kvstore.AccessKey, found, synced bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	key, found = r.keys[id]
	return key, found, r.keyed && !r.keysStaleLocked()
}

// KeyStaleness bounds how long a gateway that cannot hear from Consul
// keeps trusting the access keys it last read. A healthy blocking query
// answers within its wait time (a minute) and Consul's jitter (up to a
// sixteenth of it); beyond this, Consul is unreachable or hung.
const KeyStaleness = 90 * time.Second

// keysStaleLocked reports whether the access keys were last heard of
// longer ago than KeyStaleness (never, for a snapshot fed by hand).
func (r *Snapshot) keysStaleLocked() bool {
	return r.kv != nil && !r.keysHeard.IsZero() && r.clock().Sub(r.keysHeard) > KeyStaleness
}

func (r *Snapshot) clock() time.Time {
	if r.now != nil {
		return r.now()
	}
	return time.Now()
}

// NotSynced is the refusal while Status is not synced, or the access keys
// are stale: 503, to retry.
func (r *Snapshot) NotSynced() *refusal.Error {
	_, err := r.Status()
	r.mu.RLock()
	stale, heard := r.keysStaleLocked(), r.keysHeard
	r.mu.RUnlock()
	if stale {
		msg := fmt.Sprintf("the gateway has not heard from Consul for %s: access keys may have been disabled since, so it admits none until Consul answers; retry, or call another gateway", r.clock().Sub(heard).Round(time.Second))
		if err != nil {
			msg += " (Consul: " + err.Error() + ")"
		}
		return refusal.New(http.StatusServiceUnavailable, "ServiceException", msg)
	}
	msg := "the gateway has not read the functions, routes and access keys from Consul yet; retry shortly"
	if err != nil {
		msg += " (Consul: " + err.Error() + ")"
	}
	return refusal.New(http.StatusServiceUnavailable, "ServiceException", msg)
}

// Run watches the functions, routes, limits, access keys and asynchronous
// invocation configs until ctx ends.
func (r *Snapshot) Run(ctx context.Context) {
	var watching sync.WaitGroup
	for prefix, apply := range r.appliers() {
		watching.Add(1)
		go func() {
			defer watching.Done()
			r.WatchPrefix(ctx, prefix, apply)
		}()
	}
	watching.Wait()
}

// appliers read each prefix the snapshot follows.
func (r *Snapshot) appliers() map[string]func(consulapi.KVPairs) {
	return map[string]func(consulapi.KVPairs){
		kvstore.FunctionsPrefix:   r.applyFunctions,
		kvstore.RoutesPrefix:      r.applyRoutes,
		kvstore.LimitsPrefix:      r.applyLimits,
		kvstore.AccessKeysPrefix:  r.applyAccessKeys,
		kvstore.AsyncPrefix:       r.applyAsync,
		kvstore.DeploymentsPrefix: r.applyDeployments,
	}
}

// Apply reads one listing of a prefix the snapshot follows (one of
// kvstore's *Prefix), as the watch does: for a gateway fed by hand, in
// tests and benchmarks.
func (r *Snapshot) Apply(prefix string, pairs consulapi.KVPairs) {
	if apply, ok := r.appliers()[prefix]; ok {
		apply(pairs)
	}
}

// WatchPrefix follows a KV prefix, handing every new listing to apply.
// While Consul is unreachable the registry keeps the last known state and
// says so in Status.
func (r *Snapshot) WatchPrefix(ctx context.Context, prefix string, apply func(consulapi.KVPairs)) {
	query := ListPrefix(r.kv, prefix)
	if prefix == kvstore.AccessKeysPrefix {
		// Every answer, changed or not, says the keys are current.
		list := query
		query = func(ctx context.Context, index uint64) (Listing, uint64, error) {
			l, next, err := list(ctx, index)
			if err == nil {
				r.mu.Lock()
				r.keysHeard = r.clock()
				r.mu.Unlock()
			}
			return l, next, err
		}
	}
	watch.Loop[Listing]{
		What:  "Consul KV " + prefix,
		Log:   r.log,
		Query: query,
		Apply: func(l Listing) { apply(l.Pairs) },
		Failed: func(err error, _ time.Duration) {
			r.mu.Lock()
			r.lastErr = err
			r.mu.Unlock()
		},
		// Let a batch of writes (an apply) land before the next query.
		Coalesce: 50 * time.Millisecond,
	}.Run(ctx)
}

// Listing is one answer to a blocking listing of a KV prefix.
type Listing struct {
	Pairs consulapi.KVPairs
	Index uint64
}

// ListPrefix is the blocking query that lists prefix.
func ListPrefix(kv KV, prefix string) watch.Query[Listing] {
	return func(ctx context.Context, index uint64) (Listing, uint64, error) {
		pairs, meta, err := kv.List(prefix, BlockingQuery(ctx, index))
		if err != nil {
			return Listing{}, 0, err
		}
		return Listing{Pairs: pairs, Index: meta.LastIndex}, meta.LastIndex, nil
	}
}

// BlockingQuery is the query options of a blocking query at index.
func BlockingQuery(ctx context.Context, index uint64) *consulapi.QueryOptions {
	return (&consulapi.QueryOptions{WaitIndex: index, WaitTime: time.Minute}).WithContext(ctx)
}

// applyFunctions reads the functions' records: each function's own
// (nimbus/functions/<name>, its $LATEST) and its published versions'
// (nimbus/functions/<name>/versions/<n>), which it keeps under their
// qualified names, <name>:<n>.
func (r *Snapshot) applyFunctions(pairs consulapi.KVPairs) {
	prefix := kvstore.FunctionsPrefix
	fns := map[string]*Function{}
	aliases := map[string]kvstore.AliasRecord{}
	var index uint64
	for _, p := range pairs {
		index = max(index, p.ModifyIndex)
		rel := strings.TrimPrefix(p.Key, prefix)
		if key, ok := aliasKey(rel); ok {
			a, err := kvstore.DecodeAlias(p.Value)
			if err != nil {
				r.log.Warn("ignoring a bad alias record", "key", p.Key, "err", err)
				continue
			}
			aliases[key] = a
			continue
		}
		key, ok := recordKey(rel)
		if !ok {
			continue
		}
		rec, err := kvstore.DecodeFunction(p.Value)
		if err != nil {
			r.log.Warn("ignoring a bad function record", "key", p.Key, "err", err)
			continue
		}
		f := &Function{FunctionRecord: rec}
		f.TimeoutD, _ = time.ParseDuration(rec.Timeout)
		if f.TimeoutD <= 0 {
			f.TimeoutD = model.DefaultTimeout
		}
		f.IdleD, _ = time.ParseDuration(rec.IdleTimeout)
		if f.IdleD <= 0 {
			f.IdleD = model.DefaultIdle
		}
		fns[key] = f
	}
	r.mu.Lock()
	r.fns, r.aliases, r.synced, r.lastErr = fns, aliases, true, nil
	r.mu.Unlock()
	if r.changed != nil {
		r.changed(fns)
	}
	if r.aliasesChanged != nil {
		r.aliasesChanged(aliases)
	}
	// Only now, with the pools made, may catchUp's waiters look again.
	r.mu.Lock()
	r.fnIndex = index
	close(r.fnRead)
	r.fnRead = make(chan struct{})
	r.mu.Unlock()
}

// applyDeployments reads the aliases' deployment states.
func (r *Snapshot) applyDeployments(pairs consulapi.KVPairs) {
	states := map[string]kvstore.DeploymentState{}
	for _, p := range pairs {
		st, err := kvstore.DecodeDeployment(p.Value)
		if err != nil || p.Key != kvstore.DeploymentKey(st.Function, st.Alias) {
			r.log.Warn("ignoring a bad deployment state", "key", p.Key, "err", err)
			continue
		}
		states[model.Qualify(st.Function, st.Alias)] = st
	}
	r.mu.Lock()
	r.deployments = states
	r.mu.Unlock()
}

// Routing is how a function's alias routes now: the version that gets the
// rest of the invocations and the others' weights, as its record says or,
// during a deployment, as the deployment's step says.
func (r *Snapshot) Routing(function, alias string) (primary string, weights map[string]float64, found bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	a, ok := r.aliases[model.Qualify(function, alias)]
	if !ok {
		return "", nil, false
	}
	var st *kvstore.DeploymentState
	if d, ok := r.deployments[model.Qualify(function, alias)]; ok {
		st = &d
	}
	primary, weights = progressive.Routing(a, st)
	return primary, weights, true
}

// Deployment is the state of an alias's deployment, as last read.
func (r *Snapshot) Deployment(function, alias string) (kvstore.DeploymentState, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	st, ok := r.deployments[model.Qualify(function, alias)]
	return st, ok
}

// Deployments lists the deployment states of a function's aliases.
func (r *Snapshot) Deployments(function string) []kvstore.DeploymentState {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []kvstore.DeploymentState
	for _, st := range r.deployments {
		if st.Function == function {
			out = append(out, st)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Alias < out[j].Alias })
	return out
}

// aliasKey is the registry's key of an alias record under
// nimbus/functions/ (<name>/aliases/<alias>): <name>:<alias>.
func aliasKey(rel string) (string, bool) {
	name, rest, nested := strings.Cut(rel, "/")
	alias, ok := strings.CutPrefix(rest, "aliases/")
	if name == "" || !nested || !ok || alias == "" || model.IsVersionNumber(alias) || model.ValidateQualifier(alias) != nil || alias == model.Latest {
		return "", false
	}
	return model.Qualify(name, alias), true
}

// recordKey is the registry's key of a record under nimbus/functions/:
// the function's name, or <name>:<n> for its version n. Other keys under
// a function's tree are not function records.
func recordKey(rel string) (string, bool) {
	name, rest, nested := strings.Cut(rel, "/")
	if name == "" {
		return "", false
	}
	if !nested {
		return name, true
	}
	n, ok := strings.CutPrefix(rest, "versions/")
	if !ok || !model.IsVersionNumber(n) {
		return "", false
	}
	return model.Qualify(name, n), true
}

func (r *Snapshot) applyRoutes(pairs consulapi.KVPairs) {
	var routes []kvstore.Route
	for _, p := range pairs {
		rt, err := kvstore.DecodeRoute(p.Value)
		if err != nil {
			r.log.Warn("ignoring a bad route record", "key", p.Key, "err", err)
			continue
		}
		routes = append(routes, rt)
	}
	// Exact paths win, then the longest prefix; at equal paths a route
	// for a named host wins over one for any host.
	sort.SliceStable(routes, func(i, j int) bool {
		a, b := routes[i], routes[j]
		if (a.Match == "exact") != (b.Match == "exact") {
			return a.Match == "exact"
		}
		if len(a.Path) != len(b.Path) {
			return len(a.Path) > len(b.Path)
		}
		return a.Host != "" && b.Host == ""
	})
	r.mu.Lock()
	r.routes, r.routed = routes, true
	r.mu.Unlock()
}

func (r *Snapshot) applyLimits(pairs consulapi.KVPairs) {
	limits := Decode(pairs, kvstore.DecodeLimits, func(_ string, l kvstore.Limits) (string, error) { return l.Namespace, nil }, r.log, "limits record")
	r.mu.Lock()
	r.limits = limits
	r.mu.Unlock()
}

// applyAccessKeys replaces the keys: a new, changed, disabled or deleted
// key takes effect with the next request.
func (r *Snapshot) applyAccessKeys(pairs consulapi.KVPairs) {
	keys := map[string]*kvstore.AccessKey{}
	for id, k := range Decode(pairs, kvstore.DecodeAccessKey, func(at string, k kvstore.AccessKey) (string, error) {
		return Keyed(kvstore.AccessKeyKey, k.ID, at)
	}, r.log, "access key record") {
		keys[id] = &k
	}
	r.mu.Lock()
	r.keys, r.keyed = keys, true
	r.mu.Unlock()
}

// applyAsync replaces the functions' asynchronous invocation configs.
func (r *Snapshot) applyAsync(pairs consulapi.KVPairs) {
	configs := Decode(pairs, kvstore.DecodeAsync, func(at string, a kvstore.AsyncConfig) (string, error) {
		return Keyed(kvstore.AsyncKey, a.Function, at)
	}, r.log, "asynchronous invocation config")
	r.mu.Lock()
	r.async = configs
	r.mu.Unlock()
}

// Async returns how the function's asynchronous invocations are handled:
// its config, or Lambda's defaults.
func (r *Snapshot) Async(function string) kvstore.AsyncConfig {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if a, ok := r.async[function]; ok {
		return a
	}
	return kvstore.AsyncConfig{Function: function, MaxRetries: kvstore.DefaultAsyncRetries, MaxEventAgeSeconds: kvstore.DefaultMaxEventAgeSecs}
}

// Limits returns a namespace's quotas, Lambda's default where none are set.
func (r *Snapshot) Limits(namespace string) kvstore.Limits {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if l, ok := r.limits[namespace]; ok {
		return l
	}
	return kvstore.Limits{Namespace: namespace, MaxConcurrency: kvstore.DefaultMaxConcurrency}
}

// Reserved sums the namespace's reserved concurrency.
func (r *Snapshot) Reserved(namespace string) int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	total := 0
	for _, f := range r.fns {
		// A function's versions share its reservation.
		if f.Version == "" && Namespace(f) == namespace {
			total += f.ReservedConcurrency
		}
	}
	return total
}

// Versions lists a function's published versions, oldest first.
func (r *Snapshot) Versions(name string) []int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	versions := []int{}
	for _, f := range r.fns {
		if f.Name == name && f.Version != "" {
			if n, err := strconv.Atoi(f.Version); err == nil {
				versions = append(versions, n)
			}
		}
	}
	sort.Ints(versions)
	return versions
}

// ReservedFor is the reserved concurrency of f's function, which its
// versions share; 0 when it has none.
func (r *Snapshot) ReservedFor(f *Function) int {
	if f.Version == "" {
		return f.ReservedConcurrency
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if latest, ok := r.fns[f.Name]; ok {
		return latest.ReservedConcurrency
	}
	return 0
}

// Namespace is the Nomad namespace of f's jobs: "default" when its record names none.
func Namespace(f *Function) string {
	if f.Namespace == "" {
		return "default"
	}
	return f.Namespace
}

// Routes returns the route table, most specific first.
func (r *Snapshot) Routes() []kvstore.Route {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.routes
}

// OnAliases has fn see every new set of aliases; call it before Run.
func (r *Snapshot) OnAliases(fn func(map[string]kvstore.AliasRecord)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.aliasesChanged = fn
}

// Decode reads the records of a KV listing by name. name says what a
// record is called, from its key and its decoded value, or why it is not
// a record of this kind. A record that does not decode or has no name is
// logged as a bad what and left out, so that one bad record never stops
// the others.
func Decode[T any](pairs consulapi.KVPairs, decode func([]byte) (T, error), name func(key string, v T) (string, error), log *slog.Logger, what string) map[string]T {
	out := map[string]T{}
	for _, p := range pairs {
		v, err := decode(p.Value)
		var n string
		if err == nil {
			n, err = name(p.Key, v)
		}
		if err != nil {
			log.Warn("ignoring a bad "+what, "key", p.Key, "err", err)
			continue
		}
		out[n] = v
	}
	return out
}

// Keyed names a record that must live at key(name): anything else is a
// stray.
func Keyed(key func(string) string, name string, at string) (string, error) {
	if name == "" || at != key(name) {
		return "", fmt.Errorf("the record at %s names %q, which belongs at %s", at, name, key(name))
	}
	return name, nil
}
