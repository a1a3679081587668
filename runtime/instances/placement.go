package instances

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/backoff"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/clients"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/watch"
)

// Allocations is the part of Nomad's allocations API the gateway needs.
type Allocations interface {
	Info(allocID string, q *nomadapi.QueryOptions) (*nomadapi.Allocation, *nomadapi.QueryMeta, error)
	// Stop ends a warm pool instance the gateway released; Nomad places a
	// fresh one (warmpool.go).
	Stop(alloc *nomadapi.Allocation, q *nomadapi.QueryOptions) (*nomadapi.AllocStopResponse, error)
}

// AllocFiles reads a file of an allocation: the instance key its host
// made at start (Nomad's AllocFS).
type AllocFiles interface {
	Cat(alloc *nomadapi.Allocation, path string, q *nomadapi.QueryOptions) (io.ReadCloser, error)
}

// readInstanceKey reads the key an instance's host made at start; ""
// for an instance of a job from before instance keys.
func readInstanceKey(ctx context.Context, files AllocFiles, alloc *nomadapi.Allocation) (string, error) {
	if !expectsInstanceKey(alloc) {
		return "", nil
	}
	rc, err := files.Cat(alloc, nomadjob.InstanceKeyPath, (&nomadapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return "", fmt.Errorf("reading the instance key of allocation %s (the gateway's Nomad policy needs read-fs): %w", alloc.ID, err)
	}
	defer func() { _ = rc.Close() }()
	key, err := io.ReadAll(io.LimitReader(rc, 256))
	if err != nil {
		return "", fmt.Errorf("reading the instance key of allocation %s: %w", alloc.ID, err)
	}
	return strings.TrimSpace(string(key)), nil
}

// A Consul registration under a function's service name is only a claim:
// anyone with service:write on that name can make it. The gateway routes
// to an instance only once Nomad confirms it placed it: the allocation
// named in the service id belongs to the function's job and group, is
// pending or running, and was given exactly the address and port that the
// registration advertises. The answer is kept for the registration's life.

// NomadServicePrefix starts the Consul service ids that Nomad registers:
// _nomad-task-<alloc id>-<task or "group-<group>">-<service>-<port label>.
const NomadServicePrefix = "_nomad-task-"

// errNotPlaced is a registration that Nomad did not place for the function.
var errNotPlaced = errors.New("not an instance Nomad placed for the function")

// allocIDOf extracts the allocation id from a Nomad-registered service id.
func allocIDOf(serviceID string) (string, bool) {
	rest, ok := strings.CutPrefix(serviceID, NomadServicePrefix)
	if !ok || len(rest) < 36 {
		return "", false
	}
	id := rest[:36]
	for i, c := range id {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return "", false
			}
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
		default:
			return "", false
		}
	}
	return id, len(rest) == 36 || rest[36] == '-'
}

// expectsInstanceKey reports whether the allocation's job has its host
// make an instance key: every job since instance keys exist.
func expectsInstanceKey(alloc *nomadapi.Allocation) bool {
	if alloc.Job == nil {
		return true
	}
	for _, tg := range alloc.Job.TaskGroups {
		for _, t := range tg.Tasks {
			if t.Name == nomadjob.TaskName {
				_, ok := t.Env[protocol.EnvInstanceKeyFile]
				return ok
			}
		}
	}
	return true
}

// verifyPlacement checks one registration against Nomad. Errors wrapping
// errNotPlaced are final; others (Nomad unreachable) may be retried.
func verifyPlacement(ctx context.Context, allocs Allocations, jobID, group string, svc *consulapi.AgentService, addr string) (*nomadapi.Allocation, error) {
	allocID, ok := allocIDOf(svc.ID)
	if !ok {
		return nil, fmt.Errorf("%w: service id %q does not name a Nomad allocation", errNotPlaced, svc.ID)
	}
	alloc, _, err := allocs.Info(allocID, (&nomadapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		if clients.NomadNotFound(err) {
			return nil, fmt.Errorf("%w: allocation %s does not exist", errNotPlaced, allocID)
		}
		return nil, fmt.Errorf("reading allocation %s from Nomad: %w", allocID, err)
	}
	switch {
	case alloc.JobID != jobID || alloc.TaskGroup != group:
		return nil, fmt.Errorf("%w: allocation %s belongs to %s/%s", errNotPlaced, allocID, alloc.JobID, alloc.TaskGroup)
	case alloc.ClientStatus != nomadapi.AllocClientStatusPending && alloc.ClientStatus != nomadapi.AllocClientStatusRunning:
		return nil, fmt.Errorf("%w: allocation %s is %s", errNotPlaced, allocID, alloc.ClientStatus)
	}
	for _, want := range allocatedAddrs(alloc) {
		if want == addr {
			return alloc, nil
		}
	}
	return nil, fmt.Errorf("%w: allocation %s was not given %s", errNotPlaced, allocID, addr)
}

// allocatedAddrs lists the host:port pairs Nomad gave the allocation's
// "http" port.
func allocatedAddrs(alloc *nomadapi.Allocation) []string {
	var out []string
	if alloc.AllocatedResources == nil {
		return nil
	}
	shared := alloc.AllocatedResources.Shared
	for _, p := range shared.Ports {
		if p.Label == nomadjob.PortLabel {
			out = append(out, net.JoinHostPort(p.HostIP, strconv.Itoa(p.Value)))
		}
	}
	for _, n := range shared.Networks {
		for _, p := range n.DynamicPorts {
			if p.Label == nomadjob.PortLabel {
				out = append(out, net.JoinHostPort(n.IP, strconv.Itoa(p.Value)))
			}
		}
	}
	return out
}

// instanceKey reads the instance's key as soon as its host has written
// it, trying every 20 ms from the moment the instance is registered, so
// that the read overlaps the host's start instead of following it. The
// host writes the key before it listens: once it answers, a failed read
// is a real error.
func (p *Pool) instanceKey(ctx context.Context, inst *Instance, alloc *nomadapi.Allocation) (string, error) {
	for {
		p.mu.Lock()
		answered := inst.ready || inst.gone
		p.mu.Unlock()
		key, err := readInstanceKey(ctx, p.set.files, alloc)
		if err == nil || answered || ctx.Err() != nil {
			return key, err
		}
		watch.Sleep(ctx, 20*time.Millisecond)
	}
}

// confirm verifies a new instance and either trusts it or refuses it for
// good.
func (p *Pool) confirm(ctx context.Context, inst *Instance, svc *consulapi.AgentService) {
	readKey := func(ctx context.Context, alloc *nomadapi.Allocation) (string, error) {
		return p.instanceKey(ctx, inst, alloc)
	}
	alloc, key, err := p.set.confirmPlacement(ctx, slog.String("function", p.name), p.fn.Load().NomadJob(), nomadjob.GroupName, svc, inst.addr, readKey)
	switch {
	case err == nil:
		if p.set.files != nil && key == "" {
			p.set.log.Warn("instance without an instance key: its job is from before instance keys, so anyone who reaches it may invoke it; apply the function again",
				"function", p.name, "alloc_id", alloc.ID)
		}
		p.mu.Lock()
		inst.trusted, inst.key = true, key
		p.dispatchLocked()
		p.mu.Unlock()
	case errors.Is(err, errNotPlaced):
		p.set.log.Warn("refusing a registration under a function's service name", "function", p.name,
			"service_id", svc.ID, "address", inst.addr, "reason", err.Error())
		p.set.metrics.RefusedInstances.WithLabelValues(p.name).Inc()
	}
}

// confirmPlacement checks a registration with Nomad (verifyPlacement) and
// reads the instance's key with readKey, retrying with backoff while Nomad
// fails or does not answer. It returns an error wrapping errNotPlaced for
// a registration Nomad did not place for jobID's group, or ctx's error.
// whose names the instance's function or pool in the log.
func (s *Set) confirmPlacement(ctx context.Context, whose slog.Attr, jobID, group string, svc *consulapi.AgentService, addr string,
	readKey func(context.Context, *nomadapi.Allocation) (string, error)) (*nomadapi.Allocation, string, error) {
	retry := backoff.Fast.Start()
	for {
		callCtx, cancel := context.WithTimeout(ctx, ControlPlaneTimeout)
		alloc, err := verifyPlacement(callCtx, s.allocs, jobID, group, svc, addr)
		key := ""
		if err == nil && s.files != nil {
			key, err = readKey(callCtx, alloc)
		}
		cancel()
		switch {
		case err == nil || errors.Is(err, errNotPlaced):
			return alloc, key, err
		case ctx.Err() != nil:
			return nil, "", ctx.Err()
		}
		wait := retry.Next()
		s.log.Warn("cannot confirm an instance with Nomad yet", whose, "service_id", svc.ID, "err", err, "retry_in", wait)
		_ = backoff.Sleep(ctx, wait)
	}
}
