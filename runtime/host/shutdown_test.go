package host_test

import (
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestSIGTERMFinishesInFlightThenStopsHandler(t *testing.T) {
	h := lambdaGoHost(t)
	pid := int(h.invoke(t, `{"action":"env"}`).json(t)["pid"].(float64))

	var wg sync.WaitGroup
	var slow invokeResult
	wg.Add(1)
	go func() {
		defer wg.Done()
		slow = h.invoke(t, `{"action":"sleep","n":800}`, "X-Nimbus-Deadline-Ms", deadlineIn(10*time.Second))
	}()
	waitInflight(t, h, 1)
	if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if slow.status != http.StatusOK || slow.json(t)["slept_ms"] != float64(800) {
		t.Fatalf("the invocation in flight at SIGTERM must finish: %d %s", slow.status, slow.body)
	}
	select {
	case <-h.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("nimbus-host did not exit after SIGTERM")
	}
	if code := h.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after a clean shutdown\n%s", code, h.stderr)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("handler process %d still runs after the host stopped", pid)
	}
	if resp, err := http.Get(h.url + "/healthz"); err == nil {
		_ = resp.Body.Close()
		t.Error("the host still accepts requests after shutdown")
	}
}

func TestInvalidConfigurationIsRefusedAtStart(t *testing.T) {
	tests := map[string]struct {
		args []string
		want string
	}{
		"unknown runtime":      {[]string{"-listen", "127.0.0.1:0", "-function", "f", "-runtime", "ruby"}, `runtime "ruby" is not one of provided, python3, nodejs, http`},
		"no function name":     {[]string{"-listen", "127.0.0.1:0", "-runtime", "provided"}, "function name is required"},
		"bad granularity":      {[]string{"-listen", "127.0.0.1:0", "-function", "f", "-runtime", "provided", "-billing-granularity", "10ms"}, "not 1ms or 100ms"},
		"concurrency not http": {[]string{"-listen", "127.0.0.1:0", "-function", "f", "-runtime", "provided", "-concurrency", "4"}, "needs the http runtime"},
		"bad timeout":          {[]string{"-listen", "127.0.0.1:0", "-function", "f", "-runtime", "provided", "-timeout", "soon"}, "not a positive duration"},
		"no listen address":    {[]string{"-function", "f", "-runtime", "provided"}, "pass -listen"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(bins.host, tc.args...)
			cmd.Env = []string{"PATH=/usr/bin:/bin"}
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("nimbus-host started with %v", tc.args)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("output %q should say %q", out, tc.want)
			}
		})
	}
}

func TestMissingHandlerKeepsInstanceUnready(t *testing.T) {
	h := launchHost(t, nil, "-function", "f", "-runtime", "provided", "-handler", "nope", "-task-root", t.TempDir())
	r := h.invoke(t, `{}`, "X-Nimbus-Deadline-Ms", deadlineIn(500*time.Millisecond))
	wantFunctionError(t, r, "Runtime.InitError", `handler "nope" not found`)
	resp, err := http.Get(h.url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/healthz = %d without a handler", resp.StatusCode)
	}
}
