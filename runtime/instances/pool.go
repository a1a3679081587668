package instances

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/clients"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/httpclient"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/watch"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/registry"
)

// Health is the part of Consul's health API the gateway needs.
type Health interface {
	Service(service, tag string, passingOnly bool, q *consulapi.QueryOptions) ([]*consulapi.ServiceEntry, *consulapi.QueryMeta, error)
}

// Jobs is the part of Nomad's jobs API the gateway needs.
type Jobs interface {
	Scale(jobID, group string, count *int, message string, isError bool, meta map[string]interface{}, q *nomadapi.WriteOptions) (*nomadapi.JobRegisterResponse, *nomadapi.WriteMeta, error)
	ScaleStatus(jobID string, q *nomadapi.QueryOptions) (*nomadapi.JobScaleStatusResponse, *nomadapi.QueryMeta, error)
	// Info reads a job: a schedule's launch, to confirm a scheduled run.
	Info(jobID string, q *nomadapi.QueryOptions) (*nomadapi.Job, *nomadapi.QueryMeta, error)
}

// ErrThrottled means the function is at its limit: every instance it may
// have is busy and the queue is full, or the wait ran out.
var ErrThrottled = errors.New("throttled")

// ErrNomadUnavailable means Nomad failed or did not answer the scale
// request that would start an instance: the caller may retry (503), it is
// not over any limit.
var ErrNomadUnavailable = errors.New("Nomad is unavailable")

// ControlPlaneTimeout bounds each Nomad call on a request's path, so that a
// hung agent fails the waiting requests instead of holding them.
const ControlPlaneTimeout = 5 * time.Second

// errDeploying means Nomad refused a scale request while a deployment
// replaces the function's instances (internal/rollout): requests wait,
// served by the old and new instances, and the scale is retried.
var errDeploying = errors.New("deployment in progress")

// ErrScaleDenied means Nomad refused the gateway's scale request for want
// of a right: the platform is misconfigured, and no retry by the caller
// helps until an operator grants it.
var ErrScaleDenied = errors.New("the gateway may not scale this function")

// Instance is one running nimbus-host.
type Instance struct {
	id, addr   string
	inflight   int
	ready      bool // probed or passing its Consul check
	trusted    bool // Nomad confirmed it placed this instance (placement.go)
	sawPassing bool
	gone       bool
	// key is the instance's key, which every invocation carries ("" for
	// instances of jobs from before instance keys).
	key string
	// pooled is the warm pool instance this is, specialised for the
	// function until its own instances serve (warmpool.go); nil for the
	// function's own instances.
	pooled *member
}

// usable reports whether the instance may be sent requests: Nomad placed
// it, it answers, and it is still registered.
func (in *Instance) usable() bool { return in.ready && in.trusted && !in.gone }

type waiter struct {
	ch chan *Instance
	// denied receives the refusal when Nomad denies the scale request the
	// waiter needs: waiting longer cannot help.
	denied chan error
}

// Pool is one function's instances, queue and scaling.
type Pool struct {
	name string
	fn   atomic.Pointer[registry.Function]
	set  *Set

	mu        sync.Mutex
	instances map[string]*Instance
	waiters   []*waiter
	inflight  int
	lastBusy  time.Time
	count     int // the group count we last saw or set
	known     bool
	readAt    time.Time // when count was last read from Nomad
	scaleErr  error

	// specialising: a warm pool instance is being handed the function.
	specialising bool

	kick   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc

	// stats are a published version's last invocations (version_stats.go).
	stats invocationStats
}

func newPool(s *Set, fn *registry.Function) *Pool {
	p := &Pool{name: fn.Key(), set: s, instances: map[string]*Instance{}, kick: make(chan struct{}, 1), lastBusy: time.Now()}
	p.fn.Store(fn)
	ctx, cancel := context.WithCancel(context.Background())
	p.ctx, p.cancel = ctx, cancel
	go p.watch(ctx)
	go p.scaleLoop(ctx)
	if s.started != nil {
		s.started(p)
	}
	return p
}

func (p *Pool) concurrency() int {
	return max(p.fn.Load().Concurrency, 1)
}

// maxQueue bounds the requests that wait for an instance.
func (p *Pool) maxQueue() int {
	f := p.fn.Load()
	return max(f.MaxInstances*max(f.Concurrency, 1)*2, 16)
}

// Acquire returns an instance with a free slot, waiting (bounded) for one
// to start when none is free. cold reports that the request waited.
func (p *Pool) Acquire(ctx context.Context) (inst *Instance, cold bool, err error) {
	p.mu.Lock()
	if inst := p.pickLocked(); inst != nil {
		inst.inflight++
		p.inflight++
		p.lastBusy = time.Now()
		p.reportLocked()
		p.mu.Unlock()
		return inst, false, nil
	}
	if len(p.waiters) >= p.maxQueue() {
		p.mu.Unlock()
		return nil, false, fmt.Errorf("%w: %d requests already wait for an instance of %s", ErrThrottled, len(p.waiters), p.name)
	}
	w := &waiter{ch: make(chan *Instance, 1), denied: make(chan error, 1)}
	p.waiters = append(p.waiters, w)
	p.lastBusy = time.Now()
	fromWarm := !p.specialising && p.usableLocked() == 0
	p.specialising = p.specialising || fromWarm
	p.mu.Unlock()
	p.poke()
	if fromWarm {
		go p.fromWarmPool()
	}

	select {
	case inst := <-w.ch:
		return inst, true, nil
	case err := <-w.denied:
		return nil, true, err
	case <-ctx.Done():
		p.mu.Lock()
		for i, x := range p.waiters {
			if x == w {
				p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
				scaleErr := p.scaleErr
				known, ready, trusted := len(p.instances), 0, 0
				for _, in := range p.instances {
					if in.ready {
						ready++
					}
					if in.trusted {
						trusted++
					}
				}
				p.mu.Unlock()
				state := fmt.Sprintf("%d instances known, %d answering, %d confirmed with Nomad", known, ready, trusted)
				if scaleErr != nil {
					return nil, true, fmt.Errorf("%w: no instance of %s became free in time (%s); the last scale request failed: %w", ErrThrottled, p.name, state, scaleErr)
				}
				return nil, true, fmt.Errorf("%w: no instance of %s became free in time (%s)", ErrThrottled, p.name, state)
			}
		}
		p.mu.Unlock()
		// Handed an instance (or a refusal) just as the wait ended.
		select {
		case inst := <-w.ch:
			p.Release(inst)
		case err := <-w.denied:
			return nil, true, err
		}
		return nil, true, ctx.Err()
	}
}

// Release frees an instance's slot and hands it to the next waiter.
func (p *Pool) Release(inst *Instance) {
	p.mu.Lock()
	defer p.mu.Unlock()
	inst.inflight--
	p.inflight--
	p.lastBusy = time.Now()
	p.dispatchLocked()
	p.reportLocked()
}

func (p *Pool) reportLocked() {
	p.set.metrics.Inflight.WithLabelValues(p.name).Set(float64(p.inflight))
}

// Forget drops an instance that refused or failed a connection.
func (p *Pool) Forget(inst *Instance) {
	p.mu.Lock()
	defer p.mu.Unlock()
	inst.gone = true
	inst.ready = false
	delete(p.instances, inst.id)
}

func (p *Pool) pickLocked() *Instance {
	var best *Instance
	conc := p.concurrency()
	for _, in := range p.instances {
		if !in.usable() || in.inflight >= conc {
			continue
		}
		if best == nil || in.inflight < best.inflight {
			best = in
		}
	}
	return best
}

func (p *Pool) dispatchLocked() {
	for len(p.waiters) > 0 {
		inst := p.pickLocked()
		if inst == nil {
			return
		}
		w := p.waiters[0]
		p.waiters = p.waiters[1:]
		inst.inflight++
		p.inflight++
		w.ch <- inst
	}
}

func (p *Pool) poke() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// watch follows the function's service in Consul. A new instance is probed
// directly, so a cold start never waits for Consul's check interval.
func (p *Pool) watch(ctx context.Context) {
	p.set.watchService(ctx, "instances of "+p.name, p.fn.Load().ConsulService(), false, p.watchWait,
		func(entries []*consulapi.ServiceEntry) { p.update(ctx, entries) })
}

// watchWait bounds the watch's blocking query. Consul (1.13 here) now and
// then leaves such a query asleep through a change of the service: a
// passing instance went unseen for 30 s, twice while a function's
// instances were replaced (hashicorp/consul#4810 and kin). So the watch
// asks again every 10 s, whatever it last saw, and a missed wake-up costs
// at most that.
func (p *Pool) watchWait() time.Duration { return 10 * time.Second }

// watchService follows a service's registrations in Consul (only the
// passing ones with passingOnly) with blocking queries of at most wait()
// (a minute when nil) until ctx ends.
func (s *Set) watchService(ctx context.Context, what, service string, passingOnly bool, wait func() time.Duration, apply func([]*consulapi.ServiceEntry)) {
	watch.Loop[[]*consulapi.ServiceEntry]{
		What: what,
		Log:  s.log,
		Query: func(ctx context.Context, index uint64) ([]*consulapi.ServiceEntry, uint64, error) {
			q := registry.BlockingQuery(ctx, index)
			if wait != nil {
				q.WaitTime = wait()
			}
			entries, meta, err := s.health.Service(service, "", passingOnly, q)
			if err != nil {
				return nil, 0, err
			}
			return entries, meta.LastIndex, nil
		},
		Apply: apply,
	}.Run(ctx)
}

// serviceAddr is where a registration is reached: its service address,
// or its node's when it names none.
func serviceAddr(e *consulapi.ServiceEntry) string {
	addr := e.Service.Address
	if addr == "" {
		addr = e.Node.Address
	}
	return net.JoinHostPort(addr, strconv.Itoa(e.Service.Port))
}

func (p *Pool) update(ctx context.Context, entries []*consulapi.ServiceEntry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := map[string]bool{}
	for _, e := range entries {
		id := e.Service.ID
		seen[id] = true
		status := e.Checks.AggregatedStatus()
		inst, ok := p.instances[id]
		if !ok {
			inst = &Instance{id: id, addr: serviceAddr(e)}
			p.instances[id] = inst
			go p.confirm(ctx, inst, e.Service)
			if status != consulapi.HealthPassing {
				go p.probe(ctx, inst)
			}
		}
		switch status {
		case consulapi.HealthPassing:
			inst.ready, inst.sawPassing = true, true
		case consulapi.HealthCritical:
			if inst.sawPassing {
				inst.ready = false
			}
		}
	}
	// An instance Consul no longer lists is stopping (Nomad deregisters
	// it a shutdown_delay before it signals it): it gets no new request,
	// and finishes those it runs.
	for id, inst := range p.instances {
		if !seen[id] && inst.pooled == nil {
			inst.gone, inst.ready = true, false
			delete(p.instances, id)
		}
	}
	p.set.metrics.Instances.WithLabelValues(p.name).Set(float64(len(p.instances)))
	p.dispatchLocked()
}

// probe asks a new instance's /healthz until it is ready. The host holds
// the answer until its handler is ready (protocol.QueryHealthWait), so
// the pool learns of it at once; until the host listens, its port refuses
// and the probe tries again shortly.
func (p *Pool) probe(ctx context.Context, inst *Instance) {
	const wait = 2 * time.Second
	client := httpclient.NewPlain(httpclient.Plain{Timeout: wait + 500*time.Millisecond})
	url := "http://" + inst.addr + "/healthz?" + protocol.QueryHealthWait + "=" + wait.String()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		p.mu.Lock()
		done := inst.gone || inst.ready
		p.mu.Unlock()
		if done {
			return
		}
		asked := time.Now()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := client.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				p.mu.Lock()
				inst.ready = true
				p.dispatchLocked()
				p.mu.Unlock()
				return
			}
		}
		// A refused connection (the host is not listening yet), or a host
		// that answers at once (an older one, or a failing handler): poll.
		if time.Since(asked) < wait/2 {
			watch.Sleep(ctx, 5*time.Millisecond)
		}
	}
}

// scaleLoop raises the group count as soon as demand needs more instances
// and lowers it to min_instances after idle_timeout without any.
func (p *Pool) scaleLoop(ctx context.Context) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			p.releasePooled(true)
			return
		case <-p.kick:
		case <-tick.C:
		}
		p.rescale(ctx)
		p.releasePooled(false)
	}
}

// placedLocked counts the instances that Nomad confirmed it placed.
func (p *Pool) placedLocked() int {
	n := 0
	for _, in := range p.instances {
		if in.trusted {
			n++
		}
	}
	return n
}

func (p *Pool) rescale(ctx context.Context) {
	f := p.fn.Load()
	jobID := f.NomadJob()
	p.mu.Lock()
	starved := len(p.waiters) > 0 && p.pickLocked() == nil
	fewer := p.placedLocked() < p.count
	p.mu.Unlock()
	// Someone may have scaled the job outside the gateway (the Nomad UI, a
	// redeploy): while requests wait and fewer instances exist than the
	// count we believe, trust Nomad's count over ours.
	if starved && (fewer || time.Since(p.readAt) > time.Second) && time.Since(p.readAt) > 100*time.Millisecond {
		p.known = false
	}
	if !p.known {
		callCtx, cancel := context.WithTimeout(ctx, ControlPlaneTimeout)
		st, _, err := p.set.jobs.ScaleStatus(jobID, (&nomadapi.QueryOptions{Namespace: f.Namespace}).WithContext(callCtx))
		cancel()
		if err != nil {
			p.setScaleErr(p.nomadFailed("read the scale status of", err))
			return
		}
		if tg, ok := st.TaskGroups[nomadjob.GroupName]; ok {
			p.mu.Lock()
			p.count, p.known, p.readAt = tg.Desired, true, time.Now()
			p.mu.Unlock()
		}
	}
	p.mu.Lock()
	demand := p.inflight + len(p.waiters)
	idleFor := time.Since(p.lastBusy)
	count := p.count
	p.mu.Unlock()

	need := (demand + max(f.Concurrency, 1) - 1) / max(f.Concurrency, 1)
	target := min(max(need, f.MinInstances), f.MaxInstances)
	if target > count {
		allowed, binding := p.set.room(f, p, target)
		if allowed <= count {
			p.setScaleErr(fmt.Errorf("not scaling %s beyond %d instances: the namespace's %s is reached", p.name, count, binding))
			return
		}
		target = allowed
	}
	var msg string
	switch {
	case target > count:
		msg = fmt.Sprintf("nimbus-gateway: %d requests in flight or waiting need %d instances (concurrency %d)", demand, target, f.Concurrency)
	case demand == 0 && count > f.MinInstances && idleFor >= f.IdleD:
		target = f.MinInstances
		msg = fmt.Sprintf("nimbus-gateway: idle for %s (idle_timeout %s), scaling to min_instances", idleFor.Round(time.Second), f.IdleD)
	default:
		return
	}
	callCtx, cancel := context.WithTimeout(ctx, ControlPlaneTimeout)
	_, _, err := p.set.jobs.Scale(jobID, nomadjob.GroupName, &target, msg, false, nil,
		(&nomadapi.WriteOptions{Namespace: f.Namespace}).WithContext(callCtx))
	cancel()
	if err != nil {
		p.setScaleErr(p.nomadFailed("scale", err))
		// Re-read the count next time: a refusal may mean it changed.
		p.known = false
		return
	}
	p.set.log.Info("scaled", "function", p.name, "from", count, "to", target, "reason", msg)
	p.mu.Lock()
	p.count = target
	p.mu.Unlock()
	p.setScaleErr(nil)
}

// nomadFailed classifies a failed Nomad call: a refusal for want of a
// right (ErrScaleDenied), or Nomad failing or not answering in time
// (ErrNomadUnavailable), named with its address.
func (p *Pool) nomadFailed(what string, err error) error {
	if strings.Contains(err.Error(), "blocked due to active deployment") {
		return fmt.Errorf("%w: Nomad refuses to %s %s until the deployment that replaces its instances ends", errDeploying, what, p.name)
	}
	if clients.Denied(err) {
		return fmt.Errorf("%w (%s): %w", ErrScaleDenied, p.name, err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: Nomad at %s did not answer within %s when asked to %s %s; retry later, and check the Nomad agent", ErrNomadUnavailable, p.set.nomadAddress, ControlPlaneTimeout, what, p.name)
	}
	return fmt.Errorf("%w: Nomad at %s failed when asked to %s %s: %w", ErrNomadUnavailable, p.set.nomadAddress, what, p.name, err)
}

// setScaleErr records the last scale failure (nil: success), logs a new
// one once, and fails the waiting requests at once when Nomad refused or
// failed and no instance can serve them: waiting longer cannot help them.
func (p *Pool) setScaleErr(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil && (p.scaleErr == nil || p.scaleErr.Error() != err.Error()) {
		p.set.log.Warn("scale request failed", "function", p.name, "err", err)
	}
	p.scaleErr = err
	final := errors.Is(err, ErrScaleDenied) || errors.Is(err, ErrNomadUnavailable)
	if final && p.pickLocked() == nil {
		for _, w := range p.waiters {
			w.denied <- err
		}
		p.waiters = nil
	}
}
