// Command nimbus-gateway runs the Nimbus gateway. For now it serves the
// artifact store that the provider uploads function packages to and that
// Nomad fetches them from.
package main

import (
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

	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/gateway"
)

func main() {
	listen := flag.String("listen", envOr("NIMBUS_GATEWAY_LISTEN", "127.0.0.1:8080"), "address to serve on")
	dataDir := flag.String("data-dir", envOr("NIMBUS_GATEWAY_DATA_DIR", "nimbus-gateway-data"), "directory for stored artifacts")
	flag.Parse()

	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := run(*listen, *dataDir, logger); err != nil {
		fmt.Fprintf(os.Stderr, "nimbus-gateway: %v\n", err)
		os.Exit(1)
	}
}

func run(listen, dataDir string, logger *slog.Logger) error {
	store, err := gateway.NewArtifactStore(dataDir, logger)
	if err != nil {
		return fmt.Errorf("artifact store in %s: %w", dataDir, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/artifacts/", store.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ready":true}`))
	})
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	logger.Info("nimbus-gateway listening", "addr", ln.Addr().String(), "data_dir", dataDir)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
