package host_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	// The handler in testdata/lambdago is built with the real aws-lambda-go;
	// importing it here keeps it in go.mod.
	_ "github.com/aws/aws-lambda-go/lambda"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
)

// Binaries built once for the package: the real nimbus-host and the test
// handlers.
var bins struct {
	dir, host, lambdago, httpserver string
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "nimbus-host-test-")
	if err != nil {
		panic(err)
	}
	bins.dir = dir
	bins.host = filepath.Join(dir, "nimbus-host")
	bins.lambdago = filepath.Join(dir, "lambdago", "bootstrap")
	bins.httpserver = filepath.Join(dir, "httpserver", "server")
	if err := testenv.BuildStatic(map[string]string{
		bins.host:       "./runtime/cmd/nimbus-host",
		bins.lambdago:   "./runtime/host/testdata/lambdago",
		bins.httpserver: "./runtime/host/testdata/httpserver",
	}); err != nil {
		panic(err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	// The Nomad integration test runs the same binaries from the slim chroot.
	testenv.Main(m, testenv.Options{ChrootEnv: map[string]string{dir: chrootDir}})
}

// lockedBuffer collects a process's output safely across goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type runningHost struct {
	url            string
	cmd            *exec.Cmd
	stdout, stderr *lockedBuffer
	exited         chan struct{}
}

// startHost runs nimbus-host with args and waits for it to become ready.
func startHost(t *testing.T, args ...string) *runningHost {
	t.Helper()
	return launchReady(t, nil, args...)
}

// launchReady runs nimbus-host with extra environment and waits until its
// handler has initialised.
func launchReady(t *testing.T, env []string, args ...string) *runningHost {
	t.Helper()
	h := launchHost(t, env, args...)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(h.url + "/healthz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return h
			}
		}
		select {
		case <-h.exited:
			t.Fatalf("nimbus-host exited: %v\nstderr:\n%s", h.cmd.ProcessState, h.stderr)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("nimbus-host never became ready\nstdout:\n%s\nstderr:\n%s", h.stdout, h.stderr)
	return nil
}

// listeningOn is nimbus-host's log line naming the address it bound.
var listeningOn = regexp.MustCompile(`"msg":"nimbus-host listening","addr":"(127\.0\.0\.1:\d+)"`)

// functionVariables is the environment a function's job gives the host
// for the function's own variables: each, and their names.
func functionVariables(vars ...string) []string {
	names := make([]string, 0, len(vars))
	for _, kv := range vars {
		name, _, _ := strings.Cut(kv, "=")
		names = append(names, name)
	}
	return append(vars, protocol.EnvFunctionVariables+"="+strings.Join(names, ","))
}

// launchHost runs nimbus-host without waiting for readiness. The host binds
// a port the kernel picks and names it in its log, so no other test package
// can take the port between choosing and binding it.
func launchHost(t *testing.T, env []string, args ...string) *runningHost {
	t.Helper()
	h := &runningHost{stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	h.cmd = exec.Command(bins.host, append([]string{"-listen", "127.0.0.1:0"}, args...)...)
	h.cmd.Env = append(os.Environ(), env...)
	h.cmd.Stdout, h.cmd.Stderr = h.stdout, h.stderr
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = h.cmd.Wait(); close(h.exited) }()
	for i := 0; ; i++ {
		if m := listeningOn.FindStringSubmatch(h.stderr.String()); m != nil {
			h.url = "http://" + m[1]
			break
		}
		if i == 500 {
			t.Fatalf("nimbus-host never said where it listens\nstderr:\n%s", h.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Cleanup(func() {
		_ = h.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-h.exited:
		case <-time.After(10 * time.Second):
			_ = h.cmd.Process.Kill()
			<-h.exited
		}
		if t.Failed() {
			t.Logf("nimbus-host stdout:\n%s\nstderr:\n%s", h.stdout, h.stderr)
		}
	})
	return h
}

type invokeResult struct {
	status int
	header http.Header
	body   []byte
}

func (r invokeResult) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", r.body, err)
	}
	return m
}

// invoke POSTs an event to the host, with optional headers as k, v pairs.
func (h *runningHost) invoke(t *testing.T, event string, kv ...string) invokeResult {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, h.url+"/invoke", strings.NewReader(event))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Set(kv[i], kv[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("invoke: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	return invokeResult{status: resp.StatusCode, header: resp.Header, body: body}
}

func deadlineIn(d time.Duration) string {
	return fmt.Sprint(time.Now().Add(d).UnixMilli())
}

// lambdaGoHost runs the aws-lambda-go handler as a provided runtime.
func lambdaGoHost(t *testing.T, extra ...string) *runningHost {
	t.Helper()
	args := append([]string{"-function", "gofn", "-runtime", "provided", "-task-root", filepath.Dir(bins.lambdago), "-memory-mb", "256"}, extra...)
	return startHost(t, args...)
}

func wantFunctionError(t *testing.T, r invokeResult, errType, msgPart string) {
	t.Helper()
	if r.status != http.StatusOK || r.header.Get("X-Nimbus-Function-Error") != "Unhandled" {
		t.Fatalf("want 200 with X-Nimbus-Function-Error: Unhandled, got %d %v: %s", r.status, r.header, r.body)
	}
	body := r.json(t)
	if body["errorType"] != errType || !strings.Contains(fmt.Sprint(body["errorMessage"]), msgPart) {
		t.Fatalf("want errorType %q with message containing %q, got %s", errType, msgPart, r.body)
	}
	if r.header.Get("X-Nimbus-Error-Type") != errType {
		t.Errorf("X-Nimbus-Error-Type = %q, want %q", r.header.Get("X-Nimbus-Error-Type"), errType)
	}
}

func wantHostError(t *testing.T, r invokeResult, status int, errType string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("want status %d, got %d: %s", status, r.status, r.body)
	}
	body := r.json(t)
	if body["errorType"] != errType || body["errorMessage"] == "" {
		t.Fatalf("want a JSON error of type %q, got %s", errType, r.body)
	}
}

// eventually reports whether the buffer comes to match re within a few
// seconds: a child's output reaches the test through a pipe, after the
// answer that the test already holds.
func eventually(b *lockedBuffer, re string) bool {
	rx := regexp.MustCompile(re)
	for i := 0; i < 250; i++ {
		if rx.MatchString(b.String()) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}
