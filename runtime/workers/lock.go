package workers

import (
	"context"
	"log/slog"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/watch"
)

// HoldLock runs work while this gateway holds the Consul lock at key, so
// that one gateway at a time does it: work's ctx ends when the lock is
// lost. It then takes the lock again, until ctx ends. work must keep state
// it needs to resume in Consul: the next holder may be another gateway.
func HoldLock(ctx context.Context, consul *consulapi.Client, key, session string, log *slog.Logger, work func(ctx context.Context)) {
	for ctx.Err() == nil {
		lock, err := consul.LockOpts(&consulapi.LockOptions{
			Key: key, SessionName: session,
			// A crashed holder's session lapses after its TTL (Consul may take
			// up to twice that); a short lock delay lets the next gateway
			// resume soon after.
			SessionTTL: "10s", LockWaitTime: 5 * time.Second, LockDelay: time.Second,
		})
		if err != nil {
			log.Warn("cannot prepare the lock", "key", key, "err", err)
			watch.Sleep(ctx, time.Second)
			continue
		}
		lost, err := lock.Lock(ctx.Done())
		if err != nil || lost == nil {
			watch.Sleep(ctx, time.Second)
			continue
		}
		lctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-lost:
				cancel()
			case <-lctx.Done():
			}
		}()
		work(lctx)
		cancel()
		_ = lock.Unlock()
	}
}
