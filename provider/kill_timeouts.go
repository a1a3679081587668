package provider

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/clients"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
)

// killTimeouts is what the clients that can run instances let a stopping
// task take to finish: Nomad caps every task's kill_timeout at its client's
// max_kill_timeout.
type killTimeouts struct {
	// Min is the smallest max_kill_timeout among the clients read, and
	// MinNode a client that has it; 0 when no client was read.
	Min     time.Duration
	MinNode string
	// Unread names the clients whose agents did not answer, with why.
	Unread []string
}

// nomadDefaultKillTimeout is max_kill_timeout when a client sets none.
const nomadDefaultKillTimeout = 30 * time.Second

// killTimeoutCache keeps the clients' answer for the provider's run: one
// plan asks once, however many functions it has.
type killTimeoutCache struct {
	once sync.Once
	kt   killTimeouts
	err  error
}

// clientKillTimeouts reads the max_kill_timeout of every ready client with
// a healthy exec driver. It is the clients' own configuration, which no
// server API reports, so each client's agent is asked (/v1/agent/self,
// with agent:read) at the HTTP address it advertises.
func (d *providerData) clientKillTimeouts(ctx context.Context) (killTimeouts, error) {
	d.killTimeouts.once.Do(func() {
		d.killTimeouts.kt, d.killTimeouts.err = d.readKillTimeouts(ctx)
	})
	return d.killTimeouts.kt, d.killTimeouts.err
}

func (d *providerData) readKillTimeouts(ctx context.Context) (killTimeouts, error) {
	nodes, _, err := d.Nomad.Nodes().List(d.nomadQuery(ctx))
	if err != nil {
		return killTimeouts{}, err
	}
	scheme := "http"
	if u, err := url.Parse(d.Settings.Nomad.Address); err == nil && u.Scheme != "" {
		scheme = u.Scheme
	}
	// Clients the provider cannot reach (a pipeline outside the cluster's
	// network) must not hold a plan up: the reads share one deadline.
	ctx, cancel := context.WithTimeout(ctx, killTimeoutReadDeadline)
	defer cancel()
	var (
		mu      sync.Mutex
		out     killTimeouts
		pending = map[string]bool{}
		wg      sync.WaitGroup
	)
	limit := make(chan struct{}, 16)
	for _, n := range nodes {
		if n.Status != nomadapi.NodeStatusReady || !nomadjob.ExecDriverHealthy(n) {
			continue
		}
		pending[n.Name] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case limit <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-limit }()
			timeout, err := d.readKillTimeout(ctx, scheme, n.ID)
			mu.Lock()
			defer mu.Unlock()
			if ctx.Err() != nil {
				return
			}
			delete(pending, n.Name)
			switch {
			case err != nil:
				out.Unread = append(out.Unread, fmt.Sprintf("%s: %v", n.Name, err))
			case out.Min == 0 || timeout < out.Min:
				out.Min, out.MinNode = timeout, n.Name
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	mu.Lock()
	defer mu.Unlock()
	for name := range pending {
		out.Unread = append(out.Unread, fmt.Sprintf("%s: its agent did not answer within %s", name, killTimeoutReadDeadline))
	}
	sort.Strings(out.Unread)
	return out, nil
}

// killTimeoutReadDeadline bounds the reading of every client's
// max_kill_timeout.
const killTimeoutReadDeadline = 5 * time.Second

// readKillTimeout asks one client's agent for its max_kill_timeout.
func (d *providerData) readKillTimeout(ctx context.Context, scheme, nodeID string) (time.Duration, error) {
	node, _, err := d.Nomad.Nodes().Info(nodeID, d.nomadQuery(ctx))
	if err != nil {
		return 0, err
	}
	if node.HTTPAddr == "" {
		return 0, fmt.Errorf("the node advertises no HTTP address")
	}
	cfg := d.Settings.Nomad
	cfg.Address = scheme + "://" + node.HTTPAddr
	agent, err := clients.NewNomad(cfg, clients.RetryPolicy{DialTimeout: 3 * time.Second}, nil)
	if err != nil {
		return 0, err
	}
	self, err := agent.Agent().Self()
	if err != nil {
		return 0, fmt.Errorf("its agent at %s did not answer: %w", cfg.Address, err)
	}
	client, _ := self.Config["Client"].(map[string]any)
	raw, _ := client["MaxKillTimeout"].(string)
	if raw == "" {
		return nomadDefaultKillTimeout, nil
	}
	timeout, err := time.ParseDuration(raw)
	if err != nil {
		return 0, fmt.Errorf("its agent reports max_kill_timeout %q: %w", raw, err)
	}
	return timeout, nil
}

// killTimeoutWarning explains what happens to a function's invocations
// when its instances stop on clients whose max_kill_timeout is shorter
// than the instances need; "" when they have enough.
func killTimeoutWarning(kt killTimeouts, function string, timeout, needed time.Duration) string {
	if kt.Min == 0 || needed <= kt.Min {
		return ""
	}
	return fmt.Sprintf("Nomad client %s lets a stopping task take at most %s to finish (its max_kill_timeout), but an instance of %s needs %s to finish an invocation of its timeout (%s). "+
		"When a deploy or a scale-down stops an instance, invocations running longer than %s are killed midway. "+
		"Set client { max_kill_timeout = %q } on every Nomad client (see the platform guide), or lower the function's timeout.",
		kt.MinNode, kt.Min, function, needed, timeout, kt.Min, strings.TrimSuffix(nomadjob.ClientMaxKillTimeout.String(), "0s"))
}
