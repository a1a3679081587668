// Package schedules delivers the runs of nimbus_schedule: the client half
// that each launch (a Nomad periodic job's child) runs to deliver its
// event to its node's gateway, and the gateway's half that confirms the
// launch with Nomad and runs the function once per launch. It invokes
// through an Invoker.
package schedules

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/auth"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/instances"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/invoke"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/refusal"
)

// ScheduledRunPath is where a schedule's launch delivers its run.
const ScheduledRunPath = "/v1/scheduled-runs"

// scheduledRunRequest names the launch that delivers: Nomad's periodic
// child job.
type scheduledRunRequest struct {
	Launch    string `json:"launch"`
	Namespace string `json:"namespace,omitempty"`
}

// launches remembers the launches delivered, so each runs its function
// once however often it is presented.
type launches struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

// claim marks a launch delivered; false when it was already.
func (l *launches) claim(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen == nil {
		l.seen = map[string]time.Time{}
	}
	if _, ok := l.seen[id]; ok {
		return false
	}
	now := time.Now()
	for k, t := range l.seen {
		if now.Sub(t) > 24*time.Hour {
			delete(l.seen, k)
		}
	}
	l.seen[id] = now
	return true
}

// unclaim forgets a launch whose run never started, so its retry runs.
func (l *launches) unclaim(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.seen, id)
}

// Jobs reads a launch's job from Nomad.
type Jobs interface {
	Info(jobID string, q *nomadapi.QueryOptions) (*nomadapi.Job, *nomadapi.QueryMeta, error)
}

// Invoker runs an invocation through the gateway's chain.
type Invoker interface {
	Run(ctx context.Context, c *auth.Caller, target string, payload []byte, tail bool) *invoke.Invocation
}

// Runs serves the scheduled runs that launches deliver.
type Runs struct {
	jobs         Jobs
	invoker      Invoker
	nomadAddress string
	launches     launches
}

// NewRuns returns the gateway's half of scheduled runs; nomadAddress names
// Nomad in answers about it.
func NewRuns(jobs Jobs, inv Invoker, nomadAddress string) *Runs {
	return &Runs{jobs: jobs, invoker: inv, nomadAddress: nomadAddress}
}

// ServeHTTP runs a schedule's launch. A launch holds no key: the
// launch itself is the credential. Nomad must know it as a running child
// of a Nimbus schedule's periodic job, and the event (function, payload)
// comes from that job, not from the request: whoever presents a launch can
// at most deliver, once, the run Nomad started anyway.
func (g *Runs) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req scheduledRunRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil || req.Launch == "" {
		refusal.Write(w, refusal.Native, refusal.New(http.StatusBadRequest, protocol.ErrInvalidRequest, `the body must be {"launch": "<periodic child job id>"}`))
		return
	}
	run, refused := g.scheduledLaunch(r.Context(), req)
	if refused != nil {
		refusal.Write(w, refusal.Native, refused)
		return
	}
	event, err := run.Event()
	if err != nil {
		refusal.Write(w, refusal.Native, refusal.New(http.StatusBadRequest, protocol.ErrInvalidRequest, err.Error()))
		return
	}
	if !g.launches.claim(req.Namespace + "/" + req.Launch) {
		refusal.Write(w, refusal.Native, refusal.New(http.StatusConflict, "AlreadyDelivered", "launch "+req.Launch+" was delivered already; each launch runs its function once"))
		return
	}
	inv := g.invoker.Run(r.Context(), auth.Internal("schedule "+run.Schedule), run.Function, event, false)
	if inv.Refused != nil && (inv.Refused.Status == http.StatusTooManyRequests || inv.Refused.Status == http.StatusServiceUnavailable) {
		g.launches.unclaim(req.Namespace + "/" + req.Launch) // never started: its retry may run
	}
	writeOutcome(w, inv)
}

// scheduledLaunch confirms a launch with Nomad and reads its run.
func (g *Runs) scheduledLaunch(ctx context.Context, req scheduledRunRequest) (ScheduledRun, *refusal.Error) {
	callCtx, cancel := context.WithTimeout(ctx, instances.ControlPlaneTimeout)
	defer cancel()
	job, _, err := g.jobs.Info(req.Launch, (&nomadapi.QueryOptions{Namespace: req.Namespace}).WithContext(callCtx))
	if err != nil {
		if strings.Contains(err.Error(), "404") {
			return ScheduledRun{}, refusal.AccessDenied("Nomad knows no launch " + req.Launch + ": only a schedule's running launch may deliver its run")
		}
		return ScheduledRun{}, refusal.New(http.StatusServiceUnavailable, "ServiceException",
			fmt.Sprintf("cannot confirm the launch with Nomad at %s: %v; retry later", g.nomadAddress, err))
	}
	parent := deref(job.ParentID)
	if !strings.HasPrefix(parent, nomadjob.SchedulePrefix) || !strings.HasPrefix(deref(job.ID), parent+"/periodic-") ||
		len(job.TaskGroups) != 1 || len(job.TaskGroups[0].Tasks) != 1 {
		return ScheduledRun{}, refusal.AccessDenied(req.Launch + " is not a launch of a Nimbus schedule")
	}
	if status := deref(job.Status); status == "dead" {
		return ScheduledRun{}, refusal.AccessDenied("launch " + req.Launch + " has ended; a launch delivers only while it runs")
	}
	env := job.TaskGroups[0].Tasks[0].Env
	return ScheduledRun{
		Function: env[protocol.EnvScheduleFunction], Schedule: env[protocol.EnvScheduleName],
		Payload: env[protocol.EnvSchedulePayload], LaunchID: req.Launch, Launched: LaunchTime(req.Launch),
	}, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// writeOutcome tells the launch what became of its run, never the
// function's answer: whoever presents a launch learns whether the run
// happened and how it ended, and no more. The function's output stays in
// its logs, as a scheduled Lambda's does.
func writeOutcome(w http.ResponseWriter, inv *invoke.Invocation) {
	if inv.Refused != nil {
		refusal.Write(w, refusal.Native, inv.Refused)
		return
	}
	a := inv.Answer
	outcome := map[string]any{"status": a.Status, "request_id": inv.RequestID, "version": inv.ExecutedVersion()}
	if fe := a.Header.Get(protocol.HeaderFunctionError); fe != "" {
		w.Header().Set(protocol.HeaderFunctionError, fe)
		outcome["function_error"], outcome["error_type"] = fe, a.Header.Get(protocol.HeaderErrorType)
	}
	status := a.Status
	if status == http.StatusOK && inv.Out.ErrorType == protocol.ErrTimeout {
		status = http.StatusGatewayTimeout
	}
	refusal.WriteJSON(w, status, outcome)
}
