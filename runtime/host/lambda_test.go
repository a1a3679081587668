package host_test

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
)

func TestLambdaGoSuccessReportsAndMeters(t *testing.T) {
	h := lambdaGoHost(t)
	first := h.invoke(t, `{"action":"echo","value":"hi"}`, "X-Nimbus-Request-Id", "req-0001", "X-Nimbus-Deadline-Ms", deadlineIn(5*time.Second))
	if first.status != http.StatusOK || first.header.Get("X-Nimbus-Function-Error") != "" {
		t.Fatalf("status %d, headers %v, body %s", first.status, first.header, first.body)
	}
	body := first.json(t)
	if body["echo"] != "hi" || body["request_id"] != "req-0001" || body["arn"] != "arn:aws:lambda:local:000000000000:function:gofn" {
		t.Errorf("handler saw the wrong invocation: %s", first.body)
	}
	for _, hdr := range []string{"X-Nimbus-Duration-Ms", "X-Nimbus-Billed-Duration-Ms", "X-Nimbus-Max-Memory-Used-Mb"} {
		if v, err := strconv.ParseFloat(first.header.Get(hdr), 64); err != nil || v <= 0 {
			t.Errorf("%s = %q, want a positive number", hdr, first.header.Get(hdr))
		}
	}
	if first.header.Get("X-Nimbus-Memory-Size-Mb") != "256" || first.header.Get("X-Nimbus-Protocol") != "1" {
		t.Errorf("memory size %q, protocol %q", first.header.Get("X-Nimbus-Memory-Size-Mb"), first.header.Get("X-Nimbus-Protocol"))
	}
	if first.header.Get("X-Nimbus-Cold-Start") != "true" || first.header.Get("X-Nimbus-Init-Duration-Ms") == "" {
		t.Errorf("the first invocation is the cold start: cold=%q init=%q", first.header.Get("X-Nimbus-Cold-Start"), first.header.Get("X-Nimbus-Init-Duration-Ms"))
	}

	second := h.invoke(t, `{"action":"echo","value":"again"}`, "X-Nimbus-Request-Id", "req-0002")
	if second.header.Get("X-Nimbus-Cold-Start") != "false" || second.header.Get("X-Nimbus-Init-Duration-Ms") != "" {
		t.Errorf("the second invocation is warm: cold=%q init=%q", second.header.Get("X-Nimbus-Cold-Start"), second.header.Get("X-Nimbus-Init-Duration-Ms"))
	}

	for _, re := range []string{
		`START RequestId: req-0001 Version: \$LATEST\n`,
		`END RequestId: req-0001\n`,
		`REPORT RequestId: req-0001\tDuration: \d+\.\d\d ms\tBilled Duration: \d+ ms\tMemory Size: 256 MB\tMax Memory Used: \d+ MB\tInit Duration: \d+\.\d\d ms\t\n`,
		`REPORT RequestId: req-0002\tDuration: \d+\.\d\d ms\tBilled Duration: \d+ ms\tMemory Size: 256 MB\tMax Memory Used: \d+ MB\t\n`,
	} {
		if !eventually(h.stdout, re) {
			t.Errorf("stdout lacks %q:\n%s", re, h.stdout)
		}
	}
}

func TestLambdaGoEnvironment(t *testing.T) {
	h := startHost(t, "-function", "envfn", "-runtime", "provided", "-task-root", strings.TrimSuffix(bins.lambdago, "/bootstrap"),
		"-memory-mb", "512", "-function-version", "7", "-region", "eu-west-9", "-timeout", "15s")
	// Within the function's timeout, the gateway's deadline is the handler's.
	r := h.invoke(t, `{"action":"env"}`, "X-Nimbus-Deadline-Ms", deadlineIn(10*time.Second))
	env := r.json(t)
	want := map[string]string{
		"AWS_LAMBDA_FUNCTION_NAME": "envfn", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512", "AWS_LAMBDA_FUNCTION_VERSION": "7",
		"_HANDLER": "bootstrap", "TZ": ":UTC", "AWS_REGION": "eu-west-9", "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/envfn",
		"LAMBDA_TASK_ROOT": strings.TrimSuffix(bins.lambdago, "/bootstrap"),
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %v, want %q", k, env[k], v)
		}
	}
	if !regexp.MustCompile(`^127\.0\.0\.1:\d+$`).MatchString(fmt.Sprint(env["AWS_LAMBDA_RUNTIME_API"])) {
		t.Errorf("AWS_LAMBDA_RUNTIME_API = %v", env["AWS_LAMBDA_RUNTIME_API"])
	}
	if ms := env["remaining_ms"].(float64); ms < 8000 || ms > 10000 {
		t.Errorf("the handler's context deadline leaves %v ms, want about 10000 (from X-Nimbus-Deadline-Ms)", ms)
	}
}

// TestHandlerSeesOnlyLambdasVariablesAndItsOwn runs the host as Nomad's
// exec driver does: with the task's variables on top of whatever the
// client agent's environment holds. The handler must see exactly Lambda's
// variables and the ones its job names as the function's.
func TestHandlerSeesOnlyLambdasVariablesAndItsOwn(t *testing.T) {
	h := launchHost(t, []string{"NIMBUS_SECRET_SETTING=s3cret", "USER_SETTING=visible", "CLIENT_CREDENTIAL=leaked",
		"MAKEFLAGS=-j2", "NOMAD_ALLOC_ID=a", protocol.EnvFunctionVariables + "=USER_SETTING"},
		"-function", "envfn", "-runtime", "provided", "-task-root", strings.TrimSuffix(bins.lambdago, "/bootstrap"))
	waitReady(t, h)
	env := h.invoke(t, `{"action":"env"}`).json(t)
	if env["NIMBUS_SECRET_SETTING"] != "" || env["USER_SETTING"] != "visible" {
		t.Errorf("NIMBUS_SECRET_SETTING=%v USER_SETTING=%v; the host's own settings stay with the host, the function's pass", env["NIMBUS_SECRET_SETTING"], env["USER_SETTING"])
	}
	var got []string
	for _, n := range h.invoke(t, `{"action":"environ"}`).json(t)["names"].([]any) {
		got = append(got, n.(string))
	}
	sort.Strings(got)
	// Lambda's defined runtime variables (_X_AMZN_TRACE_ID is set by the
	// Go runtime library per invocation, as on Lambda), and the function's.
	want := []string{"AWS_DEFAULT_REGION", "AWS_EXECUTION_ENV", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_NAME",
		"AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
		"AWS_LAMBDA_RUNTIME_API", "AWS_REGION", "LAMBDA_RUNTIME_DIR", "LAMBDA_TASK_ROOT", "LANG", "PATH", "TZ", "USER_SETTING",
		"_HANDLER", "_X_AMZN_TRACE_ID"}
	if !slices.Equal(got, want) {
		t.Errorf("the handler's variables are\n%v\nwant exactly Lambda's and the function's own:\n%v", got, want)
	}
}

func TestLambdaGoReturnedError(t *testing.T) {
	h := lambdaGoHost(t)
	r := h.invoke(t, `{"action":"error","value":"boom"}`)
	wantFunctionError(t, r, "errorString", "something went wrong: boom")
	if !eventually(h.stdout, "REPORT RequestId: "+regexp.QuoteMeta(r.header.Get("X-Nimbus-Request-Id"))) {
		t.Error("a failed invocation is reported too")
	}
}

func TestLambdaGoPanicRestartsHandler(t *testing.T) {
	h := lambdaGoHost(t)
	before := h.invoke(t, `{"action":"env"}`).json(t)["pid"]
	r := h.invoke(t, `{"action":"panic","value":"oops"}`)
	wantFunctionError(t, r, "string", "handler panicked: oops")

	next := h.invoke(t, `{"action":"env"}`)
	if next.json(t)["pid"] == before || next.header.Get("X-Nimbus-Cold-Start") != "true" {
		t.Errorf("after a panic the handler must be a fresh process with a fresh init (pid %v → %v, cold %q)",
			before, next.json(t)["pid"], next.header.Get("X-Nimbus-Cold-Start"))
	}
}

func TestTimeoutRestartsHandlerAndNextCallSucceeds(t *testing.T) {
	h := lambdaGoHost(t)
	before := h.invoke(t, `{"action":"env"}`).json(t)["pid"]

	r := h.invoke(t, `{"action":"sleep","n":5000}`, "X-Nimbus-Deadline-Ms", deadlineIn(300*time.Millisecond))
	wantFunctionError(t, r, "Sandbox.Timedout", "Task timed out after 0.")
	if d, _ := strconv.ParseFloat(r.header.Get("X-Nimbus-Duration-Ms"), 64); d >= 5000 {
		t.Errorf("duration %v ms: the host must not wait for the handler past the deadline", d)
	}
	if !eventually(h.stdout, "Status: timeout") {
		t.Error("the REPORT line should say the invocation timed out")
	}

	next := h.invoke(t, `{"action":"env"}`, "X-Nimbus-Deadline-Ms", deadlineIn(10*time.Second))
	if next.status != http.StatusOK || next.header.Get("X-Nimbus-Function-Error") != "" {
		t.Fatalf("the call after a timeout must succeed: %d %s", next.status, next.body)
	}
	if next.json(t)["pid"] == before || next.header.Get("X-Nimbus-Init-Duration-Ms") == "" {
		t.Errorf("after a timeout the handler gets a fresh init: pid %v → %v, init %q", before, next.json(t)["pid"], next.header.Get("X-Nimbus-Init-Duration-Ms"))
	}
}

func TestCrashIsReportedWithExitStatus(t *testing.T) {
	h := lambdaGoHost(t)
	r := h.invoke(t, `{"action":"exit","n":3}`)
	wantFunctionError(t, r, "Runtime.ExitError", "Runtime exited with error: exit status 3")
	if ok := h.invoke(t, `{"action":"echo","value":"after"}`); ok.status != http.StatusOK || ok.json(t)["echo"] != "after" {
		t.Fatalf("the call after a crash must succeed: %d %s", ok.status, ok.body)
	}
}

func TestOversizedPayloadsAreRefused(t *testing.T) {
	h := lambdaGoHost(t)
	big := `{"action":"echo","value":"` + strings.Repeat("a", 7<<20) + `"}`
	wantHostError(t, h.invoke(t, big), http.StatusRequestEntityTooLarge, "RequestEntityTooLargeException")

	r := h.invoke(t, fmt.Sprintf(`{"action":"big","n":%d}`, 7<<20), "X-Nimbus-Deadline-Ms", deadlineIn(20*time.Second))
	wantFunctionError(t, r, "Function.ResponseSizeTooLarge", "6291456 bytes")

	if ok := h.invoke(t, `{"action":"echo","value":"small"}`); ok.status != http.StatusOK || ok.json(t)["echo"] != "small" {
		t.Fatalf("a normal call after refused payloads must succeed: %d %s", ok.status, ok.body)
	}
}

func TestConcurrentInvokeIsRefusedNotQueued(t *testing.T) {
	h := lambdaGoHost(t)
	var wg sync.WaitGroup
	var slow invokeResult
	wg.Add(1)
	go func() {
		defer wg.Done()
		slow = h.invoke(t, `{"action":"sleep","n":1500}`, "X-Nimbus-Deadline-Ms", deadlineIn(10*time.Second))
	}()
	waitInflight(t, h, 1)

	busy := h.invoke(t, `{"action":"echo","value":"second"}`)
	wantHostError(t, busy, http.StatusTooManyRequests, "Host.Busy")
	if busy.header.Get("Retry-After") == "" {
		t.Error("a busy answer carries Retry-After")
	}
	wg.Wait()
	if slow.status != http.StatusOK || slow.json(t)["slept_ms"] != float64(1500) {
		t.Fatalf("the first invocation must complete normally: %d %s", slow.status, slow.body)
	}
}

func TestOutputIsTaggedWithRequestIDAndTailed(t *testing.T) {
	h := lambdaGoHost(t)
	r := h.invoke(t, `{"action":"print","value":"x1"}`, "X-Nimbus-Request-Id", "req-print", "X-Nimbus-Log-Type", "Tail")
	if r.status != http.StatusOK {
		t.Fatal(r.status, string(r.body))
	}
	if !eventually(h.stdout, `\d{4}-\d\d-\d\dT[\d:.]+Z\treq-print\thello from the handler: x1\n`) {
		t.Errorf("stdout lacks the handler's line tagged with the request id:\n%s", h.stdout)
	}
	if !eventually(h.stderr, "\treq-print\ta line on stderr\n") {
		t.Errorf("stderr lacks the handler's tagged stderr line:\n%s", h.stderr)
	}
	tail, err := base64.StdEncoding.DecodeString(r.header.Get("X-Nimbus-Log-Result"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"START RequestId: req-print", "hello from the handler: x1", "END RequestId: req-print", "REPORT RequestId: req-print"} {
		if !strings.Contains(string(tail), want) {
			t.Errorf("log tail lacks %q:\n%s", want, tail)
		}
	}
}

func TestBillingGranularity(t *testing.T) {
	h := lambdaGoHost(t, "-billing-granularity", "100ms")
	r := h.invoke(t, `{"action":"sleep","n":120}`)
	billed, _ := strconv.Atoi(r.header.Get("X-Nimbus-Billed-Duration-Ms"))
	if billed != 200 {
		t.Errorf("a 120 ms invocation bills %d ms at 100 ms granularity, want 200", billed)
	}
	h1 := lambdaGoHost(t)
	r = h1.invoke(t, `{"action":"sleep","n":120}`)
	d, _ := strconv.ParseFloat(r.header.Get("X-Nimbus-Duration-Ms"), 64)
	billed, _ = strconv.Atoi(r.header.Get("X-Nimbus-Billed-Duration-Ms"))
	if billed < 120 || float64(billed) < d || float64(billed) > d+1 {
		t.Errorf("at 1 ms granularity %v ms bills %d ms, want it rounded up to the next ms", d, billed)
	}
}

func TestMaxMemoryUsedReflectsTheHandler(t *testing.T) {
	h := lambdaGoHost(t)
	r := h.invoke(t, `{"action":"alloc","n":64}`, "X-Nimbus-Deadline-Ms", deadlineIn(10*time.Second))
	used, _ := strconv.Atoi(r.header.Get("X-Nimbus-Max-Memory-Used-Mb"))
	if used < 64 {
		t.Errorf("Max Memory Used %d MB after the handler touched 64 MB", used)
	}
}

func TestDryRunAndBadHeaders(t *testing.T) {
	h := lambdaGoHost(t)
	if r := h.invoke(t, `{}`, "X-Nimbus-Invocation-Type", "DryRun"); r.status != http.StatusNoContent {
		t.Errorf("DryRun: %d", r.status)
	}
	wantHostError(t, h.invoke(t, `{}`, "X-Nimbus-Invocation-Type", "Sometimes"), http.StatusBadRequest, "InvalidRequestContentException")
	wantHostError(t, h.invoke(t, `{}`, "X-Nimbus-Deadline-Ms", "soon"), http.StatusBadRequest, "InvalidRequestContentException")
	wantHostError(t, h.invoke(t, `{}`, "X-Nimbus-Deadline-Ms", deadlineIn(-time.Second)), http.StatusBadRequest, "InvalidRequestContentException")
}

func waitInflight(t *testing.T, h *runningHost, n int) {
	t.Helper()
	want := fmt.Sprintf("nimbus_host_inflight %d", n)
	for i := 0; i < 200; i++ {
		if body, err := getBody(h.url + "/metrics"); err == nil && strings.Contains(body, want) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("never saw %q on /metrics", want)
}

func waitReady(t *testing.T, h *runningHost) {
	t.Helper()
	for i := 0; i < 500; i++ {
		resp, err := http.Get(h.url + "/healthz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("host never became ready")
}

func getBody(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// A caller's deadline never extends the function's timeout: a direct call
// to an instance asking for an hour still times out after the function's
// own limit.
func TestCallerDeadlineIsCappedAtTheFunctionTimeout(t *testing.T) {
	h := lambdaGoHost(t, "-timeout", "1s")
	r := h.invoke(t, `{"action":"sleep","n":5000}`, "X-Nimbus-Deadline-Ms", deadlineIn(time.Hour))
	wantFunctionError(t, r, "Sandbox.Timedout", "Task timed out after 1.")
	if d, _ := strconv.ParseFloat(r.header.Get("X-Nimbus-Duration-Ms"), 64); d >= 5000 {
		t.Errorf("duration %v ms: the caller's hour outlasted the function's 1 s timeout", d)
	}
}

// With an instance key file (as in a function's job), the host makes its
// key at start, keeps it in the file with owner-only permissions, and runs
// only invocations that carry it.
func TestInstanceKeyAdmitsOnlyItsHolder(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "nimbus-instance-key")
	args := []string{"-function", "gofn", "-runtime", "provided", "-task-root", filepath.Dir(bins.lambdago), "-memory-mb", "256"}
	h := launchReady(t, []string{"NIMBUS_INSTANCE_KEY_FILE=" + keyFile}, args...)
	key, err := os.ReadFile(keyFile)
	if err != nil || len(key) != 64 {
		t.Fatalf("the host wrote no 64-character key to %s: %q %v", keyFile, key, err)
	}
	if st, err := os.Stat(keyFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("the key file's permissions: %v %v; want 0600", st.Mode(), err)
	}
	for name, r := range map[string]invokeResult{
		"no key":      h.invoke(t, `{"action":"echo","value":"x"}`),
		"another key": h.invoke(t, `{"action":"echo","value":"x"}`, "X-Nimbus-Instance-Key", strings.Repeat("0", 64)),
	} {
		if r.status != http.StatusUnauthorized || r.header.Get("X-Nimbus-Error-Type") != "Host.Unauthorized" {
			t.Errorf("%s: %d %s; want 401 Host.Unauthorized", name, r.status, r.body)
		}
	}
	if r := h.invoke(t, `{"action":"echo","value":"keyed"}`, "X-Nimbus-Instance-Key", string(key)); r.status != http.StatusOK || !strings.Contains(string(r.body), "keyed") {
		t.Errorf("with the key: %d %s", r.status, r.body)
	}
	// A second host makes a key of its own.
	other := filepath.Join(t.TempDir(), "nimbus-instance-key")
	launchReady(t, []string{"NIMBUS_INSTANCE_KEY_FILE=" + other}, args...)
	if key2, _ := os.ReadFile(other); string(key2) == string(key) {
		t.Error("two instances made the same key")
	}
}
