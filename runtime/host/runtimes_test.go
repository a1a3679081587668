package host_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// interpreter is the system python3 or node in /usr/bin: the one function
// instances run through the nimbus-usr volume, whatever comes first on the
// test's PATH. .ci/run installs them, so a missing one fails, not skips.
func interpreter(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join("/usr/bin", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is not installed: %v (.ci/run installs it; on a workstation install Debian's python3 and nodejs)", p, err)
	}
	return p
}

func pythonHost(t *testing.T, handler string) *runningHost {
	t.Helper()
	root, _ := filepath.Abs("testdata/python")
	return startHost(t, "-function", "pyfn", "-runtime", "python3", "-handler", handler, "-task-root", root,
		"-python", interpreter(t, "python3"), "-memory-mb", "192")
}

func TestPythonBootstrap(t *testing.T) {
	h := pythonHost(t, "app.handler")
	r := h.invoke(t, `{"action":"echo","value":"py"}`, "X-Nimbus-Request-Id", "py-1", "X-Nimbus-Deadline-Ms", deadlineIn(10*time.Second))
	got := r.json(t)
	if r.status != http.StatusOK || got["echo"] != "py" || got["request_id"] != "py-1" || got["function_name"] != "pyfn" ||
		got["memory"] != "192" || got["remaining_ok"] != true {
		t.Fatalf("python handler answered %d %s", r.status, r.body)
	}

	// The bootstrap's own Runtime API client carries large and non-ASCII
	// payloads whole, both ways.
	big := strings.Repeat("ü€-", 350_000) // 2.1 MB of UTF-8 in, 4.6 MB out as json.dumps escapes it
	r = h.invoke(t, `{"action":"echo","value":"`+big+`"}`, "X-Nimbus-Deadline-Ms", deadlineIn(20*time.Second))
	if got := r.json(t); r.status != http.StatusOK || got["echo"] != big {
		t.Fatalf("a 2 MB non-ASCII event through the python bootstrap: %d, %d bytes back", r.status, len(r.body))
	}

	// A response over 6 MB is the invocation's error, and the runtime
	// carries on: the next invocation needs no new init.
	wantCarriesOnAfterATooLargeResponse(t, h, `{"action":"echo","value":"after"}`, "py-after-big")

	r = h.invoke(t, `{"action":"error","value":7}`)
	wantFunctionError(t, r, "ValueError", "bad value: 7")
	var eb struct {
		StackTrace []string `json:"stackTrace"`
	}
	if err := json.Unmarshal(r.body, &eb); err != nil || len(eb.StackTrace) == 0 || !strings.Contains(strings.Join(eb.StackTrace, ""), "app.py") {
		t.Errorf("a Python error carries its traceback: %s", r.body)
	}

	h.invoke(t, `{"action":"print"}`, "X-Nimbus-Request-Id", "py-print")
	if !eventually(h.stdout, "\tpy-print\thello from python\n") {
		t.Errorf("python's print is tagged with the request id:\n%s", h.stdout)
	}

	wantFunctionError(t, h.invoke(t, `{"action":"exit","n":4}`), "Runtime.ExitError", "exit status 4")
	r = h.invoke(t, `{"action":"sleep","n":3000}`, "X-Nimbus-Deadline-Ms", deadlineIn(400*time.Millisecond))
	wantFunctionError(t, r, "Sandbox.Timedout", "Task timed out")
	if ok := h.invoke(t, `{"action":"echo","value":"back"}`, "X-Nimbus-Deadline-Ms", deadlineIn(10*time.Second)); ok.json(t)["echo"] != "back" {
		t.Fatalf("python handler did not recover: %s", ok.body)
	}
}

func TestPythonInitErrorKeepsInstanceUnready(t *testing.T) {
	root, _ := filepath.Abs("testdata/python")
	h := launchHost(t, nil, "-function", "broken", "-runtime", "python3", "-handler", "broken.handler", "-task-root", root,
		"-python", interpreter(t, "python3"))
	r := h.invoke(t, `{}`, "X-Nimbus-Deadline-Ms", deadlineIn(10*time.Second))
	wantFunctionError(t, r, "Runtime.ImportModuleError: ModuleNotFoundError", "module_that_does_not_exist")

	resp, err := http.Get(h.url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/healthz = %d for a handler that cannot init; the gateway must not route to it", resp.StatusCode)
	}
}

func nodeHost(t *testing.T, handler string) *runningHost {
	t.Helper()
	root, _ := filepath.Abs("testdata/node")
	return startHost(t, "-function", "nodefn", "-runtime", "nodejs", "-handler", handler, "-task-root", root, "-node", interpreter(t, "node"))
}

func TestNodeBootstrapAsync(t *testing.T) {
	h := nodeHost(t, "app.asyncHandler")
	r := h.invoke(t, `{"value":"js"}`, "X-Nimbus-Request-Id", "node-1")
	got := r.json(t)
	if r.status != http.StatusOK || got["echo"] != "js" || got["requestId"] != "node-1" || got["functionName"] != "nodefn" || got["remainingOk"] != true {
		t.Fatalf("node handler answered %d %s", r.status, r.body)
	}
	if !eventually(h.stdout, "\tnode-1\thello from node\n") {
		t.Errorf("console.log is tagged with the request id:\n%s", h.stdout)
	}
	wantFunctionError(t, h.invoke(t, `{"action":"error","value":"x"}`), "TypeError", "bad value: x")
	wantCarriesOnAfterATooLargeResponse(t, h, `{"value":"after"}`, "node-after-big")
	wantFunctionError(t, h.invoke(t, `{"action":"exit","n":5}`), "Runtime.ExitError", "exit status 5")
	wantFunctionError(t, h.invoke(t, `{"action":"sleep","n":3000}`, "X-Nimbus-Deadline-Ms", deadlineIn(400*time.Millisecond)), "Sandbox.Timedout", "Task timed out")
	if ok := h.invoke(t, `{"value":"again"}`, "X-Nimbus-Deadline-Ms", deadlineIn(10*time.Second)); ok.json(t)["echo"] != "again" {
		t.Fatalf("node handler did not recover: %s", ok.body)
	}
}

func TestNodeBootstrapCallback(t *testing.T) {
	h := nodeHost(t, "app.callbackHandler")
	r := h.invoke(t, `{"value":"cb"}`)
	if got := r.json(t); got["echo"] != "cb" || got["style"] != "callback" {
		t.Fatalf("callback handler answered %s", r.body)
	}
	wantFunctionError(t, h.invoke(t, `{"action":"error","value":"y"}`), "RangeError", "callback error: y")
}

func httpHost(t *testing.T, extra ...string) *runningHost {
	t.Helper()
	return startHost(t, append([]string{"-function", "web", "-runtime", "http", "-handler", "server", "-task-root", filepath.Dir(bins.httpserver)}, extra...)...)
}

func TestHTTPRuntimeProxiesAPIGatewayEvents(t *testing.T) {
	h := httpHost(t)
	event := `{"version":"2.0","rawPath":"/hello/bob","rawQueryString":"q=1","headers":{"accept":"text/plain"},
		"requestContext":{"http":{"method":"GET","path":"/hello/bob"}},"isBase64Encoded":false}`
	r := h.invoke(t, event)
	var res struct {
		StatusCode int               `json:"statusCode"`
		Headers    map[string]string `json:"headers"`
		Body       string            `json:"body"`
	}
	if err := json.Unmarshal(r.body, &res); err != nil {
		t.Fatalf("%v: %s", err, r.body)
	}
	if res.StatusCode != 200 || res.Body != "hello bob, q=1, method=GET" || res.Headers["x-greeting"] != "yes" {
		t.Fatalf("got %+v", res)
	}

	raw := h.invoke(t, `{"plain":"event"}`)
	if got := raw.json(t); got["raw"] != `{"plain":"event"}` {
		t.Errorf("a non-HTTP event is POSTed to / as JSON: %s", raw.body)
	}

	slow := `{"rawPath":"/sleep","rawQueryString":"ms=3000","requestContext":{"http":{"method":"GET"}}}`
	wantFunctionError(t, h.invoke(t, slow, "X-Nimbus-Deadline-Ms", deadlineIn(300*time.Millisecond)), "Sandbox.Timedout", "Task timed out")
}

func TestHTTPRuntimeConcurrency(t *testing.T) {
	h := httpHost(t, "-concurrency", "2")
	slow := `{"rawPath":"/sleep","rawQueryString":"ms=1500","requestContext":{"http":{"method":"GET"}}}`
	var wg sync.WaitGroup
	results := make([]invokeResult, 2)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = h.invoke(t, slow, "X-Nimbus-Deadline-Ms", deadlineIn(10*time.Second))
		}()
	}
	waitInflight(t, h, 2)
	wantHostError(t, h.invoke(t, slow), http.StatusTooManyRequests, "Host.Busy")
	wg.Wait()
	for i, r := range results {
		if r.status != http.StatusOK || !strings.Contains(string(r.body), "slept 1500") {
			t.Errorf("concurrent invocation %d: %d %s", i, r.status, r.body)
		}
	}
}

// GET /healthz?wait= holds its answer until the handler is ready, so the
// gateway learns of a new instance at once; a handler that never gets
// ready is reported when the wait ends.
func TestHealthWaitHoldsTheAnswerUntilReady(t *testing.T) {
	root, _ := filepath.Abs("testdata/python")
	good := launchHost(t, nil, "-function", "waits", "-runtime", "python3", "-handler", "app.handler", "-task-root", root,
		"-python", interpreter(t, "python3"))
	resp, err := http.Get(good.url + "/healthz?wait=10s")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz?wait=10s = %d for a handler that initialises; want 200 once it is ready", resp.StatusCode)
	}

	broken := launchHost(t, nil, "-function", "broken", "-runtime", "python3", "-handler", "broken.handler", "-task-root", root,
		"-python", interpreter(t, "python3"))
	start := time.Now()
	resp, err = http.Get(broken.url + "/healthz?wait=400ms")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || time.Since(start) < 400*time.Millisecond {
		t.Errorf("/healthz?wait=400ms = %d after %s for a handler that cannot init; want 503 when the wait ends", resp.StatusCode, time.Since(start))
	}

	resp, err = http.Get(broken.url + "/healthz?wait=soon")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "not a duration") {
		t.Errorf("/healthz?wait=soon = %d %s; want 400 naming the bad duration", resp.StatusCode, body)
	}
}

// wantCarriesOnAfterATooLargeResponse: a response over 6 MB (the handler's
// "big" action) is the invocation's Function.ResponseSizeTooLarge error,
// and the runtime carries on: the next invocation (echo, answering
// "after") runs without a new init.
func wantCarriesOnAfterATooLargeResponse(t *testing.T, h *runningHost, echo, requestID string) {
	t.Helper()
	r := h.invoke(t, fmt.Sprintf(`{"action":"big","n":%d}`, 7<<20), "X-Nimbus-Deadline-Ms", deadlineIn(20*time.Second))
	wantFunctionError(t, r, "Function.ResponseSizeTooLarge", "6291456 bytes")
	if r := h.invoke(t, echo, "X-Nimbus-Request-Id", requestID); r.status != http.StatusOK || r.json(t)["echo"] != "after" {
		t.Fatalf("an invocation after a refused response: %d %s", r.status, r.body)
	}
	if !eventually(h.stdout, `REPORT RequestId: `+requestID+`\t`) {
		t.Fatalf("no REPORT line for the invocation after the refused response:\n%s", h.stdout)
	}
	if report := regexp.MustCompile(`REPORT RequestId: ` + requestID + `\t[^\n]*`).FindString(h.stdout.String()); strings.Contains(report, "Init Duration") {
		t.Errorf("the runtime started again after a refused response; REPORT: %q", report)
	}
}
