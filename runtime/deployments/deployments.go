// Package deployments drives the aliases' progressive deployments
// (nimbus_alias's deployment block). It moves an alias's weights step by
// step and rolls back on the version's errors or latency; it does not
// route invocations (the invoke chain reads the state it writes) and it
// does not count them (Stats does).
package deployments

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/progressive"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/watch"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/registry"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/workers"
)

// Driver drives the aliases' deployments (nimbus_alias's deployment
// block): one worker per alias that shifts to a new version. A
// Consul session lock lets one gateway drive each; the state lives in
// Consul KV (kvstore.DeploymentKey), where every gateway reads the
// weights it routes by, and where the next holder of the lock, after a
// restart or a crash, resumes at the step it finds.
type Driver struct {
	consul   *consulapi.Client
	registry Registry
	stats    Stats
	jobs     Jobs
	log      *slog.Logger
	workers  *workers.Set[kvstore.AliasRecord]
}

// Registry is where the driver reads the functions and the deployment
// states every gateway routes by.
type Registry interface {
	Get(name string) (*registry.Function, bool)
	Deployment(function, alias string) (kvstore.DeploymentState, bool)
}

// Stats are the invocations of a published version (<name>:<n>) since a
// time, which the rollback conditions judge.
type Stats func(version string, since time.Time) progressive.Stats

// Jobs records each step as a scaling event of the version's job.
type Jobs interface {
	Scale(jobID, group string, count *int, message string, isError bool, meta map[string]interface{}, q *nomadapi.WriteOptions) (*nomadapi.JobRegisterResponse, *nomadapi.WriteMeta, error)
}

// deploymentTick is how often the driving gateway judges a deployment.
const deploymentTick = time.Second

// New returns a driver; jobs may be nil (no scaling events).
func New(c *consulapi.Client, reg Registry, stats Stats, jobs Jobs, log *slog.Logger) *Driver {
	return &Driver{consul: c, registry: reg, stats: stats, jobs: jobs, log: log, workers: workers.New[kvstore.AliasRecord]()}
}

// Sync drives the deploying aliases among aliases, and stops driving the
// others.
func (d *Driver) Sync(ctx context.Context, aliases map[string]kvstore.AliasRecord) {
	d.workers.Sync(ctx, aliases, kvstore.AliasRecord.Deploying, d.work)
}

func (d *Driver) work(ctx context.Context, w *workers.Worker[kvstore.AliasRecord]) {
	a := w.Def
	key := a.Function + "/" + a.Name
	log := d.log.With("alias", model.Qualify(a.Function, a.Name), "from", a.PreviousVersion, "to", a.FunctionVersion)
	spec, err := progressive.ParseSpec(*a.Deployment)
	if err != nil {
		// The provider refuses such a deployment at plan.
		problem := "the alias's deployment cannot run: " + err.Error()
		w.Problem.Store(&problem)
		log.Error("alias deployment refused", "problem", problem)
		<-ctx.Done()
		return
	}
	if st, ok := d.registry.Deployment(a.Function, a.Name); ok && st.ID == a.DeploymentID && st.Status != kvstore.DeploymentRunning {
		return // it ended before: nothing to drive, and no lock to hold
	}
	// Once the deployment ends, the lock is released and not taken again.
	wctx, ended := context.WithCancel(ctx)
	defer ended()
	workers.HoldLock(wctx, d.consul, kvstore.DeploymentLocksPrefix+key, "nimbus-gateway alias deployment "+key, log, func(ctx context.Context) {
		if d.drive(ctx, a, spec, log) {
			ended()
		}
	})
}

// drive runs the deployment from the state in KV (a new one from its first
// step) until it ends, and says whether it did (false: ctx ended first).
func (d *Driver) drive(ctx context.Context, a kvstore.AliasRecord, spec progressive.Spec, log *slog.Logger) bool {
	kv := d.consul.KV()
	key := kvstore.DeploymentKey(a.Function, a.Name)
	var st kvstore.DeploymentState
	for ctx.Err() == nil {
		pair, _, err := kv.Get(key, (&consulapi.QueryOptions{RequireConsistent: true}).WithContext(ctx))
		if err == nil {
			if pair != nil {
				st, err = kvstore.DecodeDeployment(pair.Value)
			}
			if err == nil {
				break
			}
		}
		log.Warn("cannot read the alias's deployment state; retrying", "err", err)
		watch.Sleep(ctx, time.Second)
	}
	if ctx.Err() != nil {
		return false
	}
	if st.ID != a.DeploymentID {
		st = progressive.Start(a, spec, time.Now())
		if !d.save(ctx, st, log) {
			return false
		}
		d.announce(ctx, st, log)
	} else if st.Status == kvstore.DeploymentRunning {
		log.Info("resuming the alias's deployment", "step", st.Step, "steps", st.Steps, "weight", st.Weight)
	}
	lastSaved := time.Now()
	for st.Status == kvstore.DeploymentRunning && ctx.Err() == nil {
		watch.Sleep(ctx, deploymentTick)
		now := time.Now()
		stats := d.stats(model.Qualify(a.Function, a.FunctionVersion), progressive.Since(st, spec, now))
		next, moved := progressive.Advance(st, spec, stats, now)
		// The observed figures are saved every few seconds, for GET
		// /v1/functions/{name}; a move at once.
		if !moved && now.Sub(lastSaved) < 5*time.Second {
			continue
		}
		if !d.save(ctx, next, log) {
			continue // judged again at the next tick
		}
		st, lastSaved = next, now
		if moved {
			d.announce(ctx, st, log)
		}
	}
	return st.Status != kvstore.DeploymentRunning
}

func (d *Driver) save(ctx context.Context, st kvstore.DeploymentState, log *slog.Logger) bool {
	if _, err := d.consul.KV().Put(&consulapi.KVPair{Key: kvstore.DeploymentKey(st.Function, st.Alias), Value: st.Encode()},
		(&consulapi.WriteOptions{}).WithContext(ctx)); err != nil {
		log.Warn("cannot save the alias's deployment state", "err", err)
		return false
	}
	return true
}

// announce logs a step and records it as a scaling event of the new
// version's job, where the Nomad UI shows it (the gateway may scale jobs,
// not register them, so it cannot write their meta).
func (d *Driver) announce(ctx context.Context, st kvstore.DeploymentState, log *slog.Logger) {
	msg := fmt.Sprintf("nimbus alias %s: step %d of %d, %.0f%% of its invocations to version %s (from %s)", st.Alias, st.Step, st.Steps, 100*st.Weight, st.To, st.From)
	switch st.Status {
	case kvstore.DeploymentSucceeded:
		msg = fmt.Sprintf("nimbus alias %s: deployment succeeded, all of its invocations to version %s", st.Alias, st.To)
		log.Info("alias deployment succeeded")
	case kvstore.DeploymentRolledBack:
		msg = fmt.Sprintf("nimbus alias %s: rolled back to version %s: %s", st.Alias, st.From, st.Reason)
		log.Warn("alias deployment rolled back", "reason", st.Reason)
	default:
		log.Info("alias deployment step", "step", st.Step, "steps", st.Steps, "weight", st.Weight)
	}
	f, ok := d.registry.Get(model.Qualify(st.Function, st.To))
	if !ok || d.jobs == nil {
		return
	}
	meta := map[string]interface{}{"nimbus.alias": st.Alias, "nimbus.deployment_step": st.Step, "nimbus.deployment_status": st.Status}
	// No count: Nomad records the event and changes nothing.
	if _, _, err := d.jobs.Scale(f.NomadJob(), nomadjob.GroupName, nil, msg, st.Status == kvstore.DeploymentRolledBack, meta,
		(&nomadapi.WriteOptions{Namespace: f.Namespace}).WithContext(ctx)); err != nil {
		log.Warn("cannot record the deployment step in Nomad", "err", err)
	}
}
