package main

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/host"
)

// runPool runs a warm pool's instance: the host starts with no function,
// says it is ready to be one, and waits for the gateway to hand it a
// function of its runtime (POST /specialize, with its instance key). It
// then fetches and verifies that function's package, starts its handler
// and serves it, and only it, for the rest of its life: a second
// specialisation is refused, and the gateway releases the instance by
// stopping its allocation.
func runPool(runtime string, logger *slog.Logger) error {
	if err := host.EnableOrphanAdoption(); err != nil {
		logger.Warn("descendants that leave a handler's process group will outlive it", "err", err)
	}
	path := os.Getenv(protocol.EnvInstanceKeyFile)
	if path == "" {
		return errors.New("a pool instance needs " + protocol.EnvInstanceKeyFile + ": only the gateway may hand it a function")
	}
	key, err := instanceKey(path)
	if err != nil {
		return fmt.Errorf("instance key: %w", err)
	}
	memory, err := strconv.Atoi(os.Getenv(protocol.EnvMemoryMB))
	if err != nil || memory <= 0 {
		return fmt.Errorf("%s %q is not the pool's memory size in MB", protocol.EnvMemoryMB, os.Getenv(protocol.EnvMemoryMB))
	}
	listen := listenAddr(os.Getenv)
	if listen == "" {
		return errors.New("no address to listen on: run under Nomad with a port labelled http")
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	p := &pooled{runtime: runtime, memoryMB: memory, key: key, log: logger}
	p.lastUse.Store(time.Now().UnixNano())
	go p.exitWhenIdle(specialisedIdleLimit)
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	logger.Info("nimbus-host listening", "addr", ln.Addr().String(), "pool_runtime", runtime, "pool_memory_mb", memory)
	return serve(srv, ln, 30*time.Second, logger, p.shutdown)
}

// pooled serves a pool instance: its own answers until it is specialised,
// then the function's host.
type pooled struct {
	runtime  string
	memoryMB int
	key      string
	log      *slog.Logger

	lastUse atomic.Int64 // unix nanoseconds of the last invocation

	mu       sync.Mutex
	function string     // set once a specialisation begins
	h        *host.Host // set once it succeeded
	served   http.Handler
}

func (p *pooled) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	served, function := p.served, p.function
	p.mu.Unlock()
	switch {
	case r.URL.Path == protocol.PathSpecialize && r.Method == http.MethodPost:
		p.specialize(w, r)
	case served != nil:
		if r.URL.Path == "/invoke" {
			p.lastUse.Store(time.Now().UnixNano())
		}
		served.ServeHTTP(w, r)
	case r.URL.Path == "/healthz" && r.Method == http.MethodGet:
		status := "pooled: waiting for a function"
		if function != "" {
			status = "specialising for " + function
		}
		writeOK(w, map[string]any{"ready": function == "", "status": status, "pool_runtime": p.runtime, "pool_memory_mb": p.memoryMB})
	default:
		host.WriteError(w, http.StatusNotFound, protocol.ErrInvalidRequest, r.Method+" "+r.URL.Path+" is not served by a pool instance before the gateway hands it a function")
	}
}

func (p *pooled) specialize(w http.ResponseWriter, r *http.Request) {
	if subtle.ConstantTimeCompare([]byte(r.Header.Get(protocol.HeaderInstanceKey)), []byte(p.key)) != 1 {
		host.WriteError(w, http.StatusUnauthorized, protocol.ErrTypeUnauthorized, "only the Nimbus gateway hands a pool instance its function")
		return
	}
	var spec protocol.Specialization
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&spec); err != nil {
		host.WriteError(w, http.StatusBadRequest, protocol.ErrInvalidRequest, "the specialisation is not JSON: "+err.Error())
		return
	}
	name := spec.Environment[protocol.EnvFunctionName]
	p.mu.Lock()
	if p.function != "" {
		taken := p.function
		p.mu.Unlock()
		host.WriteError(w, http.StatusConflict, protocol.ErrInvalidRequest, fmt.Sprintf("this pool instance serves function %s: an instance serves one function for its whole life", taken))
		return
	}
	if err := p.check(spec.Environment); err != nil {
		p.mu.Unlock()
		host.WriteError(w, http.StatusBadRequest, protocol.ErrInvalidRequest, err.Error())
		return
	}
	p.function = name
	p.lastUse.Store(time.Now().UnixNano())
	p.mu.Unlock()
	p.log.Info("specialising", "function", name)

	h, err := p.start(r.Context(), spec.Environment)
	if err != nil {
		// The instance is spent either way: the gateway releases it.
		p.log.Error("specialisation failed", "function", name, "err", err)
		host.WriteError(w, http.StatusBadGateway, protocol.ErrInvalidRequest, err.Error())
		return
	}
	p.mu.Lock()
	p.h, p.served = h, h.Handler()
	p.mu.Unlock()
	p.log.Info("specialised", "function", name)
	writeOK(w, map[string]any{"function": name, "ready": true})
}

// check refuses a specialisation this instance cannot honestly serve.
func (p *pooled) check(env map[string]string) error {
	switch {
	case env[protocol.EnvFunctionName] == "":
		return errors.New("the specialisation names no function (" + protocol.EnvFunctionName + ")")
	case env[protocol.EnvRuntime] != p.runtime:
		return fmt.Errorf("function runtime %q does not match this pool's %q", env[protocol.EnvRuntime], p.runtime)
	case env[protocol.EnvSecrets] != "":
		return errors.New("a function with secrets needs its own job's workload identity; it is never served from a pool")
	case env[protocol.EnvPackageURL] == "" || env[protocol.EnvPackageSHA256] == "":
		return errors.New("the specialisation names no package to fetch (" + protocol.EnvPackageURL + ", " + protocol.EnvPackageSHA256 + ")")
	}
	if m, err := strconv.Atoi(env[protocol.EnvMemoryMB]); err != nil || m > p.memoryMB {
		return fmt.Errorf("function memory %q MB does not fit this pool's %d MB", env[protocol.EnvMemoryMB], p.memoryMB)
	}
	return nil
}

// ownSettings stay the pool instance's: where it listens, its key, where
// it reaches the gateway and its interpreters.
var ownSettings = map[string]bool{
	protocol.EnvListen: true, protocol.EnvInstanceKeyFile: true, protocol.EnvGatewayForFunctions: true,
	protocol.EnvPython: true, protocol.EnvNode: true, protocol.EnvPoolRuntime: true, protocol.EnvTaskRoot: true,
}

// start fetches the function's code and starts its handler, ready.
func (p *pooled) start(ctx context.Context, env map[string]string) (*host.Host, error) {
	getenv := func(k string) string {
		if v, ok := env[k]; ok && !ownSettings[k] && !strings.HasPrefix(k, "NOMAD_") {
			return v
		}
		return os.Getenv(k)
	}
	cfg, _, err := parseConfig(nil, getenv)
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.InstanceKey = p.key
	// The function's memory size, held by the host below the pool's.
	cfg.EnforceMemory = cfg.MemoryMB < p.memoryMB
	// The handler's variables: the function's own, as its job names them.
	vars, _ := protocol.FunctionVariables(env)
	cfg.Env = host.EnvList(vars)
	if err := fetchCode(cfg, getenv(protocol.EnvPackageURL), getenv(protocol.EnvPackageSHA256), p.log); err != nil {
		return nil, err
	}
	h, err := host.New(cfg, host.Options{Logger: p.log})
	if err != nil {
		return nil, err
	}
	ready, cancel := context.WithTimeout(ctx, cfg.Timeout+10*time.Second)
	defer cancel()
	h.WaitReady(ready)
	if ok, status := h.Ready(); !ok {
		return h, fmt.Errorf("the handler of %s did not become ready: %s", cfg.FunctionName, status)
	}
	return h, nil
}

// specialisedIdleLimit is how long a specialised instance lives without
// an invocation. The gateway that specialised it releases it much sooner;
// this ends one that a restarted gateway no longer knows. Nomad then
// places a fresh instance (the pool's restart policy never restarts in
// place).
const specialisedIdleLimit = 10 * time.Minute

// exitWhenIdle stops the host once it has served a function and then gone
// idle for limit.
func (p *pooled) exitWhenIdle(limit time.Duration) {
	for range time.Tick(limit / 10) {
		p.mu.Lock()
		function := p.function
		p.mu.Unlock()
		if function != "" && time.Since(time.Unix(0, p.lastUse.Load())) > limit {
			p.log.Info("specialised pool instance idle; exiting so that Nomad replaces it", "function", function, "idle_limit", limit.String())
			_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
			return
		}
	}
}

func (p *pooled) shutdown(ctx context.Context) error {
	p.mu.Lock()
	h := p.h
	p.mu.Unlock()
	if h == nil {
		return nil
	}
	return h.Shutdown(ctx)
}

// writeOK answers 200 with v as JSON; refusals go through host.WriteError.
func writeOK(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(protocol.HeaderProtocol, protocol.Version)
	_ = json.NewEncoder(w).Encode(v)
}
