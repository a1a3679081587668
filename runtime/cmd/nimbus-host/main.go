// Command nimbus-host runs one function instance: it starts the user's
// handler and serves invocations to the gateway. Nomad's exec driver runs it
// as the function job's task; every setting also has a flag for local use.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/codefetch"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/host"
)

func main() {
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if runtime := os.Getenv(protocol.EnvPoolRuntime); runtime != "" {
		if err := runPool(runtime, logger); err != nil {
			logger.Error("nimbus-host stopped", "err", err)
			os.Exit(1)
		}
		return
	}
	cfg, listen, err := parseConfig(os.Args[1:], os.Getenv)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "nimbus-host: invalid configuration: %v\n", err)
		os.Exit(2)
	}
	if err := run(cfg, listen, logger); err != nil {
		logger.Error("nimbus-host stopped", "err", err)
		os.Exit(1)
	}
}

func run(cfg host.Config, listen string, logger *slog.Logger) error {
	// nimbus-host runs nothing but handlers, so it may adopt and end what a
	// handler's process tree leaves behind.
	if err := host.EnableOrphanAdoption(); err != nil {
		logger.Warn("descendants that leave a handler's process group will outlive it", "err", err)
	}
	vars, named := protocol.FunctionVariables(protocol.EnvironMap(os.Environ()))
	if !named {
		logger.Warn("the job does not name the function's variables ("+protocol.EnvFunctionVariables+"): the handler gets every variable of the task, the Nomad client's included; apply the function again to render its job anew",
			"function", cfg.FunctionName)
	}
	cfg.Env = host.EnvList(vars)
	if path := os.Getenv(protocol.EnvInstanceKeyFile); path != "" {
		key, err := instanceKey(path)
		if err != nil {
			return fmt.Errorf("instance key: %w", err)
		}
		cfg.InstanceKey = key
	}
	if u := os.Getenv(protocol.EnvPackageURL); u != "" {
		if err := fetchCode(cfg, u, os.Getenv(protocol.EnvPackageSHA256), logger); err != nil {
			return err
		}
	}
	h, err := host.New(cfg, host.Options{Logger: logger})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h.Handler(), ReadHeaderTimeout: 10 * time.Second}
	logger.Info("nimbus-host listening", "addr", ln.Addr().String(), "function", cfg.FunctionName, "runtime", cfg.Runtime)
	// In-flight invocations end by their deadlines; give them that long.
	return serve(srv, ln, cfg.Timeout+5*time.Second, logger, h.Shutdown)
}

// serve runs srv on ln until SIGTERM or SIGINT, then lets the requests in
// flight finish within drain and stops the host.
func serve(srv *http.Server, ln net.Listener, drain time.Duration, logger *slog.Logger, stop func(context.Context) error) error {
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-served:
		return err
	case s := <-sig:
		logger.Info("shutting down: finishing invocations in flight", "signal", s.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	shutdownErr := srv.Shutdown(ctx)
	if err := stop(ctx); err != nil {
		shutdownErr = errors.Join(shutdownErr, err)
	}
	logger.Info("nimbus-host stopped")
	return shutdownErr
}

// fetchCode brings the function's package into the task root, verified,
// before the handler starts. The gateway's function listener is tried
// first: it is the one address an instance's network always reaches.
func fetchCode(cfg host.Config, url, digest string, logger *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := codefetch.Fetch(ctx, codefetch.Request{URL: url, SHA256: digest, FunctionGateway: cfg.GatewayURL, Dir: cfg.TaskRoot})
	if err != nil {
		return err
	}
	logger.Info("package fetched and verified", "sha256", digest, "from", res.From, "bytes", res.Bytes,
		"fetch_ms", float64(res.Fetch.Microseconds())/1000, "unpack_ms", float64(res.Unpack.Microseconds())/1000, "failed_attempts", res.FailedAttempts)
	// The package's bytes are garbage now: give the memory back, since the
	// task's memory limit covers the host too. In the background: a forced
	// collection on the way to the handler cost every cold start ~5 ms, and
	// it is done long before a handler could need the memory.
	go debug.FreeOSMemory()
	return nil
}

// instanceKey makes this instance's key and keeps it where the gateway,
// and no caller on the network, can read it: a file in the task's local
// directory, which Nomad's file system API serves to the gateway. It is
// written before the host listens, so the key exists once the host
// answers.
func instanceKey(path string) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	key := hex.EncodeToString(b)
	if err := os.WriteFile(path, []byte(key), 0o600); err != nil {
		return "", err
	}
	return key, nil
}

// listenAddr is where the host serves the gateway: NIMBUS_LISTEN, or
// Nomad's address of the port labelled http.
func listenAddr(getenv func(string) string) string {
	if l := getenv(protocol.EnvListen); l != "" {
		return l
	}
	if port := getenv("NOMAD_PORT_http"); port != "" {
		ip := getenv("NOMAD_IP_http")
		if ip == "" {
			ip = "127.0.0.1"
		}
		return net.JoinHostPort(ip, port)
	}
	return ""
}

// parseConfig reads flags, falling back to the environment the Nomad job
// sets (NIMBUS_*) and to Nomad's own task variables.
func parseConfig(args []string, getenv func(string) string) (host.Config, string, error) {
	env := func(keys ...string) string {
		for _, k := range keys {
			if v := getenv(k); v != "" {
				return v
			}
		}
		return ""
	}
	fs := flag.NewFlagSet("nimbus-host", flag.ContinueOnError)
	var cfg host.Config
	var timeout, granularity string
	var memory, concurrency string
	listen := listenAddr(getenv)
	taskRoot := env(protocol.EnvTaskRoot, "LAMBDA_TASK_ROOT")
	if taskRoot == "" {
		if dir := getenv("NOMAD_TASK_DIR"); dir != "" {
			taskRoot = dir + "/function"
		} else {
			taskRoot, _ = os.Getwd()
		}
	}
	fs.StringVar(&listen, "listen", listen, "address for the gateway-facing API (default from NOMAD_PORT_http)")
	fs.StringVar(&cfg.FunctionName, "function", env(protocol.EnvFunctionName, "AWS_LAMBDA_FUNCTION_NAME"), "function name")
	fs.StringVar(&cfg.FunctionVersion, "function-version", env(protocol.EnvFunctionVersion), "function version (default $LATEST)")
	fs.StringVar(&cfg.Runtime, "runtime", env(protocol.EnvRuntime), "provided, python3, nodejs or http")
	fs.StringVar(&cfg.Handler, "handler", env(protocol.EnvHandler), "handler: executable, module.function or file.export")
	fs.StringVar(&cfg.TaskRoot, "task-root", taskRoot, "directory holding the function's code")
	fs.StringVar(&memory, "memory-mb", env(protocol.EnvMemoryMB, "NOMAD_MEMORY_LIMIT"), "memory size in MB (default 128)")
	fs.StringVar(&timeout, "timeout", env(protocol.EnvTimeout), "the function's timeout: no invocation runs longer, whatever deadline its caller sends (default 3s)")
	fs.StringVar(&granularity, "billing-granularity", env(protocol.EnvBillingGranularity), "1ms (default) or 100ms")
	fs.StringVar(&concurrency, "concurrency", env(protocol.EnvConcurrency), "invocations at once, http runtime only (default 1)")
	fs.StringVar(&cfg.Region, "region", env(protocol.EnvRegion, "NOMAD_REGION"), "region shown in ARNs and AWS_REGION")
	fs.StringVar(&cfg.Python, "python", env(protocol.EnvPython), "python interpreter (default python3)")
	fs.StringVar(&cfg.Node, "node", env(protocol.EnvNode), "node interpreter (default node)")
	if err := fs.Parse(args); err != nil {
		return cfg, "", err
	}
	var err error
	if memory != "" {
		if cfg.MemoryMB, err = strconv.Atoi(memory); err != nil || cfg.MemoryMB <= 0 {
			return cfg, "", fmt.Errorf("memory %q is not a positive number of MB", memory)
		}
	}
	if concurrency != "" {
		if cfg.Concurrency, err = strconv.Atoi(concurrency); err != nil {
			return cfg, "", fmt.Errorf("concurrency %q is not a number", concurrency)
		}
	}
	if timeout != "" {
		if cfg.Timeout, err = time.ParseDuration(timeout); err != nil || cfg.Timeout <= 0 {
			return cfg, "", fmt.Errorf("timeout %q is not a positive duration such as 3s", timeout)
		}
	}
	if granularity != "" {
		if cfg.BillingGranularity, err = time.ParseDuration(granularity); err != nil {
			return cfg, "", fmt.Errorf("billing granularity %q is not 1ms or 100ms", granularity)
		}
	}
	// Nomad leaves ${meta.…} as it is where the client sets no such meta.
	if url := getenv(protocol.EnvGatewayForFunctions); url != "" && !strings.Contains(url, "${") {
		cfg.GatewayURL = url
	}
	refs, err := protocol.SecretRefs(map[string]string{protocol.EnvSecrets: getenv(protocol.EnvSecrets)})
	if err != nil {
		return cfg, "", err
	}
	if len(refs) > 0 {
		dir := getenv("NOMAD_SECRETS_DIR")
		if dir == "" {
			dir = "secrets"
		}
		if cfg.Secrets, err = host.LoadSecrets(refs, dir); err != nil {
			return cfg, "", err
		}
	}
	if listen == "" {
		return cfg, "", errors.New("no address to listen on: pass -listen or run under Nomad with a port labelled http")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = model.DefaultTimeout
	}
	return cfg, listen, nil
}
