// Command nimbus-bench measures cold starts and warm overhead on real
// agents, each against a baseline measured in the same run, and writes the
// figures into docs/benchmarks.md. `make bench` runs it.
//
// Cold start: gateway request → response with 0 instances, against the raw
// floor: a Nomad scale call → first HTTP 200 from the same nimbus-host and
// handler, without the gateway.
//
// Warm overhead: the same sequential load through the gateway and directly
// to the instance.
//
// Network cost: a Nomad scale call → first 200 from a static Go server
// (nimbus-floor, mounted from a host volume, no artifact, no nimbus-host),
// with host networking and in its own namespace on the Nimbus network,
// interleaved.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/clients"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/cninet"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/agents"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testkit"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/packaging"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
)

func main() {
	trials := flag.Int("cold-trials", 20, "cold starts measured each way")
	requests := flag.Int("warm-requests", 2000, "warm requests measured each way")
	write := flag.String("write", "docs/benchmarks.md", "file whose bench section is replaced ('' to only print)")
	flag.Parse()
	if err := run(*trials, *requests, *write); err != nil {
		fmt.Fprintf(os.Stderr, "nimbus-bench: %v\n", err)
		os.Exit(1)
	}
}

const event = `{"action":"echo","value":"bench"}`

func run(trials, requests int, write string) error {
	root, err := agents.RepoRoot()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "nimbus-bench-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	runtimeDir := filepath.Join(dir, "runtime")
	gatewayBin := filepath.Join(dir, "nimbus-gateway")
	src := filepath.Join(dir, "fn")
	if err := testenv.BuildStatic(map[string]string{
		filepath.Join(runtimeDir, "bin", "nimbus-host"):  "./runtime/cmd/nimbus-host",
		filepath.Join(runtimeDir, "bin", "nimbus-floor"): "./internal/harness/cmd/nimbus-floor",
		gatewayBin:                      "./runtime/cmd/nimbus-gateway",
		filepath.Join(src, "bootstrap"): "./runtime/host/testdata/lambdago",
	}); err != nil {
		return err
	}
	fmt.Println("bench: starting Consul, Nomad and the gateway")
	// The gateway runs with the soft memory limit its shipped job sets.
	if err := os.Setenv("GOMEMLIMIT", gatewayMemLimit); err != nil {
		return err
	}
	env, err := testenv.Start(testenv.Options{HostVolumes: map[string]string{nomadjob.HostVolumeRuntime: runtimeDir, nomadjob.HostVolumeUsr: "/usr"}})
	if err != nil {
		return err
	}
	defer env.Stop()
	gw, err := env.StartGateway(gatewayBin)
	if err != nil {
		return err
	}
	defer gw.Stop()

	pkg, err := packaging.ZipDir(src)
	if err != nil {
		return err
	}
	// Every call to the gateway carries the operator key, as the provider's
	// and an authenticated caller's would.
	auth.gateway, auth.token = strings.TrimPrefix(gw.URL, "http://"), env.GatewayToken
	store := clients.Artifacts{BaseURL: gw.URL, Token: env.GatewayToken, HTTP: client}
	if _, err := store.Ensure(context.Background(), pkg.SHA256, pkg.Zip); err != nil {
		return err
	}
	url, _, err := store.SignedURL(context.Background(), pkg.SHA256)
	if err != nil {
		return err
	}
	source := nomadjob.Source{URL: url, SHA256: pkg.SHA256}
	viaGateway := model.Function{Name: "bench", Runtime: model.RuntimeProvided, MaxInstances: 1, IdleTimeout: time.Hour}.WithDefaults()
	raw := model.Function{Name: "bench-raw", Runtime: model.RuntimeProvided, MaxInstances: 1}.WithDefaults()
	if err := deploy(env, viaGateway, source, true); err != nil {
		return err
	}
	if err := deploy(env, raw, source, false); err != nil {
		return err
	}
	if err := waitKnown(gw.URL, "bench"); err != nil {
		return err
	}
	ctx := context.Background()

	// Network cost first, while nothing else runs.
	for name, mode := range map[string]string{floorHost: "host", floorBridge: cninet.Mode(model.EgressPublic)} {
		if _, _, err := env.Nomad.Jobs().Register(floorJob(name, mode), nil); err != nil {
			return err
		}
	}
	var netHost, netBridge []time.Duration
	for i := 0; i < trials; i++ {
		fmt.Printf("bench: network cold start %d/%d\n", i+1, trials)
		for _, t := range []struct {
			name string
			into *[]time.Duration
		}{{floorHost, &netHost}, {floorBridge, &netBridge}} {
			d, err := coldRawTrial(ctx, env, t.name, "/")
			if err != nil {
				return err
			}
			*t.into = append(*t.into, d)
		}
	}
	for _, name := range []string{floorHost, floorBridge} {
		if err := scaleTo(env, name, 0); err != nil {
			return err
		}
	}

	var coldGW, coldRaw []time.Duration
	for i := 0; i < trials; i++ {
		fmt.Printf("bench: cold start %d/%d\n", i+1, trials)
		d, err := coldRawTrial(ctx, env, raw.Name, "/invoke")
		if err != nil {
			return err
		}
		coldRaw = append(coldRaw, d)
		if err := scaleTo(env, viaGateway.Name, 0); err != nil {
			return err
		}
		if err := waitInstances(gw.URL, viaGateway.Name, 0); err != nil {
			return err
		}
		start := time.Now()
		if err := invoke(gw.URL+"/v1/functions/bench/invoke", "true"); err != nil {
			return err
		}
		coldGW = append(coldGW, time.Since(start))
	}

	// Warm: one instance up; the same sequential load both ways.
	instance, err := instanceURL(env, nomadjob.ServiceName(viaGateway.Name))
	if err != nil {
		return err
	}
	// Called directly, the instance wants its key, as from the gateway.
	if err := auth.readInstanceKey(env, viaGateway.Name, instance); err != nil {
		return err
	}
	fmt.Println("bench: warm load")
	direct, directRate, err := load(instance+"/invoke", requests)
	if err != nil {
		return err
	}
	through, throughRate, err := load(gw.URL+"/v1/functions/bench/invoke", requests)
	if err != nil {
		return err
	}

	fmt.Println("bench: hostile load")
	loaded, err := loadTest(gw.URL, gw.Pid(), viaGateway.Name)
	if err != nil {
		return err
	}
	report := formatReport(trials, requests, coldRaw, coldGW, direct, through, directRate, throughRate) + formatNetwork(netHost, netBridge) + formatLoad(loaded)
	fmt.Print(report)
	if write != "" {
		return writeSection(filepath.Join(root, write), report)
	}
	return nil
}

func deploy(env *testenv.Env, f model.Function, src nomadjob.Source, withKV bool) error {
	if withKV {
		rec := nomadjob.Record(f, src, nomadjob.Options{}, 0)
		if _, err := env.Consul.KV().Put(&consulapi.KVPair{Key: kvstore.FunctionKey(f.Name), Value: rec.Encode()}, nil); err != nil {
			return err
		}
	}
	job := nomadjob.Render(f, src, nomadjob.Options{})
	if !withKV {
		// The raw floor's host takes invocations from anyone: it has no
		// gateway to read its key.
		delete(job.TaskGroups[0].Tasks[0].Env, protocol.EnvInstanceKeyFile)
	}
	_, _, err := env.Nomad.Jobs().Register(job, nil)
	return err
}

// The floor jobs, named like functions so that the same scale and lookup
// helpers serve them.
const (
	floorHost   = "floor-host"
	floorBridge = "floor-bridge"
)

// floorJob runs nimbus-floor from the runtime host volume with the given
// network mode, at count 0, registered in Consul without a check (the
// trial polls it itself).
func floorJob(name, mode string) *nomadapi.Job {
	job := nomadapi.NewServiceJob(nomadjob.JobID(name), nomadjob.JobID(name), "global", 50)
	job.Datacenters = []string{"*"}
	tg := nomadapi.NewTaskGroup(nomadjob.GroupName, 0)
	tg.Networks = []*nomadapi.NetworkResource{{Mode: mode, DynamicPorts: []nomadapi.Port{{Label: nomadjob.PortLabel}}}}
	tg.Update = &nomadapi.UpdateStrategy{MaxParallel: ptr(0)}
	tg.Volumes = map[string]*nomadapi.VolumeRequest{"runtime": {Name: "runtime", Type: "host", Source: nomadjob.HostVolumeRuntime, ReadOnly: true}}
	task := nomadapi.NewTask("floor", "exec").
		SetConfig("command", nomadjob.RuntimeMount+"/bin/nimbus-floor").
		Require(&nomadapi.Resources{CPU: ptr(100), MemoryMB: ptr(32)})
	task.Env = map[string]string{"PORT": "${NOMAD_PORT_" + nomadjob.PortLabel + "}"}
	task.VolumeMounts = []*nomadapi.VolumeMount{{Volume: ptr("runtime"), Destination: ptr(nomadjob.RuntimeMount), ReadOnly: ptr(true)}}
	task.Services = []*nomadapi.Service{{Name: nomadjob.ServiceName(name), PortLabel: nomadjob.PortLabel, Provider: "consul"}}
	tg.AddTask(task)
	job.AddTaskGroup(tg)
	return job
}

func ptr[T any](v T) *T { return &v }

func formatNetwork(host, bridge []time.Duration) string {
	var b strings.Builder
	b.WriteString("\n**Network isolation** (Nomad scale call → first 200 from a static Go server mounted from a host volume, no artifact, no nimbus-host; the two interleaved):\n\n")
	b.WriteString("| Network | p50 | p99 |\n| --- | --- | --- |\n")
	fmt.Fprintf(&b, "| Host networking | %s | %s |\n", ms(pct(host, .5)), ms(pct(host, .99)))
	fmt.Fprintf(&b, "| Own namespace on the Nimbus network (`cni/nimbus`) | %s | %s |\n", ms(pct(bridge, .5)), ms(pct(bridge, .99)))
	fmt.Fprintf(&b, "| **Ratio** | **%.2f** | **%.2f** |\n", ratio(pct(bridge, .5), pct(host, .5)), ratio(pct(bridge, .99), pct(host, .99)))
	return b.String()
}

// coldRawTrial is the floor: scale 0 → 1 with Nomad, then poll the new
// instance (found through Consul's catalog) until it answers 200.
func coldRawTrial(ctx context.Context, env *testenv.Env, name, path string) (time.Duration, error) {
	if err := scaleTo(env, name, 0); err != nil {
		return 0, err
	}
	if err := waitGone(env, nomadjob.ServiceName(name)); err != nil {
		return 0, err
	}
	start := time.Now()
	if err := scaleTo(env, name, 1); err != nil {
		return 0, err
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if url, err := instanceURLAny(env, nomadjob.ServiceName(name)); err == nil {
			if probe(url+path) == nil {
				return time.Since(start), nil
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	return 0, fmt.Errorf("raw instance of %s never answered", name)
}

func scaleTo(env *testenv.Env, name string, n int) error {
	_, _, err := env.Nomad.Jobs().Scale(nomadjob.JobID(name), nomadjob.GroupName, &n, "nimbus-bench", false, nil, nil)
	return err
}

func waitGone(env *testenv.Env, service string) error {
	for i := 0; i < 600; i++ {
		entries, _, err := env.Consul.Catalog().Service(service, "", nil)
		if err == nil && len(entries) == 0 {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not stop", service)
}

func instanceURLAny(env *testenv.Env, service string) (string, error) {
	entries, _, err := env.Consul.Catalog().Service(service, "", nil)
	if err != nil || len(entries) == 0 {
		return "", fmt.Errorf("no instance")
	}
	return fmt.Sprintf("http://%s:%d", entries[0].ServiceAddress, entries[0].ServicePort), nil
}

func instanceURL(env *testenv.Env, service string) (string, error) {
	for i := 0; i < 200; i++ {
		entries, _, err := env.Consul.Health().Service(service, "", true, nil)
		if err == nil && len(entries) > 0 {
			return fmt.Sprintf("http://%s:%d", entries[0].Service.Address, entries[0].Service.Port), nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "", fmt.Errorf("no healthy instance of %s", service)
}

func waitKnown(gateway, name string) error {
	for i := 0; i < 200; i++ {
		if resp, err := client.Get(gateway + "/v1/functions/" + name); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("the gateway never learned of %s", name)
}

func waitInstances(gateway, name string, n int) error {
	want := fmt.Sprintf(`"instances":%d,`, n)
	for i := 0; i < 1200; i++ {
		resp, err := client.Get(gateway + "/v1/functions/" + name)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if strings.Contains(string(b), want) {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("the gateway still sees instances of %s", name)
}

var (
	auth   = &credentials{instanceKeys: map[string]string{}}
	client = &http.Client{Transport: auth.wrap(&http.Transport{MaxIdleConnsPerHost: 8})}
)

// credentials add the gateway's operator key to calls to the gateway and
// an instance's key to direct calls to that instance.
type credentials struct {
	gateway, token string
	instanceKeys   map[string]string // host:port → key
}

// wrap is next with the credentials added to each request.
func (c *credentials) wrap(next http.RoundTripper) http.RoundTripper {
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		if r.URL.Host == c.gateway && c.token != "" {
			r.Header.Set("Authorization", "Bearer "+c.token)
		}
		if key := c.instanceKeys[r.URL.Host]; key != "" {
			r.Header.Set(protocol.HeaderInstanceKey, key)
		}
		return next.RoundTrip(r)
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// readInstanceKey reads the key of the function's running instance, as
// the gateway does, through Nomad.
func (c *credentials) readInstanceKey(env *testenv.Env, function, instanceURL string) error {
	key, err := testkit.InstanceKey(context.Background(), env.Nomad, nomadjob.JobID(function), nomadjob.InstanceKeyPath)
	if err != nil {
		return err
	}
	c.instanceKeys[strings.TrimPrefix(instanceURL, "http://")] = key
	return nil
}

func invoke(url, wantCold string) error {
	resp, err := client.Post(url, "application/json", strings.NewReader(event))
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", url, resp.Status)
	}
	if wantCold != "" && resp.Header.Get("X-Nimbus-Cold") != wantCold {
		return fmt.Errorf("expected X-Nimbus-Cold %s, got %q", wantCold, resp.Header.Get("X-Nimbus-Cold"))
	}
	return nil
}

// probe is one request to an instance: a POST of the event to /invoke
// (nimbus-host), a GET elsewhere (the floor server).
func probe(url string) error {
	if strings.HasSuffix(url, "/invoke") {
		return invoke(url, "")
	}
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", url, resp.Status)
	}
	return nil
}

// load sends n sequential requests after a short warm-up and returns their
// latencies and the throughput.
func load(url string, n int) ([]time.Duration, float64, error) {
	for i := 0; i < 50; i++ {
		if err := invoke(url, ""); err != nil {
			return nil, 0, err
		}
	}
	lat := make([]time.Duration, 0, n)
	begin := time.Now()
	for i := 0; i < n; i++ {
		start := time.Now()
		if err := invoke(url, ""); err != nil {
			return nil, 0, err
		}
		lat = append(lat, time.Since(start))
	}
	return lat, float64(n) / time.Since(begin).Seconds(), nil
}

func pct(ds []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	idx := int(float64(len(s)-1) * p)
	return s[idx]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
func us(d time.Duration) string { return fmt.Sprintf("%d µs", d.Microseconds()) }

func formatReport(trials, requests int, coldRaw, coldGW, direct, through []time.Duration, directRate, throughRate float64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Measured by `make bench` on %s (%d cold trials and %d warm requests each way, one run).\n\n", time.Now().UTC().Format("2006-01-02"), trials, requests)
	b.WriteString("**Cold start** (0 instances → first response), `provided` aws-lambda-go function:\n\n")
	b.WriteString("| Path | p50 | p99 |\n| --- | --- | --- |\n")
	fmt.Fprintf(&b, "| Raw floor: Nomad scale call → first 200 from the instance | %s | %s |\n", ms(pct(coldRaw, .5)), ms(pct(coldRaw, .99)))
	fmt.Fprintf(&b, "| Through the gateway: request → response | %s | %s |\n", ms(pct(coldGW, .5)), ms(pct(coldGW, .99)))
	fmt.Fprintf(&b, "| **Ratio** | **%.2f** | **%.2f** |\n\n", ratio(pct(coldGW, .5), pct(coldRaw, .5)), ratio(pct(coldGW, .99), pct(coldRaw, .99)))
	b.WriteString("**Warm overhead** (one instance, sequential requests, same load generator):\n\n")
	b.WriteString("| Path | p50 | p99 | Throughput |\n| --- | --- | --- | --- |\n")
	fmt.Fprintf(&b, "| Direct to the instance | %s | %s | %.0f req/s |\n", us(pct(direct, .5)), us(pct(direct, .99)), directRate)
	fmt.Fprintf(&b, "| Through the gateway | %s | %s | %.0f req/s |\n", us(pct(through, .5)), us(pct(through, .99)), throughRate)
	fmt.Fprintf(&b, "| **Added by the gateway** | **%s** | **%s** | **%.2f×** |\n", us(pct(through, .5)-pct(direct, .5)), us(pct(through, .99)-pct(direct, .99)), throughRate/directRate)
	return b.String()
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }

// writeSection replaces the text between the bench markers.
func writeSection(path, report string) error {
	const begin, end = "<!-- nimbus-bench:begin -->", "<!-- nimbus-bench:end -->"
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(data)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		s += "\n## Gateway: cold start and warm overhead\n\n" + begin + "\n" + report + end + "\n"
	} else {
		s = s[:i+len(begin)] + "\n" + report + s[j:]
	}
	return os.WriteFile(path, []byte(s), 0o644)
}
