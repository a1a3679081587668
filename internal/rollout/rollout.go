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
// fails its checks fails the deployment, and the job is reverted to the
// version that was running, whose instances served throughout. Once the
// deployment succeeds, the job is registered again as it was rendered,
// max_parallel = 0, which changes no instance. Nomad refuses scale
// requests while the deployment runs, which the gateway waits out.
package rollout

import (
	"cmp"
	"context"
	"fmt"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/clients"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/watch"
)

// DefaultHealthyDeadline is how long a canary has to pass its checks. The
// deployment fails when no canary became healthy for twice as long (none
// could be placed, for example), or a minute more than the longest
// kill_timeout, which Nomad wants the progress deadline to cover.
const DefaultHealthyDeadline = 2 * time.Minute

// Options shape a registration.
type Options struct {
	// PreserveCounts keeps the instance counts of an existing job.
	PreserveCounts bool
	// HealthyDeadline is how long a canary has to pass its checks;
	// DefaultHealthyDeadline when 0.
	HealthyDeadline time.Duration
}

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
// (see the package doc), and returns once the new spec runs.
func Register(ctx context.Context, nomad *nomadapi.Client, job *nomadapi.Job, opts Options) (Result, error) {
	preserve := opts.PreserveCounts
	w := (&nomadapi.WriteOptions{Namespace: deref(job.Namespace), Region: deref(job.Region)}).WithContext(ctx)
	q := (&nomadapi.QueryOptions{Namespace: deref(job.Namespace), Region: deref(job.Region)}).WithContext(ctx)
	running, _, err := nomad.Jobs().Info(deref(job.ID), q)
	switch {
	case clients.NomadNotFound(err):
		running = nil
	case err != nil:
		return Result{}, fmt.Errorf("cannot read job %s: %w", deref(job.ID), err)
	}
	replaced, err := replacements(nomad, job, running, preserve, w)
	if err != nil {
		return Result{}, err
	}
	if replaced == 0 {
		return register(nomad, job, preserve, w, q)
	}

	rendered := updates(job)
	for _, tg := range job.TaskGroups {
		tg.Update = blueGreen(replaced, tg, cmp.Or(opts.HealthyDeadline, DefaultHealthyDeadline))
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
		return res, revert(nomad, running, res.Version, d, w, q)
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
func replacements(nomad *nomadapi.Client, job, running *nomadapi.Job, preserve bool, w *nomadapi.WriteOptions) (int, error) {
	if preserve && running != nil {
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

// revert puts back the version that ran before a deployment that failed.
// Nomad's own auto_revert needs a version marked stable by a deployment,
// and function jobs have none, so the revert is done here; its canaries
// stop, and the instances that ran all along serve on.
func revert(nomad *nomadapi.Client, running *nomadapi.Job, failed uint64, d *nomadapi.Deployment, w *nomadapi.WriteOptions, q *nomadapi.QueryOptions) error {
	if running == nil {
		return fmt.Errorf("Nomad's deployment %s of version %d ended %s: %s", short(d.ID), failed, d.Status, d.StatusDescription)
	}
	id := deref(running.ID)
	failure := fmt.Sprintf("Nomad's deployment %s of job %s version %d ended %s: %s", short(d.ID), id, failed, d.Status, d.StatusDescription)
	if _, _, err := nomad.Jobs().Revert(id, deref(running.Version), &failed, w, "", ""); err != nil {
		return fmt.Errorf("%s. Reverting the job to version %d, which ran before, failed too: %w; revert it with `nomad job revert %s %d`",
			failure, deref(running.Version), err, id, deref(running.Version))
	}
	now, _, err := nomad.Jobs().Info(id, q)
	if err != nil {
		return fmt.Errorf("%s. The job was reverted to version %d, which ran before", failure, deref(running.Version))
	}
	return fmt.Errorf("%s. The job was reverted to version %d, which ran before (now version %d), and its instances kept serving; "+
		"see why the new instances failed in the Nomad UI or with `nomad deployment status %s`",
		failure, deref(running.Version), deref(now.Version), short(d.ID))
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
// canaries, promoted once all pass their checks within healthy, then the
// old instances stop.
func blueGreen(n int, tg *nomadapi.TaskGroup, healthy time.Duration) *nomadapi.UpdateStrategy {
	progress := 2 * healthy
	for _, t := range tg.Tasks {
		if t.KillTimeout != nil {
			progress = max(progress, *t.KillTimeout+time.Minute)
		}
	}
	return &nomadapi.UpdateStrategy{
		MaxParallel:      &n,
		Canary:           &n,
		AutoPromote:      ptr(true),
		AutoRevert:       ptr(false), // see revert
		HealthCheck:      ptr("checks"),
		MinHealthyTime:   ptr(time.Duration(0)),
		HealthyDeadline:  ptr(healthy),
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
