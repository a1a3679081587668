package host

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
)

// handlerProc is one run of the user's handler. The host runs one at a time
// and replaces it after it exits, times out or crashes, so every
// replacement gets a fresh init, as on Lambda.
type handlerProc struct {
	cmd     *exec.Cmd
	started time.Time

	initOnce     sync.Once
	initDone     chan struct{} // closed when the handler is ready for work
	initDuration time.Duration

	exited  chan struct{}
	exitErr error // set before exited is closed
	// killedByHost marks exits the host caused (timeout, shutdown), so they
	// are not reported as crashes or out-of-memory kills.
	killedByHost atomic.Bool
	// killedForMemory marks a kill by the host's own memory limit
	// (Config.EnforceMemory).
	killedForMemory atomic.Bool

	// treeMu orders signals to the process group against the reaping of
	// its leader (see proctree.go).
	treeMu sync.Mutex
	reaped bool

	initErr atomic.Pointer[protocol.ErrorBody] // posted to /runtime/init/error

	// Runtime API modes.
	api     *http.Server
	apiAddr string
	next    chan *invocation
	current atomic.Pointer[invocation]

	// http mode.
	port int

	outputs     []*outputStream
	firstServed atomic.Bool
	oomBase     uint64 // the cgroup's OOM kill count when it started
	peakKB      atomic.Uint64
	sampledAt   atomic.Int64 // unix nanoseconds of the last peakKB sample
}

// markInit records the end of init, once.
func (p *handlerProc) markInit() {
	p.initOnce.Do(func() {
		p.initDuration = time.Since(p.started)
		close(p.initDone)
	})
}

func (p *handlerProc) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

func (p *handlerProc) ready() bool {
	select {
	case <-p.initDone:
		return !p.hasExited()
	default:
		return false
	}
}

// kill stops the handler's whole process tree at once.
func (p *handlerProc) kill() {
	p.killedByHost.Store(true)
	p.signalTree(syscall.SIGKILL)
}

// stop asks the handler to exit, then kills it after grace.
func (p *handlerProc) stop(grace time.Duration) {
	p.killedByHost.Store(true)
	if p.cmd.Process == nil {
		return
	}
	p.signalTree(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(grace):
		p.kill()
		<-p.exited
	}
}

// command builds the handler's command line for the configured runtime.
func (h *Host) command() (string, []string, error) {
	c := h.cfg
	switch c.Runtime {
	case RuntimePython:
		return c.Python, []string{"-u", filepath.Join(h.bootstrapDir, "bootstrap.py")}, nil
	case RuntimeNode:
		return c.Node, []string{filepath.Join(h.bootstrapDir, "bootstrap.js")}, nil
	default:
		path := c.Handler
		if !filepath.IsAbs(path) {
			path = filepath.Join(c.TaskRoot, path)
		}
		st, err := os.Stat(path)
		if err != nil {
			return "", nil, fmt.Errorf("handler %q not found in the function's code: %w", c.Handler, err)
		}
		if st.IsDir() || st.Mode()&0o111 == 0 {
			return "", nil, fmt.Errorf("handler %q is not an executable file; check its mode in the zip", c.Handler)
		}
		return path, nil, nil
	}
}

// startProc starts a handler process with its Runtime API (or port).
func (h *Host) startProc() (*handlerProc, error) {
	bin, args, err := h.command()
	if err != nil {
		return nil, err
	}
	p := &handlerProc{
		initDone: make(chan struct{}),
		exited:   make(chan struct{}),
		next:     make(chan *invocation),
	}
	extra := []string{}
	if h.cfg.Runtime == RuntimeHTTP {
		if p.port, err = freePort(); err != nil {
			return nil, err
		}
		extra = append(extra, "PORT="+strconv.Itoa(p.port))
	} else {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("runtime API listener: %w", err)
		}
		p.apiAddr = ln.Addr().String()
		p.api = &http.Server{Handler: h.runtimeAPI(p), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = p.api.Serve(ln) }()
	}

	cmd := exec.Command(bin, args...)
	cmd.Dir = h.cfg.TaskRoot
	cmd.Env = append(h.handlerEnv(p.apiAddr), extra...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, err := newOutputStream(cmd, &cmd.Stdout)
	if err != nil {
		return nil, err
	}
	stderr, err := newOutputStream(cmd, &cmd.Stderr)
	if err != nil {
		return nil, err
	}
	p.outputs = []*outputStream{stdout, stderr}
	p.cmd = cmd
	p.oomBase, _ = h.mem.oomKills()
	p.started = time.Now()
	err = startWithoutNewPrivileges(cmd)
	stdout.closeWriter()
	stderr.closeWriter()
	if err != nil {
		p.closeAPI()
		return nil, fmt.Errorf("start handler: %w", err)
	}
	copied := make(chan struct{})
	go func() {
		var copying sync.WaitGroup
		copying.Add(2)
		go func() { defer copying.Done(); h.copyLines(p, stdout, h.stdout) }()
		go func() { defer copying.Done(); h.copyLines(p, stderr, h.stderr) }()
		copying.Wait()
		close(copied)
	}()
	go h.reap(p, copied)
	if h.cfg.Runtime == RuntimeHTTP {
		go h.probeHTTP(p)
	}
	return p, nil
}

// reap waits for the handler's leader to exit, ends the rest of its tree,
// lets its last output lines through, and only then reaps the leader and
// marks the process exited.
func (h *Host) reap(p *handlerProc, copied <-chan struct{}) {
	awaitLeaderExit(p.cmd.Process.Pid)
	p.endTree()
	select {
	case <-copied:
	case <-time.After(outputGrace):
		// Something outside the tree still holds the pipes open; its
		// output is not this handler's any more.
		h.log.Warn("handler output still open after its process tree ended; closing it")
		for _, o := range p.outputs {
			_ = o.r.Close()
		}
		<-copied
	}
	p.treeMu.Lock()
	p.exitErr = p.cmd.Wait()
	p.reaped = true
	p.treeMu.Unlock()
	p.closeAPI()
	close(p.exited)
}

// outputGrace bounds the wait for a dead handler's pipes to reach EOF.
const outputGrace = 2 * time.Second

func (p *handlerProc) closeAPI() {
	if p.api != nil {
		_ = p.api.Close()
	}
}

// probeHTTP marks an http handler ready once its port accepts connections.
func (h *Host) probeHTTP(p *handlerProc) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port))
	for !p.hasExited() {
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			_ = conn.Close()
			p.markInit()
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// copyLines tags each line of the handler's output with the request id of
// the invocation in flight, and keeps it for that invocation's log tail.
func (h *Host) copyLines(p *handlerProc, out *outputStream, w *syncWriter) {
	defer func() { _ = out.r.Close() }()
	br := bufio.NewReaderSize(out, 64*1024)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			text := string(line)
			if text[len(text)-1] == '\n' {
				text = text[:len(text)-1]
			}
			id := "INIT"
			inv := p.current.Load()
			if inv != nil {
				id = inv.id
			} else if p.firstServed.Load() {
				id = "-"
			}
			tagged := fmt.Sprintf("%s\t%s\t%s\n", time.Now().UTC().Format("2006-01-02T15:04:05.000Z"), id, text)
			w.write(tagged)
			if inv != nil {
				inv.logs.write(tagged)
			}
			out.handled.Add(int64(len(line)))
		}
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				continue // a very long line goes out in pieces
			}
			return
		}
	}
}

// exitOutcome describes why a handler process ended during an invocation.
func (h *Host) exitOutcome(p *handlerProc, requestID string) *protocol.ErrorBody {
	var status string
	killed := false
	var exitErr *exec.ExitError
	if errors.As(p.exitErr, &exitErr) {
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			status = "signal: " + ws.Signal().String()
			killed = ws.Signal() == syscall.SIGKILL
		} else {
			status = "exit status " + strconv.Itoa(exitErr.ExitCode())
		}
	} else if p.exitErr == nil {
		status = "exit status 0"
	} else {
		status = p.exitErr.Error()
	}
	if killed && (p.killedForMemory.Load() || !p.killedByHost.Load() && h.mem.oomKilledSince(p, h.cfg.MemoryMB)) {
		return &protocol.ErrorBody{
			ErrorType:    protocol.ErrOutOfMemory,
			ErrorMessage: fmt.Sprintf("RequestId: %s Error: Runtime exited with error: %s (out of memory: the function used more than its %d MB)", requestID, status, h.cfg.MemoryMB),
		}
	}
	return &protocol.ErrorBody{
		ErrorType:    protocol.ErrExit,
		ErrorMessage: fmt.Sprintf("RequestId: %s Error: Runtime exited with error: %s", requestID, status),
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitContext returns a context that ends at the deadline.
func waitContext(deadline time.Time) (context.Context, context.CancelFunc) {
	return context.WithDeadline(context.Background(), deadline)
}
