package rollout

import (
	"testing"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"
)

// Nomad refuses a group whose progress deadline is shorter than a task's
// kill_timeout: a function with a 15-minute timeout must still deploy.
func TestBlueGreenDeadlinesSuitNomad(t *testing.T) {
	for _, kill := range []time.Duration{8 * time.Second, 15*time.Minute + 5*time.Second} {
		tg := &nomadapi.TaskGroup{Tasks: []*nomadapi.Task{{KillTimeout: &kill}}}
		u := blueGreen(3, tg, DefaultHealthyDeadline)
		switch {
		case *u.Canary != 3 || *u.MaxParallel != 3:
			t.Errorf("3 instances to replace got %d canaries, max_parallel %d", *u.Canary, *u.MaxParallel)
		case !*u.AutoPromote || *u.HealthCheck != "checks":
			t.Errorf("canaries must be promoted once their checks pass: %+v", u)
		case *u.ProgressDeadline < kill:
			t.Errorf("progress deadline %s is shorter than the kill_timeout %s", *u.ProgressDeadline, kill)
		case *u.ProgressDeadline <= *u.HealthyDeadline:
			t.Errorf("progress deadline %s is not beyond the healthy deadline %s", *u.ProgressDeadline, *u.HealthyDeadline)
		}
	}
}
