package schedules

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/auth"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/invoke"
)

// launchJobs is Nomad knowing one running launch of a schedule.
type launchJobs struct{ id string }

func (l launchJobs) Info(_ string, _ *nomadapi.QueryOptions) (*nomadapi.Job, *nomadapi.QueryMeta, error) {
	parent := nomadjob.SchedulePrefix + "nightly"
	status := "running"
	return &nomadapi.Job{ID: &l.id, ParentID: &parent, Status: &status, TaskGroups: []*nomadapi.TaskGroup{{Tasks: []*nomadapi.Task{{
		Env: map[string]string{protocol.EnvScheduleFunction: "report", protocol.EnvScheduleName: "nightly", protocol.EnvSchedulePayload: `{}`},
	}}}}}, nil, nil
}

// answering runs every invocation with the same answer.
type answering struct{ answer *invoke.HostAnswer }

func (a answering) Run(_ context.Context, _ *auth.Caller, _ string, _ []byte, _ bool) *invoke.Invocation {
	return &invoke.Invocation{Answer: a.answer, RequestID: "req-1"}
}

// Whoever presents a launch (a tenant who guessed its id first, say) learns
// whether the run happened and how it ended, never the function's answer.
func TestALaunchGetsNoFunctionOutput(t *testing.T) {
	id := nomadjob.SchedulePrefix + "nightly/periodic-1800000000"
	for _, a := range []*invoke.HostAnswer{
		{Status: http.StatusOK, Header: http.Header{}, Body: []byte(`{"secret":"the report"}`)},
		{Status: http.StatusOK, Header: http.Header{protocol.HeaderFunctionError: {"Unhandled"}, protocol.HeaderErrorType: {"ValueError"}},
			Body: []byte(`{"errorMessage":"secret in an error"}`)},
	} {
		runs := NewRuns(launchJobs{id}, answering{a}, "nomad")
		w := httptest.NewRecorder()
		runs.ServeHTTP(w, httptest.NewRequest(http.MethodPost, ScheduledRunPath, strings.NewReader(`{"launch":"`+id+`"}`)))
		if w.Code != http.StatusOK || strings.Contains(w.Body.String(), "secret") {
			t.Errorf("the launch got %d %s; want 200 and no output of the function", w.Code, w.Body)
		}
		if fe := a.Header.Get(protocol.HeaderFunctionError); fe != "" && (w.Header().Get(protocol.HeaderFunctionError) != fe || !strings.Contains(w.Body.String(), "ValueError")) {
			t.Errorf("a failed run: %v %s; want the failure named", w.Header(), w.Body)
		}
	}
}
