package agents

import (
	"context"
	"errors"
	"fmt"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
)

// Poll calls check every interval until it returns true, ctx ends or the
// process exits. lastErr explains what it was waiting for.
func Poll(ctx context.Context, p *Process, what string, check func() (bool, error)) error {
	var lastErr error
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	for {
		ok, err := check()
		if ok {
			return nil
		}
		lastErr = err
		var exited <-chan struct{}
		if p != nil {
			exited = p.Exited()
		}
		select {
		case <-ctx.Done():
			if lastErr == nil {
				lastErr = ctx.Err()
			}
			return fmt.Errorf("waiting for %s: %w", what, lastErr)
		case <-exited:
			return fmt.Errorf("waiting for %s: the agent %w (see %s)", what, p.ExitError(), p.LogPath)
		case <-ticker.C:
		}
	}
}

// WaitConsul waits until the Consul agent has elected a leader.
func WaitConsul(ctx context.Context, p *Process, c *consulapi.Client) error {
	return Poll(ctx, p, "the Consul leader", func() (bool, error) {
		leader, err := c.Status().Leader()
		if err != nil {
			return false, err
		}
		return leader != "", errors.New("no leader elected yet")
	})
}

// WaitNomad waits until Nomad has a leader and a ready node whose exec
// driver is detected and healthy.
func WaitNomad(ctx context.Context, p *Process, c *nomadapi.Client) error {
	if err := Poll(ctx, p, "the Nomad leader", func() (bool, error) {
		leader, err := c.Status().Leader()
		if err != nil {
			return false, err
		}
		return leader != "", errors.New("no leader elected yet")
	}); err != nil {
		return err
	}
	return Poll(ctx, p, "a ready Nomad node with a healthy exec driver", func() (bool, error) {
		nodes, _, err := c.Nodes().List(nil)
		if err != nil {
			return false, err
		}
		for _, n := range nodes {
			if n.Status != nomadapi.NodeStatusReady {
				continue
			}
			if nomadjob.ExecDriverHealthy(n) {
				return true, nil
			}
			if d := n.Drivers["exec"]; d != nil {
				return false, fmt.Errorf("node %s: exec driver: %s", n.Name, d.HealthDescription)
			}
		}
		return false, errors.New("no ready node yet")
	})
}
