// Command nimbus-bench measures cold starts and the warm path on real
// agents, each against a floor measured in the same run, and writes the
// figures into docs/benchmarks.md. `make bench` runs it.
//
// The floor is nimbus-floor: a minimal static Go HTTP server whose binary
// is mounted from a host volume, run as a Nomad job on the same network as
// functions, with no nimbus-host and no artifact. The gateway runs as the
// Nomad job that examples/platform ships, as users run it.
//
//   - Cold start, per runtime: a request to a function at 0 instances,
//     through the gateway job, until its answer; against the Nomad scale
//     call → first 200 from the floor. The trials of all paths interleave.
//   - Parallel cold starts: a burst of 1, 5 and 20 requests to a function
//     at 0 instances (concurrency 1: the gateway asks for one instance per
//     request), until the last answer; against scaling the floor from 0 to
//     the same count, until every instance answers.
//   - Warm: sequential and 8 concurrent clients, direct to the floor (the
//     floor), direct to a function instance's nimbus-host, through the
//     gateway job, and through the same gateway run as a plain process
//     (which separates out Nomad's logging path).
//   - nimbus-host's resident memory, against the floor server's.
//   - Network cost: the floor with host networking against the floor in
//     its own namespace, interleaved.
//   - A code change under a steady load, replaced blue/green, against the
//     same load through no change (deploys.go).
//   - The gateway process under hostile load (load.go).
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/clients"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/cninet"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/agents"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/gatewayjob"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/packaging"
)

type config struct {
	trials, requests, burstTrials int
	scaleFunctions                int
	asyncEvents                   int
	deployTrials                  int
	onlyDeploys                   bool
	processEnv                    []string // for the plain-process gateway
	bursts                        []int
	write                         string
	// nomadFetches has Nomad's artifact block fetch the code, as before
	// nimbus-host fetched it, to compare the two.
	nomadFetches bool
}

func main() {
	var c config
	flag.IntVar(&c.trials, "cold-trials", 20, "cold starts measured per path")
	flag.IntVar(&c.requests, "warm-requests", 2000, "warm requests measured per path and mode")
	flag.IntVar(&c.burstTrials, "burst-trials", 3, "trials of each parallel cold start")
	flag.IntVar(&c.asyncEvents, "async-events", 2000, "Event invocations, and event source messages, measured against raw JetStream (0 to skip)")
	flag.BoolVar(&c.onlyDeploys, "only-deploys", false, "measure only the code changes under load, and print them")
	flag.IntVar(&c.deployTrials, "deploy-trials", 3, "code changes under a steady load measured per way of replacing instances (0 to skip)")
	flag.IntVar(&c.scaleFunctions, "scale-functions", 50, "functions applied, planned and destroyed with OpenTofu (0 to skip)")
	processEnv := flag.String("process-gateway-env", "", "comma-separated KEY=VALUE settings for the plain-process gateway, to compare (GOMAXPROCS=1, ...)")
	bursts := flag.String("bursts", "1,5,20", "sizes of the parallel cold starts")
	fetch := flag.String("fetch", "host", "who fetches a function's code: host (nimbus-host, as shipped) or nomad (an artifact block, as before)")
	flag.StringVar(&c.write, "write", "docs/benchmarks.md", "file whose bench section is replaced ('' to only print)")
	flag.Parse()
	switch *fetch {
	case "host":
	case "nomad":
		c.nomadFetches = true
	default:
		fmt.Fprintf(os.Stderr, "nimbus-bench: -fetch: %q is neither host nor nomad\n", *fetch)
		os.Exit(2)
	}
	if *processEnv != "" {
		c.processEnv = strings.Split(*processEnv, ",")
	}
	for _, s := range strings.Split(*bursts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "nimbus-bench: -bursts: %q is not a positive count\n", s)
			os.Exit(2)
		}
		c.bursts = append(c.bursts, n)
	}
	if err := run(c); err != nil {
		fmt.Fprintf(os.Stderr, "nimbus-bench: %v\n", err)
		os.Exit(1)
	}
}

// A function under test, one per runtime, and the one the bursts use.
type benchFunction struct {
	label string // as the report names it
	fn    model.Function
	src   string
}

func run(c config) error {
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
	gatewayBin := filepath.Join(runtimeDir, "bin", "nimbus-gateway")
	goSrc := filepath.Join(dir, "fn")
	if err := testenv.BuildStatic(map[string]string{
		filepath.Join(runtimeDir, "bin", "nimbus-host"):  "./runtime/cmd/nimbus-host",
		filepath.Join(runtimeDir, "bin", "nimbus-floor"): "./internal/harness/cmd/nimbus-floor",
		gatewayBin:                        "./runtime/cmd/nimbus-gateway",
		filepath.Join(goSrc, "bootstrap"): "./runtime/host/testdata/lambdago",
	}); err != nil {
		return err
	}
	gatewayData := filepath.Join(dir, "gateway-data")
	if err := os.MkdirAll(gatewayData, 0o755); err != nil {
		return err
	}
	fmt.Println("bench: starting Consul and Nomad")
	// The plain-process gateway runs with the soft memory limit the
	// shipped job sets.
	if err := os.Setenv("GOMEMLIMIT", gatewayMemLimit); err != nil {
		return err
	}
	env, err := testenv.Start(testenv.Options{
		HostVolumes:         map[string]string{nomadjob.HostVolumeRuntime: runtimeDir, nomadjob.HostVolumeUsr: "/usr"},
		WritableHostVolumes: map[string]string{"nimbus-gateway-data": gatewayData},
	})
	if err != nil {
		return err
	}
	defer env.Stop()
	if env.Network == nil {
		return fmt.Errorf("the Nimbus networks are missing on this client: the floor would not run on the network functions use")
	}
	ctx := context.Background()

	fmt.Println("bench: running the gateway as the Nomad job of examples/platform")
	signingKey := strings.Repeat("5", 64)
	jobCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	gatewayURL, err := gatewayjob.Run(jobCtx, env.Nomad, gatewayjob.Options{
		ConsulToken: env.Principals.Gateway.ConsulToken, Port: gatewayPort(env),
		OperatorKey: env.GatewayToken, SigningKey: signingKey,
		NomadAddr: env.NomadAddr, ConsulAddr: env.ConsulAddr,
		NATSURL: env.NATS.URL, NATSUser: env.NATS.Gateway.User, NATSPassword: env.NATS.Gateway.Password,
		FunctionListen: env.FunctionGateway,
	})
	cancel()
	if err != nil {
		return err
	}
	// Every call to a gateway carries the operator key, as the provider's
	// and an authenticated caller's would.
	auth.addGateway(gatewayURL, env.GatewayToken)

	functions := []benchFunction{
		// Up to one instance per concurrent client of the warm load.
		{label: "Go (`provided`, aws-lambda-go)", fn: model.Function{Name: "bench-go", Runtime: model.RuntimeProvided, MaxInstances: concurrentClients}, src: goSrc},
		{label: "Python (`python3`)", fn: model.Function{Name: "bench-python", Runtime: model.RuntimePython, Handler: "app.handler"}, src: filepath.Join(root, "runtime", "host", "testdata", "python")},
		{label: "Node.js (`nodejs`)", fn: model.Function{Name: "bench-node", Runtime: model.RuntimeNode, Handler: "app.asyncHandler"}, src: filepath.Join(root, "runtime", "host", "testdata", "node")},
	}
	maxBurst := 1
	for _, n := range c.bursts {
		maxBurst = max(maxBurst, n)
	}
	burst := benchFunction{label: "burst", fn: model.Function{Name: "bench-burst", Runtime: model.RuntimeProvided, MaxInstances: maxBurst}, src: goSrc}
	// The hostile load's target: one instance, as a small function has.
	target := benchFunction{label: "load", fn: model.Function{Name: "bench-load", Runtime: model.RuntimeProvided, MinInstances: 1}, src: goSrc}
	store := clients.Artifacts{BaseURL: gatewayURL, Token: env.GatewayToken, HTTP: client}
	for _, f := range append(functions, burst, target) {
		f.fn.IdleTimeout = time.Hour
		if f.fn.MaxInstances == 0 {
			f.fn.MaxInstances = 1
		}
		if err := deploy(ctx, env, store, f.fn.WithDefaults(), f.src, !c.nomadFetches); err != nil {
			return fmt.Errorf("deploying %s: %w", f.fn.Name, err)
		}
		if err := waitKnown(gatewayURL, f.fn.Name); err != nil {
			return err
		}
	}
	for name, mode := range map[string]string{floorHost: "host", floorBridge: cninet.Mode(model.EgressPublic)} {
		if _, _, err := env.Nomad.Jobs().Register(floorJob(name, mode), nil); err != nil {
			return err
		}
	}

	if c.onlyDeploys {
		// One Go cold start, for the bound.
		cold, err := coldGatewayTrial(env, gatewayURL, functions[0].fn.Name)
		if err != nil {
			return err
		}
		d, err := deployUnderLoad(ctx, env, store, gatewayURL, goSrc, c.deployTrials, cold)
		if err != nil {
			return err
		}
		var b strings.Builder
		formatDeploys(&b, d)
		fmt.Print(b.String())
		return nil
	}
	r := report{trials: c.trials, requests: c.requests, burstTrials: c.burstTrials, fetchedBy: "nimbus-host, from the gateway's function listener (as shipped)"}
	if c.nomadFetches {
		r.fetchedBy = "Nomad's artifact block (go-getter), as before nimbus-host fetched it (`-fetch nomad`)"
	}
	if r.cold, err = coldStarts(ctx, env, gatewayURL, functions, c.trials); err != nil {
		return err
	}
	if r.cold.interpreters, err = interpreterStarts(c.trials); err != nil {
		return err
	}
	fmt.Println("bench: one cold start, step by step")
	if r.breakdown, err = coldBreakdown(env, gatewayURL, functions[0].fn.Name); err != nil {
		return err
	}
	r.breakdownOf = functions[0].label
	if r.floorBreakdown, err = floorBreakdown(env); err != nil {
		return err
	}
	if r.bursts, err = parallelColdStarts(ctx, env, gatewayURL, burst.fn.Name, c.bursts, c.burstTrials); err != nil {
		return err
	}

	if r.pools, err = poolColdStarts(ctx, env, gatewayURL, functions, c.trials); err != nil {
		return err
	}
	if c.deployTrials > 0 {
		if r.deploys, err = deployUnderLoad(ctx, env, store, gatewayURL, goSrc, c.deployTrials, pct(r.cold.functions[0].trials, .5)); err != nil {
			return err
		}
	}

	// Before the plain-process gateway starts: the job's gateway alone
	// consumes the events.
	if c.asyncEvents > 0 {
		if r.async, err = asyncThroughput(ctx, env, gatewayURL, functions[0].fn.Name, c.asyncEvents); err != nil {
			return err
		}
		if r.source, err = sourceThroughput(ctx, env, gatewayURL, functions[0].fn.Name, c.asyncEvents); err != nil {
			return err
		}
	}

	fmt.Println("bench: starting the same gateway as a plain process")
	process, err := env.StartGatewayAs(gatewayBin, "gateway-process", env.Principals.Gateway, c.processEnv...)
	if err != nil {
		return err
	}
	defer process.Stop()
	auth.addGateway(process.URL, env.GatewayToken)
	if r.warm, r.memory, err = warmPaths(ctx, env, filepath.Join(runtimeDir, "bin", "nimbus-floor"), gatewayURL, process.URL, functions[0].fn.Name, c.requests); err != nil {
		return err
	}

	if c.scaleFunctions > 0 {
		if r.scale, err = planApplyAtScale(ctx, env, gatewayURL, root, dir, goSrc, c.scaleFunctions); err != nil {
			return err
		}
	}

	fmt.Println("bench: hostile load on the plain-process gateway")
	if r.load, err = loadTest(process.URL, process.Pid(), target.fn.Name); err != nil {
		return err
	}
	text := r.format()
	fmt.Print(text)
	if c.write != "" {
		return writeSection(filepath.Join(root, c.write), text)
	}
	return nil
}

// gatewayPort is a port of the environment's slot for the gateway job's
// main listener, other than the function listener's.
func gatewayPort(env *testenv.Env) int {
	_, fnPort, _ := net.SplitHostPort(env.FunctionGateway)
	for {
		if p := env.GatewayPort(); strconv.Itoa(p) != fnPort {
			return p
		}
	}
}

// deploy uploads the function's package to the gateway and registers the
// function as the provider would: its record in Consul KV, its job in
// Nomad at 0 instances.
func deploy(ctx context.Context, env *testenv.Env, store clients.Artifacts, f model.Function, srcDir string, hostFetches bool) error {
	pkg, err := packaging.ZipDir(srcDir)
	if err != nil {
		return err
	}
	src, err := upload(ctx, store, pkg)
	if err != nil {
		return err
	}
	src.FromStore = hostFetches
	rec := nomadjob.Record(f, src, nomadjob.Options{}, 0)
	if _, err := env.Consul.KV().Put(&consulapi.KVPair{Key: kvstore.FunctionKey(f.Name), Value: rec.Encode()}, nil); err != nil {
		return err
	}
	_, _, err = env.Nomad.Jobs().Register(nomadjob.Render(f, src, nomadjob.Options{}), nil)
	return err
}

// upload stores a package in the gateway's artifact store, as the
// provider does, and returns its source: the signed URL nimbus-host
// fetches it with.
func upload(ctx context.Context, store clients.Artifacts, pkg *packaging.Package) (nomadjob.Source, error) {
	if _, err := store.Ensure(ctx, pkg.SHA256, pkg.Zip); err != nil {
		return nomadjob.Source{}, err
	}
	url, _, err := store.SignedURL(ctx, pkg.SHA256)
	if err != nil {
		return nomadjob.Source{}, err
	}
	return nomadjob.Source{URL: url, SHA256: pkg.SHA256, FromStore: true}, nil
}
