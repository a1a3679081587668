package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/principals"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
)

// recorderToken is the recorder's own application token, as a user would
// give a function: Consul write on results/ and nothing else.
var recorderToken struct {
	once   sync.Once
	secret string
	err    error
}

// recorder deploys the python function that writes each delivery to KV.
func recorder(t *testing.T, env *testenv.Env, name string, extra map[string]string) {
	t.Helper()
	src, _ := filepath.Abs("testdata/recorder")
	recorderToken.once.Do(func() {
		if env.ACL {
			recorderToken.secret, recorderToken.err = principals.ConsulToken(context.Background(), env.Consul, "test-recorder", `key_prefix "results/" { policy = "write" }`)
		}
	})
	if recorderToken.err != nil {
		t.Fatal(recorderToken.err)
	}
	// The recorder reaches Consul over the network, as an application's
	// service: instances cannot reach the host's agents.
	vars := map[string]string{"CONSUL_ADDR": "http://" + net.JoinHostPort(worldAllowed, strconv.Itoa(theWorld(t, env).port)), "CONSUL_TOKEN": recorderToken.secret}
	for k, v := range extra {
		vars[k] = v
	}
	deployFrom(t, model.Function{Name: name, Runtime: model.RuntimePython, Handler: "app.handler", MinInstances: 1, MaxInstances: 1,
		Timeout: 30 * time.Second, Environment: vars}, src, 0)
}

func addTrigger(t *testing.T, env *testenv.Env, tr kvstore.KVTrigger) {
	t.Helper()
	if _, err := env.Consul.KV().Put(&consulapi.KVPair{Key: kvstore.KVTriggerKey(tr.Name), Value: tr.Encode()}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		kv := env.Consul.KV()
		_, _ = kv.Delete(kvstore.KVTriggerKey(tr.Name), nil)
		_, _ = kv.Delete(kvstore.KVTriggerState+tr.Name, nil)
		_, _ = kv.DeleteTree(kvstore.KVTriggerProgressKeys(tr.Name), nil)
		_, _ = kv.DeleteTree(tr.Prefix, nil)
		_, _ = kv.DeleteTree("results/"+tr.Name+"/", nil)
	})
	// Wait until the trigger has taken its starting point.
	for i := 0; i < 200; i++ {
		if pair, _, _ := env.Consul.KV().Get(kvstore.KVTriggerState+tr.Name, nil); pair != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("trigger %s never started", tr.Name)
}

func writeKeys(t *testing.T, env *testenv.Env, prefix string, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if _, err := env.Consul.KV().Put(&consulapi.KVPair{Key: fmt.Sprintf("%sk%03d", prefix, i), Value: []byte(fmt.Sprintf("v%d", i))}, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// deliveries counts deliveries per changed key.
func deliveries(t *testing.T, env *testenv.Env, trigger string) map[string]int {
	t.Helper()
	keys, _, err := env.Consul.KV().Keys("results/"+trigger+"/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, k := range keys {
		rest := strings.TrimPrefix(k, "results/"+trigger+"/")
		out[rest[:strings.LastIndex(rest, "/")]]++
	}
	return out
}

func waitCovered(t *testing.T, env *testenv.Env, trigger string, want int) map[string]int {
	t.Helper()
	var got map[string]int
	// A crashed gateway's lock lapses after its session TTL (up to 20 s).
	for i := 0; i < 600; i++ {
		if got = deliveries(t, env, trigger); len(got) >= want {
			return got
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("only %d of %d changed keys were delivered: %s\n%s", len(got), want, sampleKeys(got), triggerDiagnostics(t, env, trigger))
	return nil
}

// sampleKeys prints at most ten delivered keys, in order.
func sampleKeys(got map[string]int) string {
	keys := make([]string, 0, len(got))
	for k := range got {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) > 10 {
		return fmt.Sprintf("%v … and %d more", keys[:10], len(keys)-10)
	}
	return fmt.Sprint(keys)
}

// triggerDiagnostics says what a trigger did, for a failing test: its dead
// letters and the gateway's log lines about it.
func triggerDiagnostics(t *testing.T, env *testenv.Env, trigger string) string {
	t.Helper()
	var b strings.Builder
	dead, _, err := env.Consul.KV().List(kvstore.KVTriggerDeadPrefix+trigger+"/", nil)
	fmt.Fprintf(&b, "dead letters of trigger %s (%v):\n", trigger, err)
	for _, p := range dead {
		fmt.Fprintf(&b, "  %s: %.400s\n", p.Key, p.Value)
	}
	lines := gatewayLogLines(t, func(l string) bool {
		return strings.Contains(l, `"trigger":"`+trigger+`"`) || strings.Contains(l, "KV trigger "+trigger) || strings.Contains(l, `"level":"ERROR"`)
	})
	lines = lines[max(0, len(lines)-40):]
	fmt.Fprintf(&b, "the gateway's last log lines about it, and its errors:\n  %s", strings.Join(lines, "\n  "))
	return b.String()
}

// gatewayLogLines are the shared gateway's log lines that match. Its log
// is the whole package's: a test looks only at lines about what it made.
func gatewayLogLines(t *testing.T, match func(line string) bool) []string {
	t.Helper()
	_, gw := gateway(t)
	log, _ := os.ReadFile(gw.LogPath)
	var lines []string
	for _, l := range strings.Split(string(log), "\n") {
		if match(l) {
			lines = append(lines, l)
		}
	}
	return lines
}

// failedSaves are a trigger's log lines that say it could not save its
// progress.
func failedSaves(t *testing.T, trigger string) []string {
	t.Helper()
	return gatewayLogLines(t, func(l string) bool {
		return strings.Contains(l, `"trigger":"`+trigger+`"`) && strings.Contains(l, "cannot save trigger progress")
	})
}

func TestKVTriggerDeliversEveryChange(t *testing.T) {
	env, _ := gateway(t)
	recorder(t, env, "recorder", nil)
	addTrigger(t, env, kvstore.KVTrigger{Name: "every", Function: "recorder", Prefix: "every/", Events: []string{"put", "delete"}, BatchSize: 10, StartingPosition: "latest", MaxRetries: 2})

	writeKeys(t, env, "every/", 0, 100)
	got := waitCovered(t, env, "every", 100)
	dup := 0
	for k, n := range got {
		if !strings.HasPrefix(k, "every/k") {
			t.Errorf("unexpected key %s", k)
		}
		dup += n - 1
	}
	t.Logf("100 keys written: %d delivered, %d duplicate deliveries", len(got), dup)
	if dup != 0 {
		t.Errorf("%d duplicates without any failure", dup)
	}

	// A deletion is delivered as REMOVE with the old value.
	if _, err := env.Consul.KV().Delete("every/k007", nil); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if deliveries(t, env, "every")["every/k007"] == 2 {
			keys, _, _ := env.Consul.KV().List("results/every/every/k007/", nil)
			saw := ""
			for _, p := range keys {
				saw += string(p.Value)
			}
			if !strings.Contains(saw, `"event": "REMOVE"`) || !strings.Contains(saw, `"old": "v7"`) {
				t.Errorf("deletion record: %s", saw)
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Error("the deletion was not delivered")
}

func TestKVTriggerResumesAfterGatewayRestart(t *testing.T) {
	env, gw := gateway(t)
	recorder(t, env, "slowrec", map[string]string{"SLOW_MS": "250"})
	addTrigger(t, env, kvstore.KVTrigger{Name: "resume", Function: "slowrec", Prefix: "resume/", Events: []string{"put"}, BatchSize: 10, StartingPosition: "latest", MaxRetries: 2})

	writeKeys(t, env, "resume/", 0, 60)
	// Kill the gateway mid-stream, once some batches are through.
	for len(deliveries(t, env, "resume")) == 0 {
		time.Sleep(50 * time.Millisecond)
	}
	gw.Kill()
	partial := len(deliveries(t, env, "resume"))
	if err := gw.Restart(); err != nil {
		t.Fatal(err)
	}
	writeKeys(t, env, "resume/", 60, 100)

	got := waitCovered(t, env, "resume", 100)
	total := 0
	for _, n := range got {
		total += n
	}
	t.Logf("killed after %d keys delivered; after the restart all 100 delivered with %d duplicates", partial, total-100)
	if partial >= 60 {
		t.Log("the stream finished before the kill; the restart still had to resume")
	}
	if total-100 > 10 {
		t.Errorf("%d duplicate deliveries; at most one batch (10) may repeat", total-100)
	}
}

func TestKVTriggerDeadLetters(t *testing.T) {
	env, _ := gateway(t)
	recorder(t, env, "failing", map[string]string{"FAIL": "1"})
	addTrigger(t, env, kvstore.KVTrigger{Name: "dlq", Function: "failing", Prefix: "dlq/", Events: []string{"put"}, BatchSize: 10, StartingPosition: "latest", MaxRetries: 1})
	t.Cleanup(func() { _, _ = env.Consul.KV().DeleteTree(kvstore.KVTriggerDeadPrefix+"dlq/", nil) })

	writeKeys(t, env, "dlq/", 0, 3)
	var all string
	for i := 0; i < 200; i++ {
		pairs, _, err := env.Consul.KV().List(kvstore.KVTriggerDeadPrefix+"dlq/", nil)
		if err != nil {
			t.Fatal(err)
		}
		all = ""
		for _, p := range pairs {
			all += string(p.Value)
		}
		if strings.Contains(all, "dlq/k000") && strings.Contains(all, "dlq/k001") && strings.Contains(all, "dlq/k002") {
			for _, want := range []string{"this function always fails", `"function":"failing"`, `"eventName":"INSERT"`} {
				if !strings.Contains(all, want) {
					t.Errorf("dead letters lack %q: %s", want, all)
				}
			}
			break
		}
		if i == 199 {
			t.Fatalf("the failed batches did not all reach the dead-letter prefix: %s", all)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Deleted while it waits to retry a batch, the trigger stops quietly:
	// the batch is not delivered, so its progress is not saved (nor is a
	// failure to save it reported).
	writeKeys(t, env, "dlq/", 3, 4)
	time.Sleep(200 * time.Millisecond)
	if _, err := env.Consul.KV().Delete(kvstore.KVTriggerKey("dlq"), nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	for _, l := range failedSaves(t, "dlq") {
		t.Errorf("the deleted trigger reported a failed save: %s", l)
	}
}

// TestKVTriggerOnAnUngrantedPrefixSaysWhichRule: Consul answers a listing
// the gateway may not read as an empty one, which would leave the trigger
// silent. The gateway notices and reports the rule to add, on the
// function's status.
func TestKVTriggerOnAnUngrantedPrefixSaysWhichRule(t *testing.T) {
	env, gw := gateway(t)
	if !env.ACL {
		t.Fatal("this test needs the ACL-enabled environment")
	}
	deploy(t, model.Function{Name: "ungranted-target", Runtime: model.RuntimeProvided, MinInstances: 0, MaxInstances: 1, Timeout: 5 * time.Second})
	tr := kvstore.KVTrigger{Name: "ungranted", Function: "ungranted-target", Prefix: "not-granted/", Events: []string{"put"}, BatchSize: 1, StartingPosition: "latest", MaxRetries: 0}
	if _, err := env.Consul.KV().Put(&consulapi.KVPair{Key: kvstore.KVTriggerKey(tr.Name), Value: tr.Encode()}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = env.Consul.KV().Delete(kvstore.KVTriggerKey(tr.Name), nil) })

	deadline := time.Now().Add(20 * time.Second)
	for {
		problems, _ := gatewayView(t, gw, "ungranted-target")["kv_trigger_problems"].(map[string]any)
		msg := fmt.Sprint(problems["ungranted"])
		if strings.Contains(msg, `key_prefix "not-granted/" { policy = "read" }`) && strings.Contains(msg, "nimbus-gateway-triggers") {
			t.Logf("reported: %s", msg)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the function's status does not report the trigger's missing right: %v", problems)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A trigger record whose prefix covers nimbus/ (written past the provider,
// which refuses it at plan) would feed on its own progress forever: the
// gateway refuses to run it, says why on the function's status, and never
// invokes the function.
func TestKVTriggerOnNimbusKeysDoesNotRun(t *testing.T) {
	env, gw := gateway(t)
	deploy(t, model.Function{Name: "loop-target", Runtime: model.RuntimeProvided, MinInstances: 0, MaxInstances: 1, Timeout: 5 * time.Second})
	tr := kvstore.KVTrigger{Name: "loop", Function: "loop-target", Prefix: "nimbus", Events: []string{"put"}, BatchSize: 1, StartingPosition: "trim_horizon", MaxRetries: 0}
	if _, err := env.Consul.KV().Put(&consulapi.KVPair{Key: kvstore.KVTriggerKey(tr.Name), Value: tr.Encode()}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = env.Consul.KV().Delete(kvstore.KVTriggerKey(tr.Name), nil)
		_, _ = env.Consul.KV().Delete(kvstore.KVTriggerState+tr.Name, nil)
		_, _ = env.Consul.KV().DeleteTree(kvstore.KVTriggerProgressKeys(tr.Name), nil)
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		problems, _ := gatewayView(t, gw, "loop-target")["kv_trigger_problems"].(map[string]any)
		if msg := fmt.Sprint(problems["loop"]); strings.Contains(msg, "covers Nimbus's own keys") {
			t.Logf("reported: %s", msg)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the function's status does not report the refused trigger: %v", problems)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Writes under nimbus/ (a function's record changes) reach no one.
	deploy(t, model.Function{Name: "loop-bait", Runtime: model.RuntimeProvided, MinInstances: 0, MaxInstances: 1, Timeout: 5 * time.Second})
	time.Sleep(2 * time.Second)
	if n := groupCount(t, env, "loop-target"); n != 0 {
		t.Errorf("the refused trigger's function was scaled to %d: something invoked it", n)
	}
	if pair, _, err := env.Consul.KV().Get(kvstore.KVTriggerState+tr.Name, nil); err != nil || pair != nil {
		t.Errorf("the refused trigger wrote progress (%v)", err)
	}
}

// TestKVTriggerProgressScalesAndSurvivesRestart watches a prefix of 20,000
// keys: more than one Consul value (512 KB) could hold as the trigger's
// progress. The progress must save, and changes made while the gateway is
// down must be delivered after its restart, not skipped as if the trigger
// started afresh.
func TestKVTriggerProgressScalesAndSurvivesRestart(t *testing.T) {
	env, gw := gateway(t)
	const n = 20000
	key := func(i int) string { return fmt.Sprintf("big/customer-orders/region-eu-west/order-%08d", i) }
	var ops consulapi.KVTxnOps
	flush := func() {
		if len(ops) == 0 {
			return
		}
		if ok, resp, _, err := env.Consul.KV().Txn(ops, nil); err != nil || !ok {
			t.Fatalf("writing the keys: %v %v", err, resp)
		}
		ops = nil
	}
	for i := 0; i < n; i++ {
		ops = append(ops, &consulapi.KVTxnOp{Verb: consulapi.KVSet, Key: key(i), Value: []byte("v")})
		if len(ops) == 64 {
			flush()
		}
	}
	flush()
	t.Cleanup(func() { _, _ = env.Consul.KV().DeleteTree("big/", nil) })

	recorder(t, env, "bigrec", nil)
	addTrigger(t, env, kvstore.KVTrigger{Name: "big", Function: "bigrec", Prefix: "big/", Events: []string{"put", "delete"}, BatchSize: 10, StartingPosition: "latest", MaxRetries: 2})
	if failed := failedSaves(t, "big"); len(failed) > 0 {
		t.Fatalf("the trigger could not save its progress over %d keys: %s", n, failed[0])
	}

	// Down time: two keys change, one goes, one is new.
	gw.Kill()
	for _, i := range []int{7, 12345} {
		if _, err := env.Consul.KV().Put(&consulapi.KVPair{Key: key(i), Value: []byte("changed")}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := env.Consul.KV().Delete(key(19999), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Consul.KV().Put(&consulapi.KVPair{Key: key(n), Value: []byte("new")}, nil); err != nil {
		t.Fatal(err)
	}
	if err := gw.Restart(); err != nil {
		t.Fatal(err)
	}
	got := waitCovered(t, env, "big", 4)
	for _, i := range []int{7, 12345, 19999, n} {
		if got[key(i)] == 0 {
			t.Errorf("the change of %s made while the gateway was down was not delivered (delivered: %v)", key(i), got)
		}
	}
	if len(got) != 4 {
		t.Errorf("delivered %d keys, want the 4 that changed: %s\n%s", len(got), sampleKeys(got), triggerDiagnostics(t, env, "big"))
	}
}
