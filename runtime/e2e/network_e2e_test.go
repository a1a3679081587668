package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"
	"golang.org/x/sys/unix"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/cninet"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testkit"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/packaging"
)

// The outside world, as the test builds it: a network namespace of its own
// behind a veth pair, with one address instances may reach and one that the
// package's environment puts on the deny list (testenv.Options.DenyEgress),
// beside link-local addresses. Only these two, inside the namespace the
// test creates, are ever connected to. worldHostAddr is the test's own end
// of the pair: nothing connects to it, it only receives the namespace's
// replies to the masqueraded probes. The range is RFC 2544's benchmarking
// range, routed on no real network. Link-local addresses appear only as a
// rule that the test reads (nft list table), never as a destination. No
// probe leaves this machine.
const (
	worldHostAddr = "198.18.0.1/24"
	worldAllowed  = "198.18.0.2"
	worldDenied   = "198.18.0.3"
)

// The world's private side: a private (RFC 1918) network that only the
// test's namespace holds, routed by the host to the namespace alone.
// Instances may not reach private networks, except the destinations the
// network's allow list names (here, worldPrivateAllowed).
const (
	worldPrivateHostAddr = "10.254.254.1/24"
	worldPrivate         = "10.254.254.2"
	worldPrivateAllowed  = "10.254.254.3"
)

var (
	worldDenyList  = []netip.Prefix{netip.MustParsePrefix(worldDenied + "/32")}
	worldAllowList = []netip.Prefix{netip.MustParsePrefix(worldPrivateAllowed + "/32")}
)

// TestInstancesAreIsolatedOnTheNetwork runs a hostile tenant's function and
// lets it probe, from inside its instance, everything an instance must not
// reach: the agents' ports, the gateway's API and artifacts on the host
// address, another instance's invoke endpoint and Lambda Runtime API, and a
// denied address. Every target that must be closed is first shown open
// from the host, so a closed result is the firewall's doing. The same
// function still reaches an allowed address and, through the gateway's
// function listener, another function.
func TestInstancesAreIsolatedOnTheNetwork(t *testing.T) {
	env, gw := gateway(t)
	if env.Network == nil {
		t.Fatal("this test needs the environment with Nimbus networks")
	}
	bridge := env.Network.Public.Gateway().String()

	deploy(t, model.Function{Name: "neighbour", Runtime: model.RuntimeProvided, MinInstances: 1, MaxInstances: 1, Timeout: 10 * time.Second})
	src, _ := filepath.Abs("testdata/netprobe")
	deployFrom(t, model.Function{Name: "prober", Runtime: model.RuntimePython, Handler: "app.handler", MaxInstances: 1, Timeout: 120 * time.Second}, src, 0)
	deployFrom(t, model.Function{Name: "sealed", Runtime: model.RuntimePython, Handler: "app.handler", MaxInstances: 1, Timeout: 60 * time.Second, Egress: model.EgressNone}, src, 0)
	testkit.WaitInstances(context.Background(), t, env.Consul, nomadjob.ServiceName("neighbour"), 1)
	nb := instanceOf(t, env, "neighbour")

	// Stand-ins for agents that listen on every address, as production
	// agents do: the test's own agents listen on loopback only.
	closed := map[string]string{} // probe name → address that must be closed to instances
	for name, port := range env.AgentPorts() {
		addr := net.JoinHostPort(bridge, strconv.Itoa(port))
		listenOn(t, addr)
		closed[name+" on the host's bridge address"] = addr
	}
	closed["nomad http on loopback"] = env.NomadAddr[len("http://"):]

	// A gateway whose main listener (API, artifacts, metrics) is on the
	// bridge address.
	exposed, err := env.StartGatewayOn(fx.gatewayBin, "gateway-exposed", env.Principals.Gateway, net.JoinHostPort(bridge, strconv.Itoa(exposedPort(t, env))))
	if err != nil {
		t.Fatal(err)
	}
	defer exposed.Stop()
	digest := uploadTo(t, env, exposed, fx.goSource)

	// The neighbour's invoke endpoint, at its own address and through its
	// mapped port, and its Runtime API.
	closed["neighbour /invoke at its address"] = net.JoinHostPort(nb.addr, strconv.Itoa(nb.port))
	closed["neighbour /invoke through its mapped port on the bridge address"] = net.JoinHostPort(bridge, strconv.Itoa(nb.hostPort))
	closed["neighbour /invoke through its mapped port on loopback"] = net.JoinHostPort("127.0.0.1", strconv.Itoa(nb.hostPort))
	for where, host := range map[string]string{"loopback": "127.0.0.1", "the bridge address": bridge, "its address": nb.addr} {
		closed["neighbour Runtime API on "+where] = net.JoinHostPort(host, strconv.Itoa(nb.runtimeAPIPort))
	}

	w := theWorld(t, env)
	closed["denied address"] = net.JoinHostPort(worldDenied, strconv.Itoa(w.port))
	closed["private address (RFC 1918) not in the allow list"] = net.JoinHostPort(worldPrivate, strconv.Itoa(w.port))

	// Positive controls: from the host, every target is open.
	for name, addr := range closed {
		if strings.HasPrefix(name, "neighbour Runtime API") || strings.HasSuffix(name, "on loopback") || name == "neighbour /invoke at its address" {
			continue // inside the neighbour's namespace, or the prober's own loopback
		}
		if c, err := net.DialTimeout("tcp", addr, 2*time.Second); err != nil {
			t.Fatalf("control: %s (%s) is not open from the host, so a probe of it proves nothing: %v", name, addr, err)
		} else {
			_ = c.Close()
		}
	}
	for _, url := range []string{exposed.URL + "/healthz", "http://" + net.JoinHostPort(worldAllowed, strconv.Itoa(w.port)),
		"http://" + net.JoinHostPort(worldPrivateAllowed, strconv.Itoa(w.port))} {
		if status := httpStatus(t, url); status != http.StatusOK {
			t.Fatalf("control: GET %s from the host answered %d", url, status)
		}
	}
	if resp, err := exposed.Do(http.MethodGet, "/v1/artifacts/sha256/"+digest, nil); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("control: the operator cannot download the artifact from the host: %v %v", err, resp)
	} else {
		_ = resp.Body.Close()
	}

	// The attack, from inside the prober's instance.
	probe := map[string]any{"timeout": 2}
	var connects []map[string]any
	for name, addr := range closed {
		host, port, _ := net.SplitHostPort(addr)
		connects = append(connects, map[string]any{"name": name, "host": host, "port": port})
	}
	fnListener := "http://" + env.FunctionGateway
	// Packages on the function listener: the neighbour's with its signed
	// URL, as its host fetches it, and the prober's own package with the
	// neighbour's signature borrowed.
	goPkg, err := packaging.ZipDir(fx.goSource)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := url.Parse(upload(t, env, gw, goPkg))
	if err != nil {
		t.Fatal(err)
	}
	proberDigest := uploadTo(t, env, gw, src)
	probe["connect"] = connects
	probe["http"] = []map[string]any{
		{"name": "gateway health on the bridge address", "url": exposed.URL + "/healthz"},
		{"name": "gateway artifact on the bridge address", "url": exposed.URL + "/v1/artifacts/sha256/" + digest},
		{"name": "allowed address", "url": "http://" + net.JoinHostPort(worldAllowed, strconv.Itoa(w.port))},
		{"name": "private address in the allow list", "url": "http://" + net.JoinHostPort(worldPrivateAllowed, strconv.Itoa(w.port))},
		{"name": "function listener: artifact", "url": fnListener + "/v1/artifacts/sha256/" + digest},
		{"name": "function listener: a package with its signed URL", "url": fnListener + signed.RequestURI()},
		{"name": "function listener: a package with another's signature", "url": fnListener + "/v1/artifacts/sha256/" + proberDigest + "?" + signed.RawQuery},
		{"name": "function listener: an upload", "url": fnListener + "/v1/artifacts/sha256/" + proberDigest, "method": "PUT", "body": map[string]string{"not": "a zip"}},
		{"name": "function listener: metrics", "url": fnListener + "/metrics"},
		// A function calls another with its own credentials (here a
		// bearer token it was given); without, it is refused like anyone.
		{"name": "function listener: invoke the neighbour", "url": fnListener + "/2015-03-31/functions/neighbour/invocations",
			"method": "POST", "body": map[string]string{"action": "echo", "value": "from the prober"},
			"headers": map[string]string{"Authorization": "Bearer " + env.GatewayToken}},
		{"name": "function listener: invoke the neighbour without credentials", "url": fnListener + "/2015-03-31/functions/neighbour/invocations",
			"method": "POST", "body": map[string]string{"action": "echo", "value": "from the prober"}},
	}
	report := runProbe(t, gw, "prober", probe)
	if report.LambdaEndpoint != fnListener {
		t.Errorf("the handler's AWS_ENDPOINT_URL_LAMBDA is %q, want the function listener %s", report.LambdaEndpoint, fnListener)
	}
	for _, name := range sortedKeys(closed) {
		got := report.Results[name]
		if open(got) {
			t.Errorf("%s (%s): the prober connected; an instance must not reach it", name, closed[name])
		} else {
			t.Logf("%-70s %v", name, got)
		}
	}
	for _, name := range []string{"gateway health on the bridge address", "gateway artifact on the bridge address"} {
		if got := report.Results[name]; open(got) {
			t.Errorf("%s: the prober got %v; an instance must not reach the gateway's API", name, got)
		} else {
			t.Logf("%-70s %v", name, got)
		}
	}
	expectStatus(t, report, "allowed address", http.StatusOK, "world")
	expectStatus(t, report, "private address in the allow list", http.StatusOK, "world")
	expectStatus(t, report, "function listener: artifact", http.StatusForbidden, "only to signed URLs")
	expectStatus(t, report, "function listener: a package with its signed URL", http.StatusOK, "")
	expectStatus(t, report, "function listener: a package with another's signature", http.StatusForbidden, "not valid for this artifact")
	expectStatus(t, report, "function listener: an upload", http.StatusNotFound, "not served to functions")
	expectStatus(t, report, "function listener: metrics", http.StatusNotFound, "not served to functions")
	expectStatus(t, report, "function listener: invoke the neighbour", http.StatusOK, "from the prober")
	expectStatus(t, report, "function listener: invoke the neighbour without credentials", http.StatusUnauthorized, "UnrecognizedClientException")

	// No egress at all: not the allowed address, not the gateway.
	sealed := runProbe(t, gw, "sealed", map[string]any{"timeout": 2, "http": []map[string]any{
		{"name": "allowed address", "url": "http://" + net.JoinHostPort(worldAllowed, strconv.Itoa(w.port))},
		{"name": "function listener: invoke the neighbour", "url": fnListener + "/2015-03-31/functions/neighbour/invocations",
			"method": "POST", "body": map[string]string{"action": "echo", "value": "x"}},
	}})
	for name, got := range sealed.Results {
		if open(got) {
			t.Errorf("egress none: %s answered %v; the instance must open no connection", name, got)
		} else {
			t.Logf("egress none: %-58s %v", name, got)
		}
	}

	// The installed rules deny link-local addresses (cloud metadata) as
	// they deny the test's address, which the probe above showed closed.
	table := cninet.TableName(env.Network.Policy(env.Network.Public))
	nft, err := cninet.NftCommand()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(nft, "list", "table", "inet", table).CombinedOutput()
	if err != nil {
		t.Fatalf("nft list table inet %s: %v: %s", table, err, out)
	}
	rules := string(out)
	wants := []string{"169.254.0.0/16", "10.0.0.0/8", "100.64.0.0/10", "172.16.0.0/12", "192.168.0.0/16", worldDenied,
		"ip daddr != @denied accept", "ip daddr @allowed accept", worldPrivateAllowed}
	// The host's DNS servers stay reachable on port 53 (read, not probed).
	if conf, err := os.ReadFile("/etc/resolv.conf"); err == nil {
		if resolvers := cninet.HostResolvers(conf); len(resolvers) > 0 {
			wants = append(wants, "th dport 53 accept")
			wants = append(wants, resolvers...)
		}
	}
	for _, want := range wants {
		if !strings.Contains(rules, want) {
			t.Errorf("the installed ruleset lacks %q:\n%s", want, rules)
		}
	}
}

// probeReport is netprobe's answer.
type probeReport struct {
	Results        map[string]any `json:"results"`
	LambdaEndpoint string         `json:"lambda_endpoint"`
}

func runProbe(t *testing.T, gw *testenv.Gateway, fn string, event map[string]any) probeReport {
	t.Helper()
	b, _ := json.Marshal(event)
	a := invoke(t, gw, fn, string(b))
	if a.status != http.StatusOK {
		t.Fatalf("%s did not run: %d %s", fn, a.status, a.raw)
	}
	var r probeReport
	if err := json.Unmarshal([]byte(a.raw), &r); err != nil || r.Results == nil {
		t.Fatalf("unreadable report of %s %q: %v", fn, a.raw, err)
	}
	return r
}

// open reports whether a probe result is a connection or an HTTP answer.
func open(result any) bool {
	switch r := result.(type) {
	case string:
		return r == "connected"
	case map[string]any:
		_, isStatus := r["status"].(float64)
		return isStatus
	}
	return result != nil
}

func expectStatus(t *testing.T, r probeReport, name string, status int, body string) {
	t.Helper()
	got, _ := r.Results[name].(map[string]any)
	if got == nil || got["status"] != float64(status) || !strings.Contains(fmt.Sprint(got["body"]), body) {
		t.Errorf("%s: got %v, want status %d with %q", name, r.Results[name], status, body)
		return
	}
	t.Logf("%-70s %v", name, got["status"])
}

// instance is what the test harness knows of a running instance.
type instance struct {
	addr           string // in its own namespace
	port           int    // nimbus-host's port in the namespace
	hostPort       int    // mapped on the host
	runtimeAPIPort int    // the Lambda Runtime API, on the namespace's loopback
}

func instanceOf(t *testing.T, env *testenv.Env, fn string) instance {
	t.Helper()
	// Consul may list the instance before the client has reported its
	// allocation running to the servers.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if in, ok := runningInstance(t, env, fn); ok {
			return in
		}
	}
	t.Fatalf("%s has no running instance", fn)
	return instance{}
}

func runningInstance(t *testing.T, env *testenv.Env, fn string) (instance, bool) {
	t.Helper()
	allocs, _, err := env.Nomad.Jobs().Allocations(nomadjob.JobID(fn), false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, stub := range allocs {
		if stub.ClientStatus != nomadapi.AllocClientStatusRunning {
			continue
		}
		a, _, err := env.Nomad.Allocations().Info(stub.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		in := instance{}
		if a.NetworkStatus != nil {
			in.addr = a.NetworkStatus.Address
		}
		for _, p := range a.AllocatedResources.Shared.Ports {
			if p.Label == nomadjob.PortLabel {
				in.hostPort, in.port = p.Value, p.To
			}
		}
		if in.port <= 0 {
			in.port = in.hostPort
		}
		in.runtimeAPIPort = runtimeAPIPort(t, fn)
		if in.addr == "" || in.hostPort == 0 {
			t.Fatalf("allocation %s of %s has no network address or port: %+v", a.ID, fn, a.NetworkStatus)
		}
		return in, true
	}
	return instance{}, false
}

// runtimeAPIPort reads the Runtime API address from the environment of the
// function's handler process, as an attacker who learned it would know it.
func runtimeAPIPort(t *testing.T, fn string) int {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
			if err != nil {
				continue
			}
			vars := strings.Split(string(raw), "\x00")
			isHandler, api := false, ""
			for _, kv := range vars {
				isHandler = isHandler || kv == "AWS_LAMBDA_FUNCTION_NAME="+fn
				if v, ok := strings.CutPrefix(kv, "AWS_LAMBDA_RUNTIME_API="); ok {
					api = v
				}
			}
			if isHandler && api != "" {
				_, port, _ := net.SplitHostPort(api)
				n, _ := strconv.Atoi(port)
				return n
			}
		}
	}
	t.Fatalf("found no handler process of %s with AWS_LAMBDA_RUNTIME_API", fn)
	return 0
}

// listenOn accepts connections on addr until the test ends.
func listenOn(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("stand-in listener on %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
}

// exposedPort is a port of the environment's slot other than the function
// listener's, which the instances' firewall lets through.
func exposedPort(t *testing.T, env *testenv.Env) int {
	t.Helper()
	_, fnPort, _ := net.SplitHostPort(env.FunctionGateway)
	for {
		if p := env.GatewayPort(); strconv.Itoa(p) != fnPort {
			return p
		}
	}
}

func uploadTo(t *testing.T, env *testenv.Env, gw *testenv.Gateway, dir string) string {
	t.Helper()
	pkg, err := packaging.ZipDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	upload(t, env, gw, pkg)
	return pkg.SHA256
}

func httpStatus(t *testing.T, url string) int {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// world is the test's outside world: its namespace and its server's port.
// The server answers "world" and passes /v1/ on to the environment's
// Consul, standing for an application's service that functions call over
// the network (the KV trigger tests' recorder writes its results there).
type world struct {
	port int
	stop func()
}

var sharedWorld struct {
	once sync.Once
	w    world
	err  error
}

// theWorld starts the package's world once; TestMain stops it.
func theWorld(t *testing.T, env *testenv.Env) world {
	t.Helper()
	sharedWorld.once.Do(func() { sharedWorld.w, sharedWorld.err = startWorld(env) })
	if sharedWorld.err != nil {
		t.Fatal(sharedWorld.err)
	}
	return sharedWorld.w
}

// removeStaleWorlds deletes the worlds of runs that ended without their
// cleanup (killed, or exiting on a failure): a stale veth holding the
// world's host address would take its route.
func removeStaleWorlds() {
	if names, err := filepath.Glob("/var/run/netns/nimbus-world-*"); err == nil {
		for _, p := range names {
			_ = exec.Command("ip", "netns", "delete", filepath.Base(p)).Run()
		}
	}
	if links, err := filepath.Glob("/sys/class/net/nw????????"); err == nil {
		for _, l := range links {
			if worldLink.MatchString(filepath.Base(l)) {
				_ = exec.Command("ip", "link", "delete", filepath.Base(l)).Run()
			}
		}
	}
}

// worldLink matches the host side of a world's veth pair: "nw" and the
// first 8 characters of an environment's hex ID.
var worldLink = regexp.MustCompile(`^nw[0-9a-f]{8}$`)

func stopWorld() {
	if sharedWorld.w.stop != nil {
		sharedWorld.w.stop()
	}
}

// startWorld creates the namespace, its veth pair and the server, which
// answers on both of the namespace's addresses.
func startWorld(env *testenv.Env) (w world, err error) {
	ns := "nimbus-world-" + env.ID
	hostIf := "nw" + env.ID[:8]
	var undo []func()
	w.stop = func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	defer func() {
		if err != nil {
			w.stop()
		}
	}()
	run := func(args ...string) error {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	removeStaleWorlds()
	if err := run("netns", "add", ns); err != nil {
		return w, err
	}
	undo = append(undo, func() { _ = exec.Command("ip", "netns", "delete", ns).Run() })
	if err := run("link", "add", hostIf, "type", "veth", "peer", "name", "eth0", "netns", ns); err != nil {
		return w, err
	}
	undo = append(undo, func() { _ = exec.Command("ip", "link", "delete", hostIf).Run() })
	for _, args := range [][]string{
		{"addr", "add", worldHostAddr, "dev", hostIf},
		{"addr", "add", worldPrivateHostAddr, "dev", hostIf},
		{"link", "set", hostIf, "up"},
		{"-n", ns, "addr", "add", worldAllowed + "/24", "dev", "eth0"},
		{"-n", ns, "addr", "add", worldDenied + "/24", "dev", "eth0"},
		{"-n", ns, "addr", "add", worldPrivate + "/24", "dev", "eth0"},
		{"-n", ns, "addr", "add", worldPrivateAllowed + "/24", "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
		{"-n", ns, "link", "set", "lo", "up"},
	} {
		if err := run(args...); err != nil {
			return w, err
		}
	}
	ln, err := listenInNetns(filepath.Join("/var/run/netns", ns), "0.0.0.0:0")
	if err != nil {
		return w, err
	}
	consul, err := url.Parse(env.ConsulAddr)
	if err != nil {
		return w, err
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/", httputil.NewSingleHostReverseProxy(consul))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { _, _ = fmt.Fprintf(w, "world: %s\n", r.Host) })
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	undo = append(undo, func() { _ = srv.Close() })
	w.port = ln.Addr().(*net.TCPAddr).Port
	return w, nil
}

// listenInNetns opens a listener inside the network namespace at path: the
// socket belongs to the namespace it was created in, whichever thread
// serves it later.
func listenInNetns(path, addr string) (net.Listener, error) {
	type result struct {
		ln  net.Listener
		err error
	}
	done := make(chan result, 1)
	go func() {
		// The thread returns to its namespace before it serves other
		// goroutines again. It must not end instead: the agents were
		// started with a parent-death signal, which Linux sends when the
		// thread that forked them exits, and this may be that thread.
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: err}
			return
		}
		defer func() { _ = unix.Close(orig) }()
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("open %s: %w", path, err)}
			return
		}
		defer func() { _ = unix.Close(fd) }()
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("enter %s: %w", path, err)}
			return
		}
		ln, err := net.Listen("tcp", addr)
		if unix.Setns(orig, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		} // else the thread stays locked and ends with this goroutine
		done <- result{ln, err}
	}()
	r := <-done
	return r.ln, r.err
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
