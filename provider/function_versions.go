package provider

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/clients"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
)

// publishedVersions lists a function's published versions in Consul KV,
// oldest first.
func publishedVersions(ctx context.Context, kv *consulapi.KV, name string) ([]int, error) {
	keys, _, err := kv.Keys(kvstore.VersionsPrefix(name), "/", (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, err
	}
	var versions []int
	for _, k := range keys {
		s := strings.TrimPrefix(k, kvstore.VersionsPrefix(name))
		if model.IsVersionNumber(s) {
			n, _ := strconv.Atoi(s)
			versions = append(versions, n)
		}
	}
	// Keys come sorted as strings: 10 before 9.
	sort.Ints(versions)
	return versions, nil
}

// latestVersion is the function's latest published version, as its
// version attribute shows it: $LATEST when it has none.
func latestVersion(versions []int) string {
	if len(versions) == 0 {
		return model.Latest
	}
	return strconv.Itoa(versions[len(versions)-1])
}

// publish publishes the function as it was just deployed as version n, one
// above the latest: its own job, nimbus-fn-<name>-v<n>, at zero instances,
// then its record, which is written only if no record of n exists, so
// that a version never changes once published.
func (r *functionResource) publish(ctx context.Context, f model.Function, src nomadjob.Source, opts nomadjob.Options) (int, error) {
	kv := r.data.Consul.KV()
	versions, err := publishedVersions(ctx, kv, f.Name)
	if err != nil {
		return 0, fmt.Errorf("cannot list the function's published versions in Consul KV: %w", err)
	}
	n := 1
	if len(versions) > 0 {
		n = versions[len(versions)-1] + 1
	}
	job := nomadjob.RenderVersion(f, src, opts, n)
	existing, found, err := r.data.liveJob(ctx, *job.ID)
	if err != nil {
		return 0, fmt.Errorf("cannot read job %s: %w", *job.ID, err)
	}
	if found && !isVersionJob(existing, f.Name) {
		return 0, fmt.Errorf("job %s exists and is not a version of function %s (a function named %s-v%d, perhaps): "+
			"version %d would run under that name. Rename one of the two functions", *job.ID, f.Name, f.Name, n, n)
	}
	if _, _, err := r.data.Nomad.Jobs().Register(job, r.data.nomadWrite(ctx)); err != nil {
		return 0, fmt.Errorf("cannot register job %s: %w", *job.ID, err)
	}
	rec := nomadjob.VersionRecord(f, src, opts, n)
	ok, _, err := kv.CAS(&consulapi.KVPair{Key: kvstore.VersionKey(f.Name, n), Value: rec.Encode(), ModifyIndex: 0},
		(&consulapi.WriteOptions{}).WithContext(ctx))
	switch {
	case err != nil:
		return 0, fmt.Errorf("cannot write version %d's record to Consul KV: %w", n, err)
	case !ok:
		return 0, fmt.Errorf("version %d of function %s was published by another apply meanwhile; apply again", n, f.Name)
	}
	return n, nil
}

// isVersionJob reports whether a job runs a published version of the
// function.
func isVersionJob(job *nomadapi.Job, function string) bool {
	return job.Meta[nomadjob.MetaManaged] == nomadjob.ManagedBy && job.Meta[nomadjob.MetaFunction] == function &&
		model.IsVersionNumber(job.Meta[nomadjob.MetaVersion])
}

// purgeVersionJobs deregisters and purges the jobs of all of a function's
// published versions, found by their meta, so that the job of another
// function whose name merely starts the same is left alone.
func (r *functionResource) purgeVersionJobs(ctx context.Context, function string) error {
	q := r.data.nomadQuery(ctx)
	q.Prefix = nomadjob.JobID(function) + "-v"
	stubs, _, err := r.data.Nomad.Jobs().List(q)
	if err != nil {
		return fmt.Errorf("cannot list the function's version jobs: %w", err)
	}
	for _, s := range stubs {
		if err := r.purgeVersionJob(ctx, function, s.ID); err != nil {
			return err
		}
	}
	return nil
}

// purgeVersionJob purges job id if it runs a version of function; a job
// that is gone, or is not one, is left be.
func (r *functionResource) purgeVersionJob(ctx context.Context, function, id string) error {
	job, _, err := r.data.Nomad.Jobs().Info(id, r.data.nomadQuery(ctx))
	switch {
	case clients.NomadNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("cannot read job %s: %w", id, err)
	case !isVersionJob(job, function):
		return nil
	}
	if err := r.data.purgeJob(ctx, id); err != nil {
		return fmt.Errorf("purging %s: %w", id, err)
	}
	return nil
}
