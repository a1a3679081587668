package gateway

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/nats-io/nats.go"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/progressive"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/async"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/auth"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/deployments"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/eventq"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/eventsource"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/instances"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/invoke"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/metering"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/refusal"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/registry"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/schedules"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/sources"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/triggers"
)

// Gateway serves invocations of the functions in the registry.
type Gateway struct {
	log       *slog.Logger
	registry  *registry.Snapshot
	jobs      instances.Jobs
	instances *instances.Set
	metrics   *metering.Metrics
	usage     *metering.Usage
	invoke    *invoke.Service // the request path
	triggers  *triggers.Runner
	// deployments drives the aliases' deployments (nil without Consul).
	deployments *deployments.Driver
	async       *async.Service
	sources     *sources.Runner // event sources consumed
	auth        *auth.Authenticator
	runs        *schedules.Runs // scheduled runs delivered
}

// Options wires the gateway to Consul and Nomad.
type Options struct {
	KV     registry.KV
	Health instances.Health
	Jobs   instances.Jobs
	// Allocations confirms that an instance registered in Consul is one
	// Nomad placed for the function.
	Allocations instances.Allocations
	// AllocFiles reads the instances' keys; nil (tests without Nomad)
	// sends invocations without keys.
	AllocFiles instances.AllocFiles
	Logger     *slog.Logger
	// AccessLog takes the one line per invocation (meter.go); nil: Logger.
	// nimbus-gateway batches its writes (internal/logbuf), so the access
	// line costs the warm path no write to the log pipe.
	AccessLog *slog.Logger
	// Consul runs KV triggers (they need session locks); nil disables them.
	Consul *consulapi.Client
	// NomadAddress names Nomad in the answers and logs about it.
	NomadAddress string
	// BodyBudget bounds the bytes of request bodies held at once
	// (DefaultBodyBudget when 0); BodyTimeout bounds the reading of one
	// body (DefaultBodyTimeout when 0).
	BodyBudget  int64
	BodyTimeout time.Duration
	// Auth decides who may call the gateway.
	Auth auth.Options
	// Events stores asynchronous invocations durably (NATS JetStream);
	// nil holds them in memory, where a restart loses them.
	Events *eventq.Queue
	// NATS is the connection event sources of type nats consume through
	// (the one Events uses); nil: no NATS sources.
	NATS *nats.Conn
	// Variables reads RabbitMQ sources' credentials.
	Variables sources.Variables
	// SourceSlots bound each event source's batches across every gateway
	// (in NATS); nil bounds them in this gateway only.
	SourceSlots *eventsource.Slots
}

// New returns a gateway; Run starts following Consul.
func New(opts Options) *Gateway {
	g := &Gateway{
		log:     opts.Logger,
		jobs:    opts.Jobs,
		metrics: metering.NewMetrics(),
		usage:   metering.NewUsage(),
	}
	if g.log == nil {
		g.log = slog.Default()
	}
	// The registry hands its functions to the pools once Run starts.
	g.registry = registry.New(opts.KV, g.log, g.syncPools)
	g.instances = instances.New(instances.Options{Health: opts.Health, Jobs: opts.Jobs, Allocations: opts.Allocations, AllocFiles: opts.AllocFiles,
		Limits: g.registry, Metrics: g.metrics, Log: g.log, NomadAddress: opts.NomadAddress, Started: g.poolStarted})
	g.auth = auth.New(opts.Auth, g.registry, g.log)
	g.invoke = invoke.New(invoke.Options{Registry: g.registry, Instances: g.instances, Auth: g.auth, Metrics: g.metrics, Usage: g.usage,
		Log: g.log, AccessLog: opts.AccessLog, BodyBudget: opts.BodyBudget, BodyTimeout: opts.BodyTimeout, Events: g.acceptEvent})
	g.runs = schedules.NewRuns(opts.Jobs, g.invoke, opts.NomadAddress)
	g.async = async.New(async.Options{Events: opts.Events, Invoker: g.invoke, Registry: g.registry, Metrics: g.metrics, Log: g.log})
	if opts.Consul != nil {
		g.triggers = triggers.New(opts.Consul, g.invoke, g.log)
		g.deployments = deployments.New(opts.Consul, g.registry, g.versionStats, g.jobs, g.log)
	}
	g.sources = sources.New(sources.Options{Invoker: g.invoke, Failures: g.async, Auth: g.auth, Metrics: g.metrics, Log: g.log,
		NATS: opts.NATS, Variables: opts.Variables, Slots: opts.SourceSlots})
	return g
}

// versionStats are a published version's invocations through this
// gateway since a time, which its alias's deployment judges.
func (g *Gateway) versionStats(version string, since time.Time) progressive.Stats {
	if p, ok := g.instances.Get(version); ok {
		return p.StatsSince(since)
	}
	return progressive.Stats{}
}

// Run follows Consul until ctx ends.
func (g *Gateway) Run(ctx context.Context) {
	if g.deployments != nil {
		g.registry.OnAliases(func(aliases map[string]kvstore.AliasRecord) { g.deployments.Sync(ctx, aliases) })
	}
	if g.triggers != nil {
		go g.registry.WatchPrefix(ctx, kvstore.KVTriggersPrefix, func(pairs consulapi.KVPairs) { g.triggers.SyncPairs(ctx, pairs) })
	}
	go g.registry.WatchPrefix(ctx, kvstore.EventSourcesPrefix, func(pairs consulapi.KVPairs) { g.sources.SyncPairs(ctx, pairs) })
	go g.registry.WatchPrefix(ctx, kvstore.PoolsPrefix, func(pairs consulapi.KVPairs) { g.instances.SyncWarmPools(ctx, pairs) })
	g.registry.Run(ctx)
	g.instances.Close()
}

// acceptEvent hands Lambda's Event invocations to the asynchronous
// invocations (the two are made one after the other, and each needs the
// other).
func (g *Gateway) acceptEvent(ctx context.Context, c *auth.Caller, name, qualifier string, payload []byte, release func()) *refusal.Error {
	return g.async.Accept(ctx, c, name, qualifier, payload, release)
}

// syncPools keeps one pool per function in the registry, and forgets the
// counts of the functions that went.
func (g *Gateway) syncPools(fns map[string]*registry.Function) {
	for _, name := range g.instances.Sync(fns) {
		g.metrics.Forget(name)
		g.usage.Forget(name)
	}
}

// poolStarted starts consuming a new function's asynchronous invocations,
// which name the function, never a version.
func (g *Gateway) poolStarted(p *instances.Pool) {
	if g.async.Durable() && p.Function().Version == "" {
		go g.async.Consume(p)
	}
}

// Handler serves the gateway's HTTP API.
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/functions/{name}/invoke", g.invoke.ServeInvoke)
	mux.HandleFunc("GET /v1/functions/{name}", g.serveFunction)
	mux.HandleFunc("POST /2015-03-31/functions/{name}/invocations", g.invoke.ServeLambdaInvoke)
	mux.Handle("POST "+schedules.ScheduledRunPath, g.runs)
	mux.HandleFunc("GET /v1/event-sources/{name}", g.sources.ServeSource)
	mux.HandleFunc("PUT /v1/event-sources/{name}", g.sources.ServePrepare)
	mux.HandleFunc("DELETE /v1/event-sources/{name}", g.sources.ServeDelete)
	mux.Handle("GET /v1/usage", g.auth.Operations(http.HandlerFunc(g.usage.ServeHTTP)))
	mux.Handle("GET /metrics", g.auth.Operations(g.metrics.Handler()))
	mux.HandleFunc("GET /healthz", g.serveHealth)
	// Everything else is a function's HTTP route.
	mux.HandleFunc("/", g.invoke.ServeRoute)
	return mux
}

// ReferencedArtifacts lists the code digests the functions use, for the
// artifact store's collection (artifacts.StoreLimits.Referenced).
func (g *Gateway) ReferencedArtifacts() (map[string]bool, bool) { return g.registry.Artifacts() }

// FunctionHandler serves the function listener, which instances reach
// from inside their network namespaces: the invoke APIs, for calls from
// one function to another. nimbus-gateway adds the artifact store's
// signed downloads (artifacts.Store.SignedDownloads), with which each
// instance fetches its own package. Function management, uploads, usage
// and metrics stay on the main listener, which the instances' firewall
// keeps them away from.
func (g *Gateway) FunctionHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/functions/{name}/invoke", g.invoke.ServeInvoke)
	mux.HandleFunc("POST /2015-03-31/functions/{name}/invocations", g.invoke.ServeLambdaInvoke)
	mux.Handle("POST "+schedules.ScheduledRunPath, g.runs)
	mux.HandleFunc("GET /healthz", g.serveHealth)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		refusal.Write(w, refusal.Native, refusal.New(http.StatusNotFound, "ResourceNotFoundException",
			r.Method+" "+r.URL.Path+" is not served to functions: this listener serves only the invoke APIs (POST /v1/functions/{name}/invoke and POST /2015-03-31/functions/{name}/invocations)"))
	})
	return mux
}

// Authorizer checks the credentials of requests outside the gateway's own
// handler (the artifact store's uploads and reads).
func (g *Gateway) Authorizer() *auth.Authenticator { return g.auth }

// serveFunction describes a function as the gateway sees it, without
// invoking it.
func (g *Gateway) serveFunction(w http.ResponseWriter, r *http.Request) {
	name, qualifier, refused := invoke.Target(r.PathValue("name"), r.URL.Query().Get("qualifier"))
	c, notAuthenticated := g.auth.AuthenticateHeaders(r, auth.NativeCredentials)
	switch {
	case notAuthenticated != nil:
		refused = notAuthenticated
	case refused == nil && c.MayReadOperations() != nil:
		refused = c.MayInvoke(name)
	}
	if refused != nil {
		refusal.Write(w, refusal.Native, refused)
		return
	}
	f, p, refused := g.invoke.Find(r.Context(), name, qualifier)
	if refused != nil {
		refusal.Write(w, refusal.Native, refused)
		return
	}
	st := p.State()
	state := map[string]any{
		"function": f.FunctionRecord, "instances": st.Instances, "ready_instances": st.ReadyInstances,
		"inflight": st.Inflight, "waiting": st.Waiting, "group_count": st.GroupCount,
		"isolated_network": instances.Isolated(f), "version": f.ExecutedVersion(),
	}
	if f.Version == "" {
		state["published_versions"] = g.registry.Versions(name)
		if deployments := g.registry.Deployments(name); len(deployments) > 0 {
			state["alias_deployments"] = deployments
		}
	}
	if st.ScaleError != nil {
		state["scale_error"] = st.ScaleError.Error()
	}
	if len(st.WarmPoolInstances) > 0 {
		state["warm_pool_instances"] = st.WarmPoolInstances
	}
	if g.triggers != nil {
		if problems := g.triggers.Problems(name); len(problems) > 0 {
			state["kv_trigger_problems"] = problems
		}
	}
	if g.async.Durable() {
		state["async"] = g.async.State(r.Context(), name)
	}
	refusal.WriteJSON(w, http.StatusOK, state)
}

func (g *Gateway) serveHealth(w http.ResponseWriter, _ *http.Request) {
	synced, err := g.registry.Status()
	status := map[string]any{"ready": synced, "consul": "ok", "status": "ready", "authentication": "on"}
	if g.auth.Open() {
		status["authentication"] = "OFF: anyone may invoke, upload and read metrics; for local development only"
	}
	if !synced {
		status["status"] = "syncing"
	}
	code := http.StatusOK
	if err != nil {
		// Still serving from the last known state; say so.
		status["consul"] = "unreachable, serving the last known functions: " + err.Error()
	}
	if !synced {
		code = http.StatusServiceUnavailable
	}
	refusal.WriteJSON(w, code, status)
}
