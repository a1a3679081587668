package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/eventq"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/eventsource"
)

// openEvents connects to NATS JetStream, where asynchronous invocations are
// stored: NIMBUS_GATEWAY_NATS_URL (comma-separated servers), with the user
// and password (NIMBUS_GATEWAY_NATS_USER, NIMBUS_GATEWAY_NATS_PASSWORD) or
// a credentials file (NIMBUS_GATEWAY_NATS_CREDS), and
// NIMBUS_GATEWAY_NATS_REPLICAS replicas of each stream (1 by default; 3 on
// the cluster of examples/platform/nats). Without a URL it returns nil, and
// the gateway says loudly that a restart loses queued events.
func openEvents(ctx context.Context, logger *slog.Logger, signingKey []byte) (*eventq.Queue, *eventsource.Slots, *nats.Conn, error) {
	url := os.Getenv("NIMBUS_GATEWAY_NATS_URL")
	if url == "" {
		logger.Warn("NO DURABLE QUEUE: asynchronous (Event) invocations are held in this gateway's memory, and a restart or crash loses every queued one. " +
			"Set NIMBUS_GATEWAY_NATS_URL to a NATS server with JetStream (docs/guides/platform.md).")
		return nil, nil, nil, nil
	}
	opts := []nats.Option{nats.Name("nimbus-gateway"), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second),
		// No buffering while disconnected: an event the caller was refused
		// (503) must not be stored later, when the connection comes back.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			logger.Warn("disconnected from NATS; Event invocations get 503 until it is back", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { logger.Info("reconnected to NATS", "server", nc.ConnectedUrlRedacted()) }),
	}
	if user := os.Getenv("NIMBUS_GATEWAY_NATS_USER"); user != "" {
		opts = append(opts, nats.UserInfo(user, os.Getenv("NIMBUS_GATEWAY_NATS_PASSWORD")))
	}
	if creds := os.Getenv("NIMBUS_GATEWAY_NATS_CREDS"); creds != "" {
		opts = append(opts, nats.UserCredentials(creds))
	}
	replicas := 1
	if v := os.Getenv("NIMBUS_GATEWAY_NATS_REPLICAS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 5 {
			return nil, nil, nil, fmt.Errorf("NIMBUS_GATEWAY_NATS_REPLICAS=%q: use 1 to 5, at most the servers in the NATS cluster", v)
		}
		replicas = n
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("connecting to NATS at %s (NIMBUS_GATEWAY_NATS_URL): %w", url, err)
	}
	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	q, err := eventq.Open(openCtx, nc, eventq.Options{Replicas: replicas, Logger: logger, SigningKey: signingKey})
	var slots *eventsource.Slots
	if err == nil {
		host, _ := os.Hostname()
		slots, err = eventsource.OpenSlots(openCtx, nc, replicas, fmt.Sprintf("%s/%d", host, os.Getpid()), logger)
	}
	if err != nil {
		nc.Close()
		return nil, nil, nil, fmt.Errorf("%w: the gateway's NATS user needs the permissions of examples/platform/nats/gateway-permissions.conf", err)
	}
	logger.Info("asynchronous invocations are stored in NATS JetStream", "nats", nc.ConnectedUrlRedacted(), "stream", eventq.EventsStream, "replicas", replicas)
	return q, slots, nc, nil
}
