package instances

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/httpclient"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/registry"
)

// warmPools follows the warm pools the deployer declared
// (nimbus_warm_pool, nimbus/pools/ in Consul KV) and their idle
// instances. On a cold start a function's pool (pool.go) takes one,
// hands it the function (POST /specialize, with the instance's key) and
// serves from it until the function's own instance is ready or it is
// idle; then the gateway stops the instance's allocation and Nomad starts
// a fresh one in its place. An instance never serves a second function
// and its task directory is never reused.
//
// Functions with secrets (which need their own job's workload identity),
// with egress "none" (a pool instance fetches its package over the
// network) or whose code Nomad fetches (source_url) are never pooled.
type warmPools struct {
	set    *Set
	mu     sync.Mutex
	pools  map[string]*warmPool // by job id
	client *http.Client

	// envs are functions' job environments as last read from Nomad, by
	// function name, reused while the function's record names the same
	// digest (kvstore.FunctionRecord.EnvSHA256): a read of the job is
	// otherwise on every pooled cold start's path.
	envMu sync.Mutex
	envs  map[string]jobEnv
}

// jobEnv is a function job's task environment and its digest.
type jobEnv struct {
	digest string
	env    map[string]string
}

type warmPool struct {
	rec     kvstore.PoolRecord
	cancel  context.CancelFunc
	members map[string]*member // by Consul service id
	// spent are the instances handed to a function, by service id, until
	// they leave Consul: a specialised instance still answers its health
	// check, and must never look idle again.
	spent map[string]bool
}

// member is one instance of a warm pool.
type member struct {
	serviceID, addr, key string
	pool                 string
	alloc                *nomadapi.Allocation
	trusted              bool // Nomad placed it for the pool and its key is read
	claimed              bool // handed to a function: never again to another
}

func newWarmPools(s *Set) *warmPools {
	// No client-wide timeout: a specialisation carries its own deadline
	// (the function's timeout and the package's fetch).
	return &warmPools{set: s, pools: map[string]*warmPool{}, client: httpclient.NewPlain(httpclient.Plain{}), envs: map[string]jobEnv{}}
}

// sync starts following new pools and stops following removed ones.
func (w *warmPools) sync(ctx context.Context, pairs consulapi.KVPairs) {
	recs := map[string]kvstore.PoolRecord{}
	for _, p := range pairs {
		rec, err := kvstore.DecodePool(p.Value)
		if err != nil || rec.JobID == "" {
			w.set.log.Warn("ignoring a bad warm pool record", "key", p.Key, "err", err)
			continue
		}
		recs[rec.JobID] = rec
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, rec := range recs {
		if wp, ok := w.pools[id]; ok {
			wp.rec = rec
			continue
		}
		pctx, cancel := context.WithCancel(ctx)
		wp := &warmPool{rec: rec, cancel: cancel, members: map[string]*member{}, spent: map[string]bool{}}
		w.pools[id] = wp
		go w.watch(pctx, wp)
		// Functions it may serve read their job ahead (once w.mu is free).
		go w.set.prepareWarmStarts()
	}
	for id, wp := range w.pools {
		if _, ok := recs[id]; !ok {
			wp.cancel()
			delete(w.pools, id)
			w.set.metrics.PoolIdle.DeleteLabelValues(id)
		}
	}
}

// watch follows a pool's healthy instances in Consul.
func (w *warmPools) watch(ctx context.Context, wp *warmPool) {
	w.set.watchService(ctx, "instances of warm pool "+wp.rec.JobID, wp.rec.JobID, true, nil,
		func(entries []*consulapi.ServiceEntry) { w.update(ctx, wp, entries) })
}

func (w *warmPools) update(ctx context.Context, wp *warmPool, entries []*consulapi.ServiceEntry) {
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := map[string]bool{}
	for _, e := range entries {
		id := e.Service.ID
		seen[id] = true
		if _, ok := wp.members[id]; ok || wp.spent[id] {
			continue
		}
		m := &member{serviceID: id, addr: serviceAddr(e), pool: wp.rec.JobID}
		wp.members[id] = m
		go w.confirm(ctx, wp, m, e.Service)
	}
	for id, m := range wp.members {
		if !seen[id] && !m.claimed {
			delete(wp.members, id)
		}
	}
	for id := range wp.spent {
		if !seen[id] {
			delete(wp.spent, id)
		}
	}
	w.reportLocked(wp)
}

// reportLocked sets the pool's idle gauge.
func (w *warmPools) reportLocked(wp *warmPool) {
	idle := 0
	for _, m := range wp.members {
		if m.trusted && !m.claimed {
			idle++
		}
	}
	w.set.metrics.PoolIdle.WithLabelValues(wp.rec.JobID).Set(float64(idle))
}

// confirm checks a pool instance with Nomad, as a function's instance is
// checked (placement.go), and reads its key.
func (w *warmPools) confirm(ctx context.Context, wp *warmPool, m *member, svc *consulapi.AgentService) {
	readKey := func(ctx context.Context, alloc *nomadapi.Allocation) (string, error) {
		return readInstanceKey(ctx, w.set.files, alloc)
	}
	alloc, key, err := w.set.confirmPlacement(ctx, slog.String("pool", wp.rec.JobID), wp.rec.JobID, nomadjob.PoolGroupName, svc, m.addr, readKey)
	switch {
	case err == nil:
		w.mu.Lock()
		m.alloc, m.key, m.trusted = alloc, key, true
		w.reportLocked(wp)
		w.mu.Unlock()
	case errors.Is(err, errNotPlaced):
		w.set.log.Warn("refusing a registration under a warm pool's service name", "pool", wp.rec.JobID, "service_id", svc.ID, "reason", err.Error())
	}
}

// claim takes an idle, confirmed instance of the smallest pool that fits
// the function, or returns nil.
func (w *warmPools) claim(f *registry.Function) *member {
	w.mu.Lock()
	defer w.mu.Unlock()
	fits := w.fitLocked(f)
	sort.Slice(fits, func(i, j int) bool { return fits[i].rec.MemoryMB < fits[j].rec.MemoryMB })
	for _, wp := range fits {
		for _, m := range wp.members {
			if m.trusted && !m.claimed {
				m.claimed = true
				wp.spent[m.serviceID] = true
				w.reportLocked(wp)
				return m
			}
		}
	}
	return nil
}

// fits reports whether some warm pool could serve the function.
func (w *warmPools) fits(f *registry.Function) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.fitLocked(f)) > 0
}

// fitLocked lists the pools whose instances could serve the function.
func (w *warmPools) fitLocked(f *registry.Function) []*warmPool {
	if f.Egress == model.EgressNone || f.Runtime == model.RuntimeHTTP {
		return nil
	}
	var fits []*warmPool
	for _, wp := range w.pools {
		if wp.rec.Runtime == f.Runtime && wp.rec.MemoryMB >= f.MemoryMB && wp.rec.Namespace == f.Namespace && wp.rec.Network == f.Network {
			fits = append(fits, wp)
		}
	}
	return fits
}

// errNotPoolable means the function cannot be served from a pool.
var errNotPoolable = errors.New("not served from a warm pool")

// errTaken means the instance already serves a function: another gateway
// (or this one before a restart) handed it one. It is not this gateway's
// to stop; it stops itself once idle.
var errTaken = errors.New("the pool instance already serves a function")

// specialize hands m the function: the environment the function's own
// job gives nimbus-host, read from Nomad, so that the instance runs
// exactly what the function's instances run.
func (w *warmPools) specialize(ctx context.Context, f *registry.Function, m *member) (jobRead time.Duration, err error) {
	start := time.Now()
	env, err := w.jobEnv(ctx, f)
	jobRead = time.Since(start)
	if err != nil {
		return jobRead, err
	}
	switch {
	case env[protocol.EnvSecrets] != "":
		return jobRead, fmt.Errorf("%w: %s has secrets, which only its own job's identity may read", errNotPoolable, f.Name)
	case env[protocol.EnvPackageURL] == "":
		return jobRead, fmt.Errorf("%w: Nomad fetches the code of %s (a source_url, or egress none)", errNotPoolable, f.Name)
	}
	body, _ := json.Marshal(protocol.Specialization{Environment: env})
	ctx, cancel := context.WithTimeout(ctx, f.TimeoutD+30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+m.addr+protocol.PathSpecialize, bytes.NewReader(body))
	if err != nil {
		return jobRead, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(protocol.HeaderInstanceKey, m.key)
	resp, err := w.client.Do(req)
	if err != nil {
		return jobRead, err
	}
	defer func() { _ = resp.Body.Close() }()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch resp.StatusCode {
	case http.StatusOK:
		return jobRead, nil
	case http.StatusConflict:
		return jobRead, fmt.Errorf("%w: %s", errTaken, bytes.TrimSpace(answer))
	}
	return jobRead, fmt.Errorf("the pool instance answered %s: %s", resp.Status, bytes.TrimSpace(answer))
}

// jobEnv is the environment the function's job gives nimbus-host: the
// one last read while the function's record names its digest, else read
// from Nomad now. Records from before the digest existed read it every
// time.
func (w *warmPools) jobEnv(ctx context.Context, f *registry.Function) (map[string]string, error) {
	w.envMu.Lock()
	cached, ok := w.envs[f.JobID]
	w.envMu.Unlock()
	if ok && f.EnvSHA256 != "" && cached.digest == f.EnvSHA256 {
		return cached.env, nil
	}
	job, _, err := w.set.jobs.Info(f.JobID, (&nomadapi.QueryOptions{Namespace: f.Namespace}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("reading the job of %s: %w", f.Name, err)
	}
	if len(job.TaskGroups) == 0 || len(job.TaskGroups[0].Tasks) == 0 {
		return nil, fmt.Errorf("%w: job %s has no task", errNotPoolable, f.JobID)
	}
	env := job.TaskGroups[0].Tasks[0].Env
	w.envMu.Lock()
	w.envs[f.JobID] = jobEnv{digest: nomadjob.EnvDigest(env), env: env}
	w.envMu.Unlock()
	return env, nil
}

// prepare reads a function's job environment ahead of its first pooled
// cold start, when a warm pool would serve it.
func (w *warmPools) prepare(f *registry.Function) {
	if !w.fits(f) || f.EnvSHA256 == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), ControlPlaneTimeout)
	defer cancel()
	if _, err := w.jobEnv(ctx, f); err != nil && !errors.Is(err, errNotPoolable) {
		w.set.log.Debug("cannot read a function's job ahead of a pooled cold start; its first one reads it", "function", f.Name, "err", err)
	}
}

// prepareWarmStarts prepares every function's pooled cold start.
func (s *Set) prepareWarmStarts() {
	s.mu.Lock()
	fns := make([]*registry.Function, 0, len(s.pools))
	for _, p := range s.pools {
		fns = append(fns, p.fn.Load())
	}
	s.mu.Unlock()
	for _, f := range fns {
		s.warm.prepare(f)
	}
}

// dropEnv forgets the environment of a removed function's job.
func (w *warmPools) dropEnv(jobID string) {
	w.envMu.Lock()
	delete(w.envs, jobID)
	w.envMu.Unlock()
}

// Forget drops an instance another gateway specialised, without stopping
// it: it stays spent until it leaves Consul.
func (w *warmPools) forget(m *member) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if wp, ok := w.pools[m.pool]; ok {
		delete(wp.members, m.serviceID)
		w.reportLocked(wp)
	}
}

// release ends a claimed instance's life: Nomad stops its allocation and
// places a fresh one, so its task directory is never reused.
func (w *warmPools) release(m *member, why string) {
	w.mu.Lock()
	if wp, ok := w.pools[m.pool]; ok {
		delete(wp.members, m.serviceID)
		w.reportLocked(wp)
	}
	w.mu.Unlock()
	if m.alloc == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), ControlPlaneTimeout)
	defer cancel()
	if _, err := w.set.allocs.Stop(m.alloc, (&nomadapi.QueryOptions{Namespace: m.alloc.Namespace}).WithContext(ctx)); err != nil {
		w.set.log.Warn("cannot stop a released warm pool instance; it keeps its function until Nomad stops it", "pool", m.pool, "alloc_id", m.alloc.ID, "err", err)
		return
	}
	w.set.log.Info("warm pool instance released", "pool", m.pool, "alloc_id", m.alloc.ID, "reason", why)
}

// usableLocked counts the function's instances that may take requests.
func (p *Pool) usableLocked() int {
	n := 0
	for _, in := range p.instances {
		if in.usable() {
			n++
		}
	}
	return n
}

// fromWarmPool serves a cold start from a warm pool's instance, if one
// fits, while the function's own instance starts as usual.
func (p *Pool) fromWarmPool() {
	defer func() {
		p.mu.Lock()
		p.specialising = false
		p.mu.Unlock()
	}()
	f := p.fn.Load()
	m := p.set.warm.claim(f)
	if m == nil {
		return
	}
	start := time.Now()
	jobRead, err := p.set.warm.specialize(p.ctx, f, m)
	if err != nil {
		switch {
		case errors.Is(err, errTaken):
			p.set.warm.forget(m)
			p.fromWarmPoolAgain()
			return
		case !errors.Is(err, errNotPoolable):
			p.set.log.Warn("a warm pool instance could not take the function; its own instance serves the cold start", "function", p.name, "pool", m.pool, "err", err)
		}
		// Not handed anything, or half handed: spent either way.
		p.set.warm.release(m, "not specialised: "+err.Error())
		return
	}
	p.set.log.Info("cold start served from a warm pool", "function", p.name, "pool", m.pool, "alloc_id", m.alloc.ID,
		"specialise_ms", float64(time.Since(start).Microseconds())/1000, "job_read_ms", float64(jobRead.Microseconds())/1000)
	p.mu.Lock()
	inst := &Instance{id: "pool/" + m.alloc.ID, addr: m.addr, key: m.key, ready: true, trusted: true, sawPassing: true, pooled: m}
	p.instances[inst.id] = inst
	p.dispatchLocked()
	p.mu.Unlock()
}

// fromWarmPoolAgain tries the next idle instance after one turned out
// taken, while requests still wait and none of the function's own serve.
func (p *Pool) fromWarmPoolAgain() {
	p.mu.Lock()
	again := len(p.waiters) > 0 && p.usableLocked() == 0
	p.mu.Unlock()
	if again {
		p.fromWarmPool()
	}
}

// releasePooled hands back the pool instances the function no longer
// needs: once one of its own instances serves, or after idle_timeout
// without requests; all of them when the function goes.
func (p *Pool) releasePooled(all bool) {
	f := p.fn.Load()
	p.mu.Lock()
	own := 0
	for _, in := range p.instances {
		if in.pooled == nil && in.usable() {
			own++
		}
	}
	var done []*Instance
	reason := "the function's own instance serves"
	switch {
	case all:
		reason = "the function is gone"
	case own == 0:
		reason = fmt.Sprintf("idle for %s (idle_timeout)", f.IdleD)
	}
	for id, in := range p.instances {
		if in.pooled == nil || (!all && in.inflight > 0) {
			continue
		}
		if all || own > 0 || time.Since(p.lastBusy) >= f.IdleD {
			in.gone, in.ready = true, false
			delete(p.instances, id)
			done = append(done, in)
		}
	}
	p.mu.Unlock()
	for _, in := range done {
		p.set.warm.release(in.pooled, reason)
	}
}

// pooledInstances describes the pool instances serving the function, for
// GET /v1/functions/{name}.
func (p *Pool) pooledInstancesLocked() []map[string]string {
	var out []map[string]string
	for _, in := range p.instances {
		if in.pooled != nil && in.pooled.alloc != nil {
			out = append(out, map[string]string{"pool": in.pooled.pool, "alloc_id": in.pooled.alloc.ID, "address": in.addr})
		}
	}
	return out
}
