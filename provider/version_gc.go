package provider

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/clients"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
)

// collectVersions removes the function's published versions that nothing
// has referenced for the grace period: their records, then their jobs. The
// latest version is always kept, as is any version an alias (its version,
// its weights, or the version a deployment moves from), a route, a
// schedule, a KV trigger or an event source names. The gateways collect
// the code once no version uses it (their artifact GC). It runs at each
// apply of the function: the gateway, which sees every invocation, may not
// deregister jobs.
func (r *functionResource) collectVersions(ctx context.Context, name string, grace time.Duration) error {
	kv := r.data.Consul.KV()
	versions, err := publishedVersions(ctx, kv, name)
	if err != nil || len(versions) < 2 {
		return err
	}
	refs, err := r.versionReferences(ctx, name)
	if err != nil {
		return err
	}
	refs[versions[len(versions)-1]] = "the function's latest version"
	marks := map[int]time.Time{}
	pairs, _, err := kv.List(kvstore.UnreferencedPrefix(name), (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("reading the unreferenced versions' marks: %w", err)
	}
	for _, p := range pairs {
		n, err := strconv.Atoi(strings.TrimPrefix(p.Key, kvstore.UnreferencedPrefix(name)))
		if t, perr := time.Parse(time.RFC3339, string(p.Value)); err == nil && perr == nil {
			marks[n] = t
		}
	}
	wq := (&consulapi.WriteOptions{}).WithContext(ctx)
	now := time.Now().UTC()
	for _, n := range versions {
		mark := kvstore.UnreferencedPrefix(name) + strconv.Itoa(n)
		since, marked := marks[n]
		switch {
		case refs[n] != "":
			if marked {
				_, _ = kv.Delete(mark, wq)
			}
			continue
		case !marked && grace > 0:
			if _, err := kv.Put(&consulapi.KVPair{Key: mark, Value: []byte(now.Format(time.RFC3339))}, wq); err != nil {
				return fmt.Errorf("marking version %d unreferenced: %w", n, err)
			}
			continue
		case marked && now.Sub(since) < grace:
			continue
		}
		// The record first, so that the gateways stop routing to the version
		// before its job goes.
		if _, err := kv.Delete(kvstore.VersionKey(name, n), wq); err != nil {
			return fmt.Errorf("deleting version %d's record: %w", n, err)
		}
		if err := r.purgeVersionJob(ctx, name, nomadjob.VersionJobID(name, n)); err != nil {
			return err
		}
		_, _ = kv.Delete(mark, wq)
	}
	return nil
}

// versionReferences names, for each of the function's versions that
// something targets, one thing that does.
func (r *functionResource) versionReferences(ctx context.Context, name string) (map[int]string, error) {
	refs := map[int]string{}
	ref := func(target, by string) {
		fn, q := model.SplitQualified(target)
		if n, err := strconv.Atoi(q); fn == name && err == nil && model.IsVersionNumber(q) {
			refs[n] = by
		}
	}
	kv := r.data.Consul.KV()
	q := (&consulapi.QueryOptions{}).WithContext(ctx)
	list := func(prefix string, each func(*consulapi.KVPair)) error {
		pairs, _, err := kv.List(prefix, q)
		if err != nil {
			return fmt.Errorf("reading %s: %w", prefix, err)
		}
		for _, p := range pairs {
			each(p)
		}
		return nil
	}
	err := list(kvstore.AliasesPrefix(name), func(p *consulapi.KVPair) {
		a, err := kvstore.DecodeAlias(p.Value)
		if err != nil {
			return
		}
		by := "alias " + a.Name
		ref(model.Qualify(name, a.FunctionVersion), by)
		ref(model.Qualify(name, a.PreviousVersion), by)
		for v := range a.AdditionalVersionWeights {
			ref(model.Qualify(name, v), by)
		}
	})
	if err == nil {
		err = list(kvstore.RoutesPrefix, func(p *consulapi.KVPair) {
			if rt, err := kvstore.DecodeRoute(p.Value); err == nil {
				ref(rt.Function, "route "+rt.Path)
			}
		})
	}
	if err == nil {
		err = list(kvstore.KVTriggersPrefix, func(p *consulapi.KVPair) {
			if tr, err := kvstore.DecodeKVTrigger(p.Value); err == nil {
				ref(tr.Function, "KV trigger "+tr.Name)
			}
		})
	}
	if err == nil {
		err = list(kvstore.EventSourcesPrefix, func(p *consulapi.KVPair) {
			if s, err := kvstore.DecodeEventSource(p.Value); err == nil && p.Key == kvstore.EventSourceKey(s.Name) {
				ref(s.Function, "event source "+s.Name)
			}
		})
	}
	if err != nil {
		return nil, err
	}
	// Schedules are periodic jobs that name their function in their meta.
	jq := r.data.nomadQuery(ctx)
	jq.Prefix = nomadjob.SchedulePrefix
	stubs, _, err := r.data.Nomad.Jobs().List(jq)
	if err != nil {
		return nil, fmt.Errorf("listing the schedules' jobs: %w", err)
	}
	for _, s := range stubs {
		if s.ParentID != "" {
			continue // a run of a schedule
		}
		job, _, err := r.data.Nomad.Jobs().Info(s.ID, r.data.nomadQuery(ctx))
		if err != nil {
			if clients.NomadNotFound(err) {
				continue
			}
			return nil, fmt.Errorf("reading schedule job %s: %w", s.ID, err)
		}
		ref(job.Meta[nomadjob.MetaFunction], "schedule "+job.Meta[nomadjob.MetaSchedule])
	}
	return refs, nil
}
