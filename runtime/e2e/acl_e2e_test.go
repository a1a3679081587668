package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/principals"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
)

// TestSandboxedFunctionHasNoRightsOnTheCluster runs a hostile tenant's
// function and lets it attack Nomad and Consul from inside its instance.
// In its own network namespace it cannot even connect to the agents
// (TestHostNetworkFallback runs the same attack where it can, and ACLs
// answer 403); the function must find no credentials either.
func TestSandboxedFunctionHasNoRightsOnTheCluster(t *testing.T) {
	env, gw := gateway(t)
	if !env.ACL || env.Network == nil {
		t.Fatal("this test needs the ACL-enabled environment with Nimbus networks")
	}
	attackFromInside(t, env, gw, func(_ *testenv.Env, _ *testenv.Gateway, f model.Function, src string) { deployFrom(t, f, src, 0) })
}

// attackFromInside deploys a victim and the intruder with deploy, lets the
// intruder attack and checks that nothing it tried worked: each attempt is
// refused by the agent (403) or, where the instance has its own network
// namespace, cannot connect at all.
func attackFromInside(t *testing.T, env *testenv.Env, gw *testenv.Gateway, deploy func(*testenv.Env, *testenv.Gateway, model.Function, string)) {
	t.Helper()
	isolated := env.Network != nil
	deploy(env, gw, model.Function{Name: "victim", Runtime: model.RuntimeProvided, MinInstances: 1, MaxInstances: 1, Timeout: 10 * time.Second}, fx.goSource)
	src, _ := filepath.Abs("testdata/intruder")
	deploy(env, gw, model.Function{Name: "intruder", Runtime: model.RuntimePython, Handler: "app.handler", MinInstances: 0, MaxInstances: 1, Timeout: 60 * time.Second,
		Environment: map[string]string{"TENANT_SETTING": "mine"}}, src)

	event, _ := json.Marshal(map[string]string{"nomad": env.NomadAddr, "consul": env.ConsulAddr, "victim": "victim", "self": "intruder"})
	a := invoke(t, gw, "intruder", string(event))
	if a.status != http.StatusOK {
		t.Fatalf("the intruder did not run: %d %s", a.status, a.raw)
	}
	var report struct {
		Attempts    map[string]any  `json:"attempts"`
		Credentials map[string]bool `json:"credentials"`
		Privileges  privileges      `json:"privileges"`
		Environment []string        `json:"environment"`
	}
	if err := json.Unmarshal([]byte(a.raw), &report); err != nil || len(report.Attempts) == 0 {
		t.Fatalf("unreadable report %q: %v", a.raw, err)
	}
	names := make([]string, 0, len(report.Attempts))
	for name := range report.Attempts {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		got := report.Attempts[name]
		switch {
		case name == "nomad task API: list jobs" && got == "absent":
			t.Errorf("%s: the task has no Task API socket to attack; Nomad cannot create it when the socket path exceeds 107 bytes (see the client log)", name)
		case name == "nomad task API: list jobs" && got == float64(http.StatusUnauthorized):
			// The Task API takes only a workload identity, which the
			// function's task is not given: it refuses before any ACL.
			t.Logf("%-45s 401 (the Task API knows no anonymous caller)", name)
		case got == float64(http.StatusForbidden):
			t.Logf("%-45s 403", name)
		case isolated && strings.Contains(fmt.Sprint(got), "Connection refused"):
			t.Logf("%-45s cannot connect (own network namespace)", name)
		default:
			t.Errorf("%s: the agent answered %v; a function without a token must get 403", name, got)
		}
	}
	for what, found := range report.Credentials {
		if found {
			t.Errorf("the function found %s: instances must carry no Nomad or Consul credentials", what)
		}
	}

	report.Privileges.check(t)
	checkLambdaEnvironment(t, report.Environment, "TENANT_SETTING")

	// Nothing the intruder tried took effect.
	if pair, _, err := env.Consul.KV().Get(kvstore.RoutesPrefix+"intruder", nil); err != nil || pair != nil {
		t.Errorf("the intruder's route exists (%v)", err)
	}
	if pair, _, err := env.Consul.KV().Get(kvstore.FunctionKey("victim"), nil); err != nil || pair == nil {
		t.Errorf("the victim's record is gone (%v)", err)
	}
	if job, _, err := env.Nomad.Jobs().Info("intruder", nil); err == nil && job != nil {
		t.Errorf("the intruder registered a job")
	}
	if n := groupCount(t, env, "victim"); n != 1 {
		t.Errorf("the victim's count is %d, want 1", n)
	}
}

// privileges is what the intruder got when it tried to become root inside
// its sandbox: its /proc/self/status and the outcome of each attempt.
type privileges struct {
	Status   map[string]string `json:"status"`
	Writable string            `json:"writable scratch"`
	Setuid   string            `json:"setuid(0)"`
	Setgid   string            `json:"setgid(0)"`
	Mknod    string            `json:"mknod a block device"`
	Chown    string            `json:"chown to root"`
	UIDAfter int               `json:"uid after"`
}

// check fails the test for every privilege the tenant holds: any
// capability in any set, a possible gain of privileges through exec, or an
// attempt to act as root that worked.
func (p privileges) check(t *testing.T) {
	t.Helper()
	t.Logf("the intruder's /proc/self/status: %v", p.Status)
	for _, set := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		if v, ok := p.Status[set]; !ok || strings.Trim(v, "0") != "" {
			t.Errorf("%s = %q inside the function, want 0: a tenant holds capabilities", set, v)
		}
	}
	if p.Status["NoNewPrivs"] != "1" {
		t.Errorf("NoNewPrivs = %q inside the function, want 1: a setuid binary would raise the tenant's privileges", p.Status["NoNewPrivs"])
	}
	if p.Writable != "succeeded" {
		t.Fatalf("the intruder could not write its own scratch directory (%s); the attempts below would prove nothing", p.Writable)
	}
	for what, got := range map[string]string{"setuid(0)": p.Setuid, "setgid(0)": p.Setgid, "mknod of a block device": p.Mknod, "chown to root": p.Chown} {
		if got != "EPERM" {
			t.Errorf("%s inside the function: %s, want EPERM", what, got)
		}
	}
	if p.UIDAfter != 65534 {
		t.Errorf("the intruder runs as uid %d after its attempts, want nobody (65534)", p.UIDAfter)
	}
}

// lambdaVariables are the variables Lambda defines for a handler's
// environment (without the credentials, which Nimbus does not issue).
var lambdaVariables = []string{"AWS_DEFAULT_REGION", "AWS_EXECUTION_ENV", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_NAME",
	"AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
	"AWS_LAMBDA_RUNTIME_API", "AWS_REGION", "LAMBDA_RUNTIME_DIR", "LAMBDA_TASK_ROOT", "LANG", "PATH", "TZ", "_HANDLER", "_X_AMZN_TRACE_ID"}

// checkLambdaEnvironment fails the test unless a handler's variables are
// exactly Lambda's and the function's own: nothing of the Nomad client's
// environment, Nomad's task variables or the host's settings. The Lambda
// endpoint is there when the client names its gateway.
func checkLambdaEnvironment(t *testing.T, got []string, own ...string) {
	t.Helper()
	want := append(slices.Clone(lambdaVariables), own...)
	if slices.Contains(got, protocol.EnvLambdaEndpoint) {
		want = append(want, protocol.EnvLambdaEndpoint)
	}
	// Python itself sets LC_CTYPE in its own environment when LANG's
	// locale is not installed in the sandbox (PEP 538's locale coercion).
	if slices.Contains(got, "LC_CTYPE") {
		want = append(want, "LC_CTYPE")
	}
	sort.Strings(want)
	got = slices.Clone(got)
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Errorf("the handler's environment holds\n%v\nwant exactly Lambda's variables and the function's own:\n%v", got, want)
	}
}

// TestGatewayWithoutScaleRightSaysWhichPolicy runs a second gateway whose
// Nomad token lacks scale-job: the cold start it cannot make is reported,
// in the invocation's error and the function's status, with the missing
// capability and the shipped policy that grants it.
func TestGatewayWithoutScaleRightSaysWhichPolicy(t *testing.T) {
	env, _ := gateway(t)
	if !env.ACL {
		t.Fatal("this test needs the ACL-enabled environment")
	}
	deploy(t, model.Function{Name: "unscalable", Runtime: model.RuntimeProvided, MinInstances: 0, MaxInstances: 1, Timeout: 5 * time.Second})
	weak, err := principals.NomadToken(context.Background(), env.Nomad, "test-gateway-no-scale",
		`namespace "default" { capabilities = ["read-job", "read-job-scaling"] }`)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := env.StartGatewayAs(fx.gatewayBin, "gateway-no-scale", principals.Credentials{NomadToken: weak, ConsulToken: env.Principals.Gateway.ConsulToken})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Stop()

	a := invoke(t, gw, "unscalable", `{"action":"echo","value":"x"}`)
	if a.status != http.StatusInternalServerError || a.header.Get("Retry-After") != "" {
		t.Errorf("a refused scale answered %d (Retry-After %q): it is the platform's fault, not a throttle; want 500 without Retry-After: %s",
			a.status, a.header.Get("Retry-After"), a.raw)
	}
	msg := fmt.Sprint(a.body["errorMessage"])
	for _, want := range []string{`capability "scale-job"`, "nimbus-gateway policy", "policies/nomad/gateway.hcl"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the refusal (%d) does not say %s: %s", a.status, want, a.raw)
		}
	}
	if view := gatewayView(t, gw, "unscalable"); !strings.Contains(fmt.Sprint(view["scale_error"]), "scale-job") {
		t.Errorf("the function's status does not show the scale error: %v", view)
	}
}

// TestHungNomadIsNamedNotThrottled gives a second gateway a Nomad that
// accepts connections and never answers, as a stopped agent does. A cold
// start cannot happen; the caller must learn that Nomad is the trouble and
// that retrying may help (503 with Retry-After, ServiceException), not that
// it is over a limit (429), and well before the 30 s queue wait ends.
func TestHungNomadIsNamedNotThrottled(t *testing.T) {
	env, _ := gateway(t)
	deploy(t, model.Function{Name: "stranded", Runtime: model.RuntimeProvided, MinInstances: 0, MaxInstances: 1, Timeout: 5 * time.Second})
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = hung.Close() }()
	held := make(chan net.Conn, 64) // read nothing, answer nothing
	go func() {
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			select {
			case held <- c:
			default:
				_ = c.Close()
			}
		}
	}()
	defer func() {
		for len(held) > 0 {
			_ = (<-held).Close()
		}
	}()
	nomadURL := "http://" + hung.Addr().String()
	gw, err := env.StartGatewayAs(fx.gatewayBin, "gateway-hung-nomad", env.Principals.Gateway, "NOMAD_ADDR="+nomadURL)
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Stop()

	a := invoke(t, gw, "stranded", `{"action":"echo","value":"x"}`)
	msg := fmt.Sprint(a.body["errorMessage"])
	if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" || a.body["errorType"] != "ServiceException" {
		t.Errorf("a cold start with Nomad hung answered %d %v (Retry-After %q); want 503 ServiceException with Retry-After", a.status, a.body["errorType"], a.header.Get("Retry-After"))
	}
	if !strings.Contains(msg, "Nomad at "+nomadURL) || !strings.Contains(msg, "did not answer") {
		t.Errorf("the answer does not name Nomad and its address: %s", a.raw)
	}
	log, _ := os.ReadFile(gw.LogPath)
	if n := strings.Count(string(log), `"msg":"scale request failed"`); n < 1 || !strings.Contains(string(log), nomadURL) {
		t.Errorf("the gateway's log does not say Nomad failed (%d lines):\n%s", n, log)
	}
}
