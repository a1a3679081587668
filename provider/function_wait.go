package provider

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/clients"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
)

// runCanary runs the new version as a one-instance job under its own name
// and waits for its health check, so that a version that cannot start
// never replaces a working one. The canary is purged either way.
func (r *functionResource) runCanary(ctx context.Context, f model.Function, src nomadjob.Source, opts nomadjob.Options) error {
	job := nomadjob.RenderCanary(f, src, opts)
	id := *job.ID
	if err := r.data.purgeJob(ctx, id); err != nil {
		return err
	}
	defer func() {
		cleanup, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// Best effort: the next deploy and the function's delete purge
		// the canary again, so a failure here only leaves it for a while.
		if err := r.data.purgeJob(cleanup, id); err != nil {
			tflog.Warn(ctx, "Cannot purge the canary job", map[string]any{"job_id": id, "error": err.Error()})
		}
	}()
	if _, _, err := r.data.Nomad.Jobs().Register(job, r.data.nomadWrite(ctx)); err != nil {
		return fmt.Errorf("Nomad refused the canary job %s: %w", id, err)
	}
	return r.data.poll(ctx, "the canary "+id, func() (bool, error) {
		allocs, _, err := r.data.Nomad.Jobs().Allocations(id, true, r.data.nomadQuery(ctx))
		if err != nil {
			return false, err
		}
		for _, a := range allocs {
			if failed(a) {
				return false, finalError{r.explain(ctx, a, src)}
			}
		}
		entries, err := r.data.passing(ctx, id)
		return len(entries) > 0, err
	}, func() string { return r.data.lastEvents(ctx, id) }, functionWaitHint)
}

// waitHealthy waits until min_instances instances of the version just
// registered pass their checks.
func (r *functionResource) waitHealthy(ctx context.Context, f model.Function, version uint64) error {
	id := nomadjob.JobID(f.Name)
	return r.data.poll(ctx, fmt.Sprintf("%d healthy instances of %s", f.MinInstances, id), func() (bool, error) {
		allocs, _, err := r.data.Nomad.Jobs().Allocations(id, false, r.data.nomadQuery(ctx))
		if err != nil {
			return false, err
		}
		current := map[string]bool{}
		for _, a := range allocs {
			if a.JobVersion != version || a.DesiredStatus != nomadapi.AllocDesiredStatusRun {
				continue
			}
			if failed(a) {
				return false, finalError{fmt.Errorf("an instance failed:\n%s", events(a))}
			}
			if a.ClientStatus == nomadapi.AllocClientStatusRunning {
				current[a.ID] = true
			}
		}
		entries, err := r.data.passing(ctx, nomadjob.ServiceName(f.Name))
		if err != nil {
			return false, err
		}
		healthy := 0
		for _, e := range entries {
			for allocID := range current {
				if strings.Contains(e.Service.ID, allocID) {
					healthy++
				}
			}
		}
		return healthy >= f.MinInstances, nil
	}, func() string { return r.data.lastEvents(ctx, id) }, functionWaitHint)
}

// passing lists a service's passing instances. Consul hides what a token
// may not read instead of refusing it, which would make the wait run to
// its timeout; a filtered answer fails at once with the missing rule.
func (d *providerData) passing(ctx context.Context, service string) ([]*consulapi.ServiceEntry, error) {
	entries, meta, err := d.Consul.Health().Service(service, "", true, (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, err
	}
	if meta.ResultsFilteredByACLs {
		return nil, finalError{fmt.Errorf("Consul hid the health of service %s from the provider's token: it needs service_prefix %q { policy = \"read\" } and node_prefix \"\" { policy = \"read\" }; the nimbus-deployer policy grants them (%s)",
			service, "nimbus-", clients.DeployerConsul.File)}
	}
	return entries, nil
}

// poll runs check every 250 ms until it succeeds, fails for good
// (finalError) or ctx ends; the timeout's error quotes describe() and ends
// with hint, what to do about it.
func (d *providerData) poll(ctx context.Context, what string, check func() (bool, error), describe func() string, hint string) error {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		ok, err := check()
		if ok {
			return nil
		}
		var final finalError
		if errors.As(err, &final) {
			return final.error
		}
		lastErr = err
		select {
		case <-ctx.Done():
			msg := fmt.Sprintf("timed out waiting for %s", what)
			if lastErr != nil {
				msg += ": " + lastErr.Error()
			}
			if ev := describe(); ev != "" {
				msg += "\nLatest task events:\n" + ev
			}
			return fmt.Errorf("%s\n%s", msg, hint)
		case <-tick.C:
		}
	}
}

// functionWaitHint says what to do when a function's instances take
// longer than the wait.
const functionWaitHint = "Raise the resource's timeouts if instances need longer to start"

// finalError ends a wait at once (an instance failed); any other error is
// a blip talking to an agent, polled through until the timeout.
type finalError struct{ error }

func failed(a *nomadapi.AllocationListStub) bool {
	if a.ClientStatus == nomadapi.AllocClientStatusFailed || a.ClientStatus == nomadapi.AllocClientStatusLost {
		return true
	}
	for _, ts := range a.TaskStates {
		if ts.Failed {
			return true
		}
	}
	return false
}

// explain turns a failed allocation into an actionable message. The host
// that refuses a package altered in the store says why in its log, which
// the deployer may not read, and Nomad's events show only its exit; so for
// a package of the store the provider checks the store's copy itself.
func (r *functionResource) explain(ctx context.Context, a *nomadapi.AllocationListStub, src nomadjob.Source) error {
	msg := events(a)
	if r.data.Artifacts != nil && (src.FromStore || strings.HasPrefix(src.URL, r.data.Artifacts.BaseURL)) {
		actual, err := r.data.Artifacts.Verify(ctx, src.SHA256)
		if err == nil && actual != src.SHA256 {
			refuser := "nimbus-host" // it fetches packages of the store
			if !src.FromStore {
				refuser = "Nomad" // a source_url, fetched by its artifact block
			}
			return fmt.Errorf("%s refused the package: the gateway's copy of sha256:%s does not match its checksum (its bytes hash to sha256:%s), so it was altered after upload. Remove it from the gateway's artifact store and apply again to upload it anew.\n%s",
				refuser, src.SHA256, actual, msg)
		}
	}
	return fmt.Errorf("the instance failed:\n%s", msg)
}

// events lists an allocation's task events, oldest first.
func events(a *nomadapi.AllocationListStub) string {
	var lines []string
	tasks := make([]string, 0, len(a.TaskStates))
	for t := range a.TaskStates {
		tasks = append(tasks, t)
	}
	sort.Strings(tasks)
	for _, t := range tasks {
		for _, ev := range a.TaskStates[t].Events {
			text := ev.DisplayMessage
			if text == "" {
				text = ev.Message
			}
			lines = append(lines, fmt.Sprintf("  %s  %s: %s", time.Unix(0, ev.Time).UTC().Format("15:04:05"), ev.Type, text))
		}
	}
	return strings.Join(lines, "\n")
}

func (d *providerData) lastEvents(ctx context.Context, jobID string) string {
	allocs, _, err := d.Nomad.Jobs().Allocations(jobID, true, d.nomadQuery(context.WithoutCancel(ctx)))
	if err != nil || len(allocs) == 0 {
		return ""
	}
	sort.Slice(allocs, func(i, j int) bool { return allocs[i].CreateTime > allocs[j].CreateTime })
	return events(allocs[0])
}
