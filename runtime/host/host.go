package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/backoff"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/logbuf"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
)

// Host runs one function instance's handler and serves its invocations.
type Host struct {
	cfg          Config
	log          *slog.Logger
	stdout       *syncWriter // handler output and START/END/REPORT lines
	stderr       *syncWriter
	bootstrapDir string
	// ownsBootstrapDir: the host made a temp dir and removes it at shutdown.
	ownsBootstrapDir bool
	mem              memoryMeter
	metrics          *metrics

	slots    chan struct{} // free invocation slots
	inflight sync.WaitGroup
	closing  atomic.Bool
	// stopped ends when the host shuts down: the supervisor's pauses
	// between restarts end with it.
	stopped context.Context
	stop    context.CancelFunc

	mu      sync.Mutex
	proc    *handlerProc
	changed chan struct{} // closed when proc is replaced
	lastErr error         // why the last handler could not start
}

// Options carries the host's outputs; nil fields mean the process's own.
type Options struct {
	Stdout, Stderr io.Writer
	Logger         *slog.Logger
}

// New validates cfg, writes the language bootstraps and starts the handler
// so that the first invocation finds it initialised.
func New(cfg Config, opts Options) (*Host, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewJSONHandler(opts.Stderr, nil))
	}
	h := &Host{
		cfg: cfg,
		log: opts.Logger,
		// Handler output and the START/END/REPORT lines leave in one
		// write per invocation (or per 100 ms of background output): under
		// Nomad every write to stdout wakes the task's log collector.
		stdout:  &syncWriter{w: logbuf.New(opts.Stdout, 100*time.Millisecond, 64<<10)},
		stderr:  &syncWriter{w: opts.Stderr},
		mem:     newMemoryMeter(),
		metrics: newMetrics(),
		slots:   make(chan struct{}, cfg.Concurrency),
		changed: make(chan struct{}),
	}
	h.stopped, h.stop = context.WithCancel(context.Background())
	for range cfg.Concurrency {
		h.slots <- struct{}{}
	}
	dir, created, err := writeBootstraps(cfg.RuntimeDir, cfg.Runtime)
	if err != nil {
		return nil, err
	}
	h.bootstrapDir, h.ownsBootstrapDir = dir, created
	go h.supervise()
	return h, nil
}

// supervise keeps one handler process running, replacing it whenever it
// ends, with a growing pause (backoff.Fast) while it keeps failing before
// it serves.
func (h *Host) supervise() {
	retry := backoff.Fast.Start()
	for !h.closing.Load() {
		p, err := h.startProc()
		if err != nil {
			h.log.Error("handler cannot start", "err", err)
			h.mu.Lock()
			h.lastErr = err
			h.mu.Unlock()
			_ = retry.Wait(h.stopped)
			continue
		}
		h.setProc(p)
		go h.logReady(p)
		if h.cfg.EnforceMemory {
			go h.enforceMemory(p)
		}
		<-p.exited
		h.metrics.restarts.Inc()
		if h.closing.Load() {
			return
		}
		if p.firstServed.Load() || p.killedByHost.Load() {
			retry.Reset()
		} else {
			wait := retry.Next()
			h.log.Warn("handler exited before serving", "err", p.exitErr, "retry_in", wait)
			_ = backoff.Sleep(h.stopped, wait)
		}
	}
}

// logReady says when a handler finished its init, and how long that took:
// the last step of a cold start inside the instance.
func (h *Host) logReady(p *handlerProc) {
	select {
	case <-p.initDone:
		h.log.Info("handler ready", "init_ms", float64(p.initDuration.Microseconds())/1000)
	case <-p.exited:
	}
}

func (h *Host) setProc(p *handlerProc) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.proc, h.lastErr = p, nil
	close(h.changed)
	h.changed = make(chan struct{})
}

// current returns the handler process (nil before the first start) and a
// channel closed when it is replaced.
func (h *Host) current() (*handlerProc, <-chan struct{}, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.proc, h.changed, h.lastErr
}

// Ready reports whether the handler has initialised, and if not, why.
func (h *Host) Ready() (bool, string) {
	p, _, err := h.current()
	switch {
	case h.closing.Load():
		return false, "shutting down"
	case err != nil:
		return false, err.Error()
	case p == nil:
		return false, "starting the handler"
	case p.ready():
		return true, "ready"
	case p.hasExited():
		return false, "handler exited; restarting it"
	default:
		return false, "handler initialising"
	}
}

// WaitReady returns when the handler is ready or ctx ends, whichever is
// first.
func (h *Host) WaitReady(ctx context.Context) {
	for {
		p, changed, _ := h.current()
		if p != nil && p.ready() || h.closing.Load() {
			return
		}
		var initDone, exited <-chan struct{}
		if p != nil {
			initDone, exited = p.initDone, p.exited
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-initDone:
		case <-exited:
			// Its replacement arrives through changed.
			select {
			case <-ctx.Done():
				return
			case <-changed:
			}
		}
	}
}

// ErrBusy is returned when every invocation slot is taken.
var ErrBusy = errors.New("the instance is busy with other invocations")

// ErrClosing is returned once Shutdown has begun.
var ErrClosing = errors.New("the instance is shutting down")

// Request is one invocation as the gateway sends it.
type Request struct {
	ID            string
	Deadline      time.Time
	Payload       []byte
	TraceID       string
	ClientContext string
	Identity      string
	// Qualifier is the version or alias the caller invoked, if any.
	Qualifier string
}

// Invoke runs one invocation to its end: a result, a function error, a
// timeout at the deadline, or the handler's crash. It returns ErrBusy at
// once when no slot is free rather than queueing.
func (h *Host) Invoke(req Request) (Result, error) {
	if h.closing.Load() {
		return Result{}, ErrClosing
	}
	select {
	case <-h.slots:
	default:
		h.metrics.busy.Inc()
		return Result{}, ErrBusy
	}
	h.inflight.Add(1)
	h.metrics.inflight.Inc()
	defer func() {
		h.metrics.inflight.Dec()
		h.inflight.Done()
		h.slots <- struct{}{}
	}()

	if req.ID == "" {
		req.ID = protocol.NewRequestID()
	}
	// The function's timeout bounds every invocation, whatever deadline
	// the caller asks for: a later one would let a caller run the function
	// past its timeout (up to forever) and its billing past its limit.
	if limit := time.Now().Add(h.cfg.Timeout); req.Deadline.IsZero() || req.Deadline.After(limit) {
		req.Deadline = limit
	}
	if req.TraceID == "" {
		req.TraceID = newTraceID()
	}
	inv := newInvocation(req.ID, req.Deadline, req.Payload)
	inv.traceID, inv.clientContext, inv.identity, inv.qualifier = req.TraceID, req.ClientContext, req.Identity, req.Qualifier

	res := Result{RequestID: req.ID, MemorySizeMB: h.cfg.MemoryMB}
	h.emit(inv, startLine(req.ID, h.cfg.FunctionVersion))

	var out outcome
	var p *handlerProc
	var start time.Time
	for {
		var failed *outcome
		var waited time.Duration
		p, failed, waited = h.awaitHandler(inv)
		start = time.Now()
		if failed != nil {
			// Init failed or ran out the deadline: that time is the duration.
			out, start = *failed, start.Add(-waited)
			break
		}
		cold, initDuration := h.claimInit(p)
		res.ColdStart, res.InitDuration = res.ColdStart || cold, initDuration
		if h.cfg.Runtime == RuntimeHTTP {
			out = h.proxyHTTP(p, inv)
			break
		}
		var delivered bool
		var at time.Time
		if out, delivered, at = h.runLambda(p, inv); delivered {
			// Billing starts when the handler takes the event, as on Lambda.
			start = at
			break
		}
		// The handler exited between invocations, before it took this
		// event: nothing ran, so wait for its replacement.
	}
	res.Duration = time.Since(start)
	res.BilledDuration = billed(res.Duration, h.cfg.BillingGranularity)
	res.Body, res.Err = out.body, out.err
	res.MaxMemoryMB = h.mem.maxUsedMB(p)

	h.emit(inv, endLine(req.ID))
	h.emit(inv, reportLine(res))
	h.stdout.flush()
	res.LogTail = inv.logs.String()
	h.metrics.observe(res)
	return res, nil
}

// claimInit reports a handler process's init on the first invocation that
// it serves, which is the cold start.
func (h *Host) claimInit(p *handlerProc) (bool, time.Duration) {
	if !p.firstServed.CompareAndSwap(false, true) {
		return false, 0
	}
	h.metrics.coldStarts.Inc()
	return true, p.initDuration
}

// emit writes a host line to stdout and to the invocation's log tail.
func (h *Host) emit(inv *invocation, line string) {
	h.stdout.write(line)
	inv.logs.write(line)
}

// awaitHandler waits until a handler process is initialised. If it cannot
// be (the deadline passes, init fails), it returns the outcome to report
// and how long the wait took.
func (h *Host) awaitHandler(inv *invocation) (*handlerProc, *outcome, time.Duration) {
	begin := time.Now()
	timer := time.NewTimer(time.Until(inv.deadline))
	defer timer.Stop()
	for {
		p, changed, startErr := h.current()
		if p == nil || p.hasExited() {
			// Between processes: wait for the supervisor's next one.
			select {
			case <-changed:
				continue
			case <-timer.C:
				msg := "the handler did not start before the deadline"
				if startErr != nil {
					msg += ": " + startErr.Error()
				}
				return nil, &outcome{err: &protocol.ErrorBody{ErrorType: protocol.ErrInit, ErrorMessage: msg}}, time.Since(begin)
			}
		}
		select {
		case <-p.initDone:
			return p, nil, time.Since(begin)
		case <-p.exited:
			if p.killedByHost.Load() {
				// An earlier invocation's timeout ended this process during
				// its init: that is not this invocation's failure, so wait
				// for the replacement.
				continue
			}
			if eb := p.initErr.Load(); eb != nil {
				return p, &outcome{err: eb}, time.Since(begin)
			}
			return p, &outcome{err: h.exitOutcome(p, inv.id)}, time.Since(begin)
		case <-timer.C:
			p.kill()
			return p, &outcome{err: h.timeoutError(inv)}, time.Since(begin)
		}
	}
}

// runLambda hands the event to a Runtime API handler and waits for its
// answer, its exit or the deadline. delivered is false when the handler
// exited without taking the event.
func (h *Host) runLambda(p *handlerProc, inv *invocation) (out outcome, delivered bool, deliveredAt time.Time) {
	p.current.Store(inv)
	defer func() {
		p.drainOutput()
		p.current.Store(nil)
	}()
	timer := time.NewTimer(time.Until(inv.deadline))
	defer timer.Stop()

	begin := time.Now()
	if p.killedByHost.Load() {
		// The process is being ended (an earlier timeout): it must not take
		// another event. Wait for its replacement instead.
		<-p.exited
		return outcome{}, false, begin
	}
	select {
	case p.next <- inv:
	case <-p.exited:
		return outcome{}, false, begin
	case <-timer.C:
		p.kill()
		return outcome{err: h.timeoutError(inv)}, true, begin
	}
	at := time.Now()
	select {
	case o := <-inv.done:
		return o, true, at
	case <-p.exited:
		// An error posted just before exiting (a panic) wins over the exit.
		select {
		case o := <-inv.done:
			return o, true, at
		default:
			return outcome{err: h.exitOutcome(p, inv.id)}, true, at
		}
	case <-timer.C:
		p.kill()
		return outcome{err: h.timeoutError(inv)}, true, at
	}
}

func (h *Host) timeoutError(inv *invocation) *protocol.ErrorBody {
	return &protocol.ErrorBody{
		ErrorType:    protocol.ErrTimeout,
		ErrorMessage: fmt.Sprintf("RequestId: %s Error: Task timed out after %.2f seconds", inv.id, inv.allowance.Seconds()),
	}
}

// Shutdown stops taking invocations, lets those in flight finish (each is
// bounded by its deadline, and ctx bounds the wait), then stops the handler.
func (h *Host) Shutdown(ctx context.Context) error {
	if !h.closing.CompareAndSwap(false, true) {
		return nil
	}
	done := make(chan struct{})
	go func() { h.inflight.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("invocations still in flight at shutdown: %w", ctx.Err())
	}
	h.stop()
	if p, _, _ := h.current(); p != nil {
		p.stop(2 * time.Second)
	}
	if h.ownsBootstrapDir {
		_ = os.RemoveAll(h.bootstrapDir)
	}
	h.stdout.close()
	return err
}

// functionARN is the Lambda-style ARN handlers see.
func (h *Host) functionARN() string {
	return fmt.Sprintf("arn:aws:lambda:%s:000000000000:function:%s", h.cfg.Region, h.cfg.FunctionName)
}

// invokedARN is the ARN the caller invoked: the function's, qualified by
// the version or alias it named, as Lambda's invoked function ARN is.
func (h *Host) invokedARN(inv *invocation) string {
	if inv.qualifier == "" {
		return h.functionARN()
	}
	return h.functionARN() + ":" + inv.qualifier
}

// handlerEnv is the handler's environment, and all of it: the function's
// own variables, its secrets and the variables Lambda handlers read. The
// host's own environment (Nomad's task variables, and the client agent's
// environment that the exec driver passes on) never reaches the handler.
func (h *Host) handlerEnv(runtimeAPI string) []string {
	c := h.cfg
	env := make([]string, 0, len(c.Env)+len(c.Secrets)+24)
	set := map[string]bool{}
	for _, kv := range c.Env {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, protocol.EnvPrefix) {
			continue
		}
		env = append(env, kv)
		set[k] = true
	}
	add := func(k, v string, override bool) {
		if override || !set[k] {
			env = append(env, k+"="+v)
		}
	}
	env = append(env, c.Secrets...)
	stream := fmt.Sprintf("%s/[%s]%s", time.Now().UTC().Format("2006/01/02"), c.FunctionVersion, instanceID())
	add("AWS_LAMBDA_FUNCTION_NAME", c.FunctionName, true)
	add("AWS_LAMBDA_FUNCTION_VERSION", c.FunctionVersion, true)
	add("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", fmt.Sprint(c.MemoryMB), true)
	add("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/"+c.FunctionName, true)
	add("AWS_LAMBDA_LOG_STREAM_NAME", stream, true)
	add("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand", true)
	add("AWS_EXECUTION_ENV", "AWS_Lambda_"+c.Runtime, true)
	add("AWS_REGION", c.Region, false)
	add("AWS_DEFAULT_REGION", c.Region, false)
	add("_HANDLER", c.Handler, true)
	add("LAMBDA_TASK_ROOT", c.TaskRoot, true)
	add("LAMBDA_RUNTIME_DIR", h.bootstrapDir, true)
	add("TZ", ":UTC", false)
	add("LANG", "en_US.UTF-8", false)
	add("PATH", "/usr/local/bin:/usr/bin:/bin", false)
	if c.GatewayURL != "" {
		add(protocol.EnvLambdaEndpoint, c.GatewayURL, false)
	}
	if runtimeAPI != "" {
		add("AWS_LAMBDA_RUNTIME_API", runtimeAPI, true)
	}
	return env
}

// instanceID names this instance in log stream names: Nomad's allocation
// id where there is one.
func instanceID() string {
	if id := os.Getenv("NOMAD_ALLOC_ID"); id != "" {
		return strings.ReplaceAll(id, "-", "")
	}
	return protocol.RandomHex(16)
}

// newTraceID follows X-Ray's format, which Lambda handlers expect.
func newTraceID() string {
	return fmt.Sprintf("Root=1-%08x-%s;Parent=%s;Sampled=0", time.Now().Unix(), protocol.RandomHex(12), protocol.RandomHex(8))
}
