// Package rollout registers a function's Nomad job so that a change which
// replaces running instances never leaves the function without one.
//
// A function's job has update { max_parallel = 0 }, so that Nomad creates
// no deployment and the gateway's scale requests are never refused (see
// internal/nomadjob). Registered as it is, a change to the task would
// replace every instance at once, and each new instance would start only
// once the one it replaces has stopped: Nomad's client waits for a
// replaced allocation to end before it starts its successor. Requests
// would wait for a cold start, and a bad version would take every
// instance down.
//
// So when Nomad's plan says the change replaces running instances, the
// job is first registered blue/green: as many canaries as instances start
// beside the old ones, Nomad promotes them once their checks pass, and
// only then stops the old ones, which the gateway drains. A canary that
// fails its checks fails the deployment, and Nomad reverts the job to the
// version that was running. Once the deployment succeeds, the job is
// registered again as it was rendered, max_parallel = 0, which changes no
// instance. Nomad refuses scale requests while the deployment runs, which
// the gateway waits out.
package rollout

import (
	"context"
	"fmt"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/clients"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/watch"
)

// Deadlines of a blue/green deployment. A canary has HealthyDeadline to
// pass its checks; the deployment fails if no canary became healthy for
// ProgressDeadline, or a minute more than the longest kill_timeout
// (none could be placed, for example).
const (
	HealthyDeadline  = 2 * time.Minute
	ProgressDeadline = 3 * time.Minute
)

// Result says how a job was registered.
type Result struct {
	// Version is the job version that runs the registered spec.
	Version uint64
	// Replaced is how many running instances a blue/green deployment
	// replaced, and Deployment its ID; 0 and "" when the change replaced
	// none.
	Replaced   int
	Deployment string
}

// Register registers job, blue/green when it replaces running instances
// (see the package doc), and returns once the new spec runs. preserve
// keeps the instance count of an existing job.
func Register(ctx context.Context, nomad *nomadapi.Client, job *nomadapi.Job, preserve bool) (Result, error) {
	w := (&nomadapi.WriteOptions{Namespace: deref(job.Namespace), Region: deref(job.Region)}).WithContext(ctx)
	q := (&nomadapi.QueryOptions{Namespace: deref(job.Namespace), Region: deref(job.Region)}).WithContext(ctx)
	replaced, err := replacements(nomad, job, preserve, w, q)
	if err != nil {
		return Result{}, err
	}
	if replaced == 0 {
		return register(nomad, job, preserve, w, q)
	}

	rendered := updates(job)
	for _, tg := range job.TaskGroups {
		tg.Update = blueGreen(replaced, tg)
	}
	res, err := register(nomad, job, preserve, w, q)
	for i, tg := range job.TaskGroups {
		tg.Update = rendered[i]
	}
	if err != nil {
		return res, err
	}
	d, err := awaitDeployment(ctx, nomad, deref(job.ID), res.Version, q)
	if err != nil {
		return res, err
	}
	if d.Status != nomadapi.DeploymentStatusSuccessful {
		return res, fmt.Errorf("Nomad's deployment %s of job %s version %d ended %s: %s. The instances that were running kept serving; "+
			"see the deployment in the Nomad UI or with `nomad deployment status %s`",
			short(d.ID), deref(job.ID), res.Version, d.Status, d.StatusDescription, short(d.ID))
	}
	// Back to no deployments, so that scaling is never refused; an update
	// strategy alone changes no instance.
	final, err := register(nomad, job, preserve, w, q)
	final.Replaced, final.Deployment = replaced, d.ID
	return final, err
}

// replacements asks Nomad's plan how many running instances registering
// job replaces. The plan knows nothing of preserved counts, so it is
// asked with the running job's.
func replacements(nomad *nomadapi.Client, job *nomadapi.Job, preserve bool, w *nomadapi.WriteOptions, q *nomadapi.QueryOptions) (int, error) {
	if preserve {
		running, _, err := nomad.Jobs().Info(deref(job.ID), q)
		if err != nil && !clients.NomadNotFound(err) {
			return 0, fmt.Errorf("cannot read job %s: %w", deref(job.ID), err)
		}
		if running != nil {
			counts := map[string]*int{}
			for _, tg := range running.TaskGroups {
				counts[deref(tg.Name)] = tg.Count
			}
			rendered := make([]*int, len(job.TaskGroups))
			for i, tg := range job.TaskGroups {
				rendered[i] = tg.Count
				if c, ok := counts[deref(tg.Name)]; ok {
					tg.Count = c
				}
			}
			defer func() {
				for i, tg := range job.TaskGroups {
					tg.Count = rendered[i]
				}
			}()
		}
	}
	plan, _, err := nomad.Jobs().PlanOpts(job, &nomadapi.PlanOptions{}, w)
	if err != nil {
		return 0, fmt.Errorf("Nomad could not plan job %s: %w", deref(job.ID), err)
	}
	replaced := 0
	if plan.Annotations != nil {
		for _, u := range plan.Annotations.DesiredTGUpdates {
			replaced += int(u.DestructiveUpdate)
		}
	}
	return replaced, nil
}

func register(nomad *nomadapi.Client, job *nomadapi.Job, preserve bool, w *nomadapi.WriteOptions, q *nomadapi.QueryOptions) (Result, error) {
	if _, _, err := nomad.Jobs().RegisterOpts(job, &nomadapi.RegisterOptions{PreserveCounts: preserve}, w); err != nil {
		return Result{}, fmt.Errorf("Nomad refused job %s: %w", deref(job.ID), err)
	}
	registered, _, err := nomad.Jobs().Info(deref(job.ID), q)
	if err != nil {
		return Result{}, fmt.Errorf("cannot read job %s back: %w", deref(job.ID), err)
	}
	return Result{Version: deref(registered.Version)}, nil
}

// blueGreen is the update strategy that replaces n instances of tg: n
// canaries, promoted once all pass their checks, then the old instances
// stop. Nomad wants the progress deadline to cover every task's
// kill_timeout.
func blueGreen(n int, tg *nomadapi.TaskGroup) *nomadapi.UpdateStrategy {
	progress := ProgressDeadline
	for _, t := range tg.Tasks {
		if t.KillTimeout != nil {
			progress = max(progress, *t.KillTimeout+time.Minute)
		}
	}
	return &nomadapi.UpdateStrategy{
		MaxParallel:      &n,
		Canary:           &n,
		AutoPromote:      ptr(true),
		AutoRevert:       ptr(true),
		HealthCheck:      ptr("checks"),
		MinHealthyTime:   ptr(time.Duration(0)),
		HealthyDeadline:  ptr(HealthyDeadline),
		ProgressDeadline: ptr(progress),
	}
}

func updates(job *nomadapi.Job) []*nomadapi.UpdateStrategy {
	out := make([]*nomadapi.UpdateStrategy, len(job.TaskGroups))
	for i, tg := range job.TaskGroups {
		out[i] = tg.Update
	}
	return out
}

// awaitDeployment follows the deployment of the job's version with
// blocking queries until it ends.
func awaitDeployment(ctx context.Context, nomad *nomadapi.Client, jobID string, version uint64, q *nomadapi.QueryOptions) (*nomadapi.Deployment, error) {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var ended *nomadapi.Deployment
	watch.Loop[*nomadapi.Deployment]{
		What: "the deployment of " + jobID,
		Query: func(ctx context.Context, index uint64) (*nomadapi.Deployment, uint64, error) {
			bq := *q
			bq.WaitIndex, bq.WaitTime = index, 5*time.Second
			d, meta, err := nomad.Jobs().LatestDeployment(jobID, bq.WithContext(ctx))
			if err != nil {
				return nil, 0, err
			}
			return d, meta.LastIndex, nil
		},
		Apply: func(d *nomadapi.Deployment) {
			if d == nil || d.JobVersion < version {
				return // not created yet
			}
			switch d.Status {
			case nomadapi.DeploymentStatusSuccessful, nomadapi.DeploymentStatusFailed, nomadapi.DeploymentStatusCancelled:
				ended = d
				stop()
			}
		},
	}.Run(ctx)
	if ended == nil {
		return nil, fmt.Errorf("stopped waiting for the deployment of %s version %d, which still runs: %w", jobID, version, context.Cause(ctx))
	}
	return ended, nil
}

func short(id string) string { return id[:min(8, len(id))] }

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func ptr[T any](v T) *T { return &v }
