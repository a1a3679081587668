// Command nimbus-gateway runs the Nimbus gateway: the artifact store that
// the provider uploads packages to and Nomad fetches them from, and the
// invoke API that scales functions from zero and back. It finds Nomad and
// Consul through NOMAD_ADDR and CONSUL_HTTP_ADDR (and their token and TLS
// variables), like their CLIs.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/accesskey"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/clients"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/logbuf"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/artifacts"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/auth"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/gateway"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/invoke"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/schedules"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "invoke" {
		os.Exit(invokeScheduled())
	}
	if len(os.Args) > 1 && os.Args[1] == "keygen" {
		// A new operator key, for NIMBUS_GATEWAY_OPERATOR_KEY.
		id, secret, err := accesskey.New()
		if err != nil {
			fmt.Fprintf(os.Stderr, "nimbus-gateway: %v\n", err)
			os.Exit(1)
		}
		fmt.Println(accesskey.Token(id, secret))
		return
	}
	listen := flag.String("listen", envOr("NIMBUS_GATEWAY_LISTEN", "127.0.0.1:8080"), "address to serve on")
	dataDir := flag.String("data-dir", envOr("NIMBUS_GATEWAY_DATA_DIR", "nimbus-gateway-data"), "directory for stored artifacts")
	functionListen := flag.String("function-listen", os.Getenv("NIMBUS_GATEWAY_FUNCTION_LISTEN"),
		"address of the function listener, which serves only the invoke APIs to function instances (the client's bridge address and the port its Nimbus CNI network allows, such as 172.30.0.1:9650); empty: none")
	bodyBudget := flag.Int("body-budget-mb", invoke.DefaultBodyBudget>>20, "request bodies held in memory at once, in MB; beyond, requests get 503 with Retry-After (keep it well under the gateway's memory limit)")
	bodyTimeout := flag.Duration("body-timeout", invoke.DefaultBodyTimeout, "how long a client may take to send a request body")
	storeQuota := flag.Int("store-quota-mb", artifacts.DefaultStoreQuota>>20, "the artifact store's size limit in MB; 0: none")
	artifactGrace := flag.Duration("artifact-grace", artifacts.DefaultArtifactGrace, "how long an artifact no function references is kept (uploads come before the function that names them)")
	authMode := flag.String("auth", envOr("NIMBUS_GATEWAY_AUTH", "on"), "\"on\": every caller needs an access key (SigV4 or bearer token); \"off\": anyone may do anything, for local development only")
	urlTTL := flag.Duration("artifact-url-ttl", envDuration("NIMBUS_GATEWAY_ARTIFACT_URL_TTL", artifacts.DefaultArtifactURLTTL), "how long the signed artifact URLs in function jobs stay valid (every apply of a function renews its URL)")
	drain := flag.Duration("drain-timeout", 16*time.Minute, "on SIGTERM, how long to let invocations in flight finish (the longest function timeout is 15m)")
	flag.Parse()

	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	authOpts, err := authOptions(*authMode, *dataDir, logger)
	if err != nil {
		fmt.Fprintf(os.Stderr, "nimbus-gateway: %v\n", err)
		os.Exit(2)
	}
	limits := gateway.Options{BodyBudget: int64(*bodyBudget) << 20, BodyTimeout: *bodyTimeout, Auth: authOpts}
	store := artifacts.StoreLimits{Quota: int64(*storeQuota) << 20, Grace: *artifactGrace, URLTTL: *urlTTL}
	if err := run(*listen, *functionListen, *dataDir, *drain, limits, store, logger); err != nil {
		fmt.Fprintf(os.Stderr, "nimbus-gateway: %v\n", err)
		os.Exit(1)
	}
}

func run(listen, functionListen, dataDir string, drain time.Duration, limits gateway.Options, storeLimits artifacts.StoreLimits, logger *slog.Logger) error {
	store, err := artifacts.NewStore(dataDir, logger)
	if err != nil {
		return fmt.Errorf("artifact store in %s: %w", dataDir, err)
	}
	store.Limits = storeLimits
	store.URLs = &artifacts.URLSigner{Key: limits.Auth.SigningKey, TTL: cmp.Or(storeLimits.URLTTL, artifacts.DefaultArtifactURLTTL)}
	// Nomad and Consul are found the way their CLIs find them.
	nomadCfg, err := clients.NomadConfig{}.Resolve(os.Getenv)
	if err != nil {
		return err
	}
	consulCfg, err := clients.ConsulConfig{}.Resolve(os.Getenv)
	if err != nil {
		return err
	}
	// Refusals name the gateway's policies.
	nomadCfg.Principal, consulCfg.Principal = clients.GatewayNomad, clients.GatewayConsul
	nomad, err := clients.NewNomad(nomadCfg, clients.DefaultRetryPolicy, logger)
	if err != nil {
		return err
	}
	consul, err := clients.NewConsul(consulCfg, clients.DefaultRetryPolicy, logger)
	if err != nil {
		return err
	}
	events, slots, nc, err := openEvents(context.Background(), logger, limits.Auth.SigningKey)
	if err != nil {
		return err
	}
	if nc != nil {
		defer nc.Close()
	}
	// The access lines, one per invocation, leave in batches: under Nomad
	// each write to stderr wakes the task's log collector.
	accessOut := logbuf.New(os.Stderr, 100*time.Millisecond, 64<<10)
	defer func() { _ = accessOut.Close() }()
	accessLog := slog.New(slog.NewJSONHandler(accessOut, nil))
	gw := gateway.New(gateway.Options{KV: consul.KV(), Health: consul.Health(), Jobs: nomad.Jobs(), Allocations: nomad.Allocations(), AllocFiles: nomad.AllocFS(), Logger: logger, AccessLog: accessLog, Consul: consul, NomadAddress: nomadCfg.Address,
		BodyBudget: limits.BodyBudget, BodyTimeout: limits.BodyTimeout, Auth: limits.Auth, Events: events, NATS: nc, Variables: nomad.Variables(), SourceSlots: slots})
	store.Auth = gw.Authorizer()
	runCtx, stopRun := context.WithCancel(context.Background())
	defer stopRun()
	go gw.Run(runCtx)
	store.Limits.Referenced = gw.ReferencedArtifacts
	go func() {
		for tick := time.NewTicker(10 * time.Minute); ; {
			select {
			case <-runCtx.Done():
				tick.Stop()
				return
			case <-tick.C:
				store.GC()
			}
		}
	}()

	mux := http.NewServeMux()
	mux.Handle("/v1/artifacts/", store.Handler())
	mux.Handle("/", gw.Handler())
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	// Bodies have their own deadlines (gateway.Options.BodyTimeout, the
	// upload timeout); an idle keep-alive connection goes after 2 minutes.
	servers := []*http.Server{{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}}
	listeners := []net.Listener{ln}
	logger.Info("nimbus-gateway listening", "addr", ln.Addr().String(), "data_dir", dataDir, "nomad", nomadCfg.Address, "consul", consulCfg.Address)
	if functionListen != "" {
		fln, err := listenFreebind(functionListen)
		if err != nil {
			return fmt.Errorf("function listener: %w", err)
		}
		// Instances fetch their own package here, with its signed URL.
		fmux := http.NewServeMux()
		fmux.Handle("/v1/artifacts/", store.SignedDownloads())
		fmux.Handle("/", gw.FunctionHandler())
		servers = append(servers, &http.Server{Handler: fmux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute})
		listeners = append(listeners, fln)
		logger.Info("nimbus-gateway function listener", "addr", fln.Addr().String())
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	served := make(chan error, len(servers))
	for i, srv := range servers {
		go func() { served <- srv.Serve(listeners[i]) }()
	}
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	// Stop accepting; let invocations in flight run to their deadlines.
	logger.Info("shutting down: draining invocations in flight")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	for _, srv := range servers {
		if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	return nil
}

// authOptions reads who may call the gateway: the mode, the operator's
// key (NIMBUS_GATEWAY_OPERATOR_KEY, a bearer token) and the key that signs
// artifact URLs (NIMBUS_GATEWAY_SIGNING_KEY, or one the gateway makes and
// keeps in its data directory).
func authOptions(mode, dataDir string, logger *slog.Logger) (auth.Options, error) {
	var opts auth.Options
	switch mode {
	case "on":
	case "off":
		opts.Open = true
	default:
		return opts, fmt.Errorf("-auth is %q: use \"on\" (the default) or \"off\" (local development only)", mode)
	}
	if token := os.Getenv("NIMBUS_GATEWAY_OPERATOR_KEY"); token != "" {
		key, err := auth.OperatorKey(token)
		if err != nil {
			return opts, fmt.Errorf("NIMBUS_GATEWAY_OPERATOR_KEY: %w", err)
		}
		opts.Operator = key
	} else if !opts.Open {
		logger.Warn("no operator key (NIMBUS_GATEWAY_OPERATOR_KEY): only nimbus_access_key keys are accepted, so the provider needs one with upload_artifacts as its gateway_token")
	}
	key, err := artifacts.SigningKey(os.Getenv("NIMBUS_GATEWAY_SIGNING_KEY"), dataDir)
	if err != nil {
		return opts, err
	}
	opts.SigningKey = key
	return opts, nil
}

// listenFreebind listens on addr even before the address exists: the CNI
// bridge plugin gives the bridge its address when the first instance
// joins, which may be after the gateway starts.
func listenFreebind(addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_IP, syscall.IP_FREEBIND, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	return lc.Listen(context.Background(), "tcp", addr)
}

func envDuration(key string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(key)); err == nil {
		return d
	}
	return def
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// invokeScheduled is the task of a nimbus_schedule's periodic job: it
// delivers one scheduled event through the gateway, retrying for about a
// minute so that a gateway restart does not lose the tick.
func invokeScheduled() int {
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	run := schedules.ScheduledRun{
		GatewayURL: os.Getenv(protocol.EnvGatewayURL),
		Function:   os.Getenv(protocol.EnvScheduleFunction),
		Schedule:   os.Getenv(protocol.EnvScheduleName),
		Payload:    os.Getenv(protocol.EnvSchedulePayload),
		LaunchID:   os.Getenv("NOMAD_JOB_ID"),
		Namespace:  os.Getenv("NOMAD_NAMESPACE"),
		Launched:   schedules.LaunchTime(os.Getenv("NOMAD_JOB_ID")),
	}
	if run.GatewayURL == "" || run.Function == "" {
		logger.Error("NIMBUS_GATEWAY_URL and NIMBUS_FUNCTION must be set")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	// A failed run exits 1: the child job shows it failed in Nomad, and its
	// restart policy (none) does not run the function again.
	if err := run.Deliver(ctx, clients.NewHTTPClient(schedules.DeliveryPolicy, nil, logger)); err != nil {
		logger.Error("scheduled invocation failed", "schedule", run.Schedule, "function", run.Function, "err", err)
		return 1
	}
	logger.Info("scheduled invocation delivered", "schedule", run.Schedule, "function", run.Function, "event_id", run.LaunchID)
	return 0
}
