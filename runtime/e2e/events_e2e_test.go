package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/eventq"
)

// sendEvents sends n Event invocations {"action":"print","value":"<prefix>-<i>","n":sleepMs}
// through gw, 8 at a time, and fails unless each gets 202.
func sendEvents(t *testing.T, gw *testenv.Gateway, function, prefix string, n, sleepMs int) {
	t.Helper()
	var wg sync.WaitGroup
	next := make(chan int)
	var mu sync.Mutex
	var failures []string
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				body := fmt.Sprintf(`{"action":"print","value":"%s-%d","n":%d}`, prefix, i, sleepMs)
				status, answer := sendEvent(t, gw, function, body)
				if status != http.StatusAccepted {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("event %d: %d %s", i, status, answer))
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d events were not accepted, first: %s", len(failures), n, failures[0])
	}
}

func sendEvent(t *testing.T, gw *testenv.Gateway, function, body string) (int, string) {
	t.Helper()
	req, err := gw.Request(http.MethodPost, "/2015-03-31/functions/"+function+"/invocations", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Amz-Invocation-Type", "Event")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// printedValues counts, per value, the lines "hello from the handler:
// <prefix>-<i>" that the function's instances printed, read from Nomad.
func printedValues(t *testing.T, env *testenv.Env, function, prefix string) map[string]int {
	t.Helper()
	line := regexp.MustCompile(`hello from the handler: (` + regexp.QuoteMeta(prefix) + `-\d+)`)
	seen := map[string]int{}
	for _, l := range functionLines(t, env, function) {
		if m := line.FindStringSubmatch(l); m != nil {
			seen[m[1]]++
		}
	}
	return seen
}

// operatorJetStream is JetStream as the operator (NATS's admin user) sees
// it, for the test's whole run.
func operatorJetStream(t *testing.T, env *testenv.Env) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(env.NATS.URL, env.NATS.Admin.Options()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// deadLetters subscribes, as the operator, to the function's dead letters
// as they are stored.
func deadLetters(t *testing.T, env *testenv.Env, function string) (*nats.Conn, <-chan *nats.Msg) {
	t.Helper()
	nc, err := nats.Connect(env.NATS.URL, env.NATS.Admin.Options()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	dead := make(chan *nats.Msg, 4)
	if _, err := nc.ChanSubscribe("nimbus.dead."+function, dead); err != nil {
		t.Fatal(err)
	}
	return nc, dead
}

// awaitDeadLetter decodes the next dead letter into rec, or fails the test
// after within.
func awaitDeadLetter(t *testing.T, dead <-chan *nats.Msg, within time.Duration, of string, rec any) {
	t.Helper()
	select {
	case m := <-dead:
		if err := json.Unmarshal(m.Data, rec); err != nil {
			t.Fatalf("dead letter %s: %v", m.Data, err)
		}
	case <-time.After(within):
		t.Fatalf("no dead letter within %s for %s", within, of)
	}
}

// accessLines counts a gateway's access lines for the function.
func accessLines(t *testing.T, logPath, function string) int {
	t.Helper()
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), `"msg":"invoke","function":"`+function+`"`)
}

// waitAllRan waits until every one of n events ran at least once, and
// reports duplicates.
func waitAllRan(t *testing.T, env *testenv.Env, function, prefix string, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var seen map[string]int
	for {
		seen = printedValues(t, env, function, prefix)
		if len(seen) == n || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	dups := 0
	for _, c := range seen {
		dups += c - 1
	}
	t.Logf("%d events: %d ran, %d runs were duplicates (at least once delivery)", n, len(seen), dups)
	if len(seen) != n {
		t.Fatalf("%d of %d events never ran", n-len(seen), n)
	}
}

// TestEventsSurviveAGatewayKillAndANATSRestart sends 1,000 Event
// invocations to a slow function through a gateway, kills that gateway
// with SIGKILL while they run and restarts it, then restarts the NATS
// server mid-stream: every event runs at least once.
func TestEventsSurviveAGatewayKillAndANATSRestart(t *testing.T) {
	env, _ := gateway(t)
	deploy(t, model.Function{Name: "durable", Runtime: model.RuntimeProvided, MaxInstances: 3, Timeout: 10 * time.Second})
	own, err := env.StartGatewayAs(fx.gatewayBin, "events-gateway", env.Principals.Gateway)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(own.Stop)

	const n = 1000
	sendEvents(t, own, "durable", "kill", n, 20)
	time.Sleep(500 * time.Millisecond)
	// Both gateways share the function's consumer; the one killed had run
	// these before its kill (its access lines).
	t.Logf("the gateway killed had run %d events of durable", accessLines(t, own.LogPath, "durable"))
	if err := own.Restart(); err != nil {
		t.Fatal(err)
	}
	waitAllRan(t, env, "durable", "kill", n, 3*time.Minute)

	sendEvents(t, own, "durable", "restart", n, 20)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := env.NATS.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	waitAllRan(t, env, "durable", "restart", n, 3*time.Minute)

	// The queue empties (events whose acknowledgement the restart lost
	// run again after the ack wait), and says so.
	deadline := time.Now().Add(90 * time.Second)
	for {
		queued, raw := asyncQueued(t, own, "durable")
		if queued == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /v1/functions/durable still reports a queue 90s after every event ran: %s", raw)
		}
		time.Sleep(time.Second)
	}
}

// asyncQueued reads the function's queue depth from GET /v1/functions/{name}
// (-1 when absent).
func asyncQueued(t *testing.T, gw *testenv.Gateway, function string) (int, string) {
	t.Helper()
	resp, err := gw.Do(http.MethodGet, "/v1/functions/"+function, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	var state struct {
		Async struct {
			Queued *int `json:"queued"`
		} `json:"async"`
	}
	if json.Unmarshal(b.Bytes(), &state) != nil || state.Async.Queued == nil {
		return -1, b.String()
	}
	return *state.Async.Queued, b.String()
}

// TestFailingEventsBecomeDeadLetters: an event whose function always fails
// runs three times (two retries), then reaches the dead letters as
// Lambda's destination record; a payload over 1 MB is refused with 413.
func TestFailingEventsBecomeDeadLetters(t *testing.T) {
	env, gw := gateway(t)
	deploy(t, model.Function{Name: "failing", Runtime: model.RuntimeProvided, MaxInstances: 1, Timeout: 10 * time.Second})

	big := `{"action":"echo","value":"` + strings.Repeat("x", 1<<20) + `"}`
	if status, answer := sendEvent(t, gw, "failing", big); status != http.StatusRequestEntityTooLarge || !strings.Contains(answer, "1 MB") {
		t.Errorf("a 1 MB event: %d %s, want 413 naming the limit", status, answer)
	}

	nc, dead := deadLetters(t, env, "failing")

	if status, answer := sendEvent(t, gw, "failing", `{"action":"error","value":"always"}`); status != http.StatusAccepted {
		t.Fatalf("event: %d %s", status, answer)
	}
	var rec struct {
		Version        string `json:"version"`
		RequestContext struct {
			RequestID   string `json:"requestId"`
			FunctionArn string `json:"functionArn"`
			Condition   string `json:"condition"`
			Count       int    `json:"approximateInvokeCount"`
		} `json:"requestContext"`
		RequestPayload  map[string]any `json:"requestPayload"`
		ResponseContext struct {
			StatusCode    int    `json:"statusCode"`
			FunctionError string `json:"functionError"`
		} `json:"responseContext"`
		ResponsePayload map[string]any `json:"responsePayload"`
	}
	awaitDeadLetter(t, dead, 60*time.Second, "an event whose function always fails", &rec)
	if rec.Version != "1.0" || rec.RequestContext.Condition != "RetriesExhausted" || rec.RequestContext.Count != 3 ||
		!strings.HasSuffix(rec.RequestContext.FunctionArn, ":function:failing:$LATEST") || rec.RequestContext.RequestID == "" ||
		rec.RequestPayload["value"] != "always" || rec.ResponseContext.FunctionError != "Unhandled" ||
		!strings.Contains(fmt.Sprint(rec.ResponsePayload["errorMessage"]), "something went wrong: always") {
		t.Errorf("dead letter record: %+v", rec)
	}

	// It is stored, not only published: the dead-letter stream keeps it.
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, "NIMBUS_DEAD")
	if err != nil {
		t.Fatal(err)
	}
	if m, err := stream.GetLastMsgForSubject(ctx, "nimbus.dead.failing"); err != nil || !bytes.Contains(m.Data, []byte("RetriesExhausted")) {
		t.Errorf("the dead letter is not in NIMBUS_DEAD: %v", err)
	}
	if v := metric(t, gw, `nimbus_async_dead_letters_total{condition="RetriesExhausted",function="failing"}`); v != 1 {
		t.Errorf("nimbus_async_dead_letters_total = %v, want 1", v)
	}
	if v := metric(t, gw, `nimbus_async_retries_total{function="failing"}`); v != 2 {
		t.Errorf("nimbus_async_retries_total = %v, want 2", v)
	}
}

// TestEventsAreRefusedWhenTheyCannotBeStored: with the NATS server down, an
// Event invocation gets 503 with a body that says why, never a 202; once
// NATS is back, events are accepted again and run.
func TestEventsAreRefusedWhenTheyCannotBeStored(t *testing.T) {
	env, gw := gateway(t)
	deploy(t, model.Function{Name: "unstored", Runtime: model.RuntimeProvided, MaxInstances: 1, Timeout: 10 * time.Second})
	env.NATS.Proc.Stop(10 * time.Second)
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = env.NATS.Restart(ctx)
		}
	})
	status, answer := sendEvent(t, gw, "unstored", `{"action":"print","value":"lost?-0"}`)
	if status != http.StatusServiceUnavailable || !strings.Contains(answer, "ServiceException") || !strings.Contains(answer, "not stored") {
		t.Fatalf("an Event invocation with NATS down: %d %s; want 503 saying it was not stored", status, answer)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := env.NATS.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	restarted = true
	// The gateway reconnects on its own.
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, answer = sendEvent(t, gw, "unstored", `{"action":"print","value":"stored-0"}`)
		if status == http.StatusAccepted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Event invocations are still refused 30s after NATS came back: %d %s", status, answer)
		}
		time.Sleep(500 * time.Millisecond)
	}
	waitAllRan(t, env, "unstored", "stored", 1, time.Minute)
	if seen := printedValues(t, env, "unstored", "lost?"); len(seen) != 0 {
		t.Errorf("an event refused with 503 ran anyway: %v", seen)
	}
}

// TestExpiredEventsAreNotRun: an event that waits longer than its
// function's maximum event age (60 s here, behind a long invocation on the
// function's one instance) is not run; its record reaches the dead letters
// with condition EventAgeExceeded.
func TestExpiredEventsAreNotRun(t *testing.T) {
	env, gw := gateway(t)
	deploy(t, model.Function{Name: "expiring", Runtime: model.RuntimeProvided, MaxInstances: 1, Timeout: 90 * time.Second})
	cfg := kvstore.AsyncConfig{Function: "expiring", MaxRetries: 0, MaxEventAgeSeconds: 60}
	if _, err := env.Consul.KV().Put(&consulapi.KVPair{Key: kvstore.AsyncKey("expiring"), Value: cfg.Encode()}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = env.Consul.KV().Delete(kvstore.AsyncKey("expiring"), nil) })

	_, dead := deadLetters(t, env, "expiring")

	// The one slot runs a 65 s invocation; the next event waits behind it.
	if status, answer := sendEvent(t, gw, "expiring", `{"action":"print","value":"blocker-0","n":65000}`); status != http.StatusAccepted {
		t.Fatalf("event: %d %s", status, answer)
	}
	waitAllRan(t, env, "expiring", "blocker", 1, time.Minute)
	if status, answer := sendEvent(t, gw, "expiring", `{"action":"print","value":"expired-0"}`); status != http.StatusAccepted {
		t.Fatalf("event: %d %s", status, answer)
	}
	// The queue says so: one running, one waiting, the oldest seconds old.
	var state struct {
		Async struct {
			Queued  int     `json:"queued"`
			Running int     `json:"running"`
			Oldest  float64 `json:"oldest_age_seconds"`
		} `json:"async"`
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		resp, err := gw.Do(http.MethodGet, "/v1/functions/expiring", nil)
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(resp.Body).Decode(&state)
		_ = resp.Body.Close()
		if err == nil && state.Async.Queued == 2 && state.Async.Running == 1 && state.Async.Oldest >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /v1/functions/expiring: async %+v (%v); want 2 queued, 1 running, the oldest at least 2s old", state.Async, err)
		}
	}
	// The gauge follows within its 5 s refresh.
	for deadline := time.Now().Add(12 * time.Second); metric(t, gw, `nimbus_async_queued{function="expiring"}`) < 1; time.Sleep(500 * time.Millisecond) {
		if time.Now().After(deadline) {
			var lines []string
			for _, l := range strings.Split(metricsText(t, gw), "\n") {
				if strings.HasPrefix(l, "nimbus_async") {
					lines = append(lines, l)
				}
			}
			t.Fatalf("nimbus_async_queued{function=\"expiring\"} stays below 1 while events wait:\n%s", strings.Join(lines, "\n"))
		}
	}
	var rec struct {
		RequestContext struct {
			Condition string `json:"condition"`
		} `json:"requestContext"`
		RequestPayload map[string]any `json:"requestPayload"`
	}
	awaitDeadLetter(t, dead, 2*time.Minute, "an event that waited past its maximum age", &rec)
	if rec.RequestContext.Condition != "EventAgeExceeded" || rec.RequestPayload["value"] != "expired-0" {
		t.Errorf("dead letter: %+v, want condition EventAgeExceeded for the waiting event", rec)
	}
	if seen := printedValues(t, env, "expiring", "expired"); len(seen) != 0 {
		t.Errorf("an event past its maximum age ran: %v", seen)
	}
}

// TestForgedEventsNeverRun publishes events straight to a function's
// subject in NATS, as a tenant who reached the NATS port (or joined the
// cluster as a route) could: no gateway stored them, so none runs, and
// each is named in the log. A real event sent after them runs.
func TestForgedEventsNeverRun(t *testing.T) {
	env, gw := gateway(t)
	deploy(t, model.Function{Name: "forged-target", Runtime: model.RuntimeProvided, MaxInstances: 1, Timeout: 10 * time.Second})
	js := operatorJetStream(t, env)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	forged := []*nats.Msg{}
	for i, sig := range []string{"", strings.Repeat("0", 64)} {
		msg := nats.NewMsg(eventq.EventsPrefix + "forged-target")
		msg.Data = []byte(`{"action":"echo","value":"forged"}`)
		msg.Header.Set(eventq.HeaderRequestID, fmt.Sprintf("forged-%d", i))
		msg.Header.Set(eventq.HeaderCaller, "operator")
		if sig != "" {
			msg.Header.Set(eventq.HeaderSignature, sig)
		}
		forged = append(forged, msg)
	}
	for _, msg := range forged {
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	if status, answer := sendEvent(t, gw, "forged-target", `{"action":"echo","value":"real"}`); status != http.StatusAccepted {
		t.Fatalf("a real event: %d %s", status, answer)
	}
	for deadline := time.Now().Add(60 * time.Second); accessLines(t, gw.LogPath, "forged-target") < 1; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the real event never ran")
		}
	}
	time.Sleep(time.Second)
	if n := accessLines(t, gw.LogPath, "forged-target"); n != 1 {
		t.Errorf("forged-target ran %d times; only the real event may run", n)
	}
	refused := gatewayLogLines(t, func(line string) bool {
		return strings.Contains(line, "an event that no gateway stored is not run") && strings.Contains(line, `"function":"forged-target"`)
	})
	if len(refused) != len(forged) {
		t.Errorf("the gateway logged %d forged events of %d:\n%s", len(refused), len(forged), strings.Join(refused, "\n"))
	}
}
