package nomadjob

import (
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/cninet"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
)

// SchedulePrefix names schedule jobs.
const SchedulePrefix = "nimbus-sched-"

// ScheduleJobID names a schedule's periodic job.
func ScheduleJobID(name string) string { return SchedulePrefix + name }

// RenderSchedule returns a schedule's periodic batch job: Nomad launches
// it on the cron (so operators see every run in the Nomad UI), never two at
// once, and its task is nimbus-gateway's small `invoke` command, sandboxed
// like a function, which calls the gateway's invoke API with the scheduled
// event and retries so that a gateway restart does not lose the tick.
//
// A run is confined like a function instance with public egress: in its
// own namespace on the Nimbus network, it reaches the gateway only at the
// function listener (the client's nimbus.gateway_url), which serves the
// invoke API and nothing else. With host networking it calls gatewayURL.
func RenderSchedule(s model.Schedule, gatewayURL string, opts Options) (*api.Job, error) {
	spec, err := s.CronSpec()
	if err != nil {
		return nil, err
	}
	id := ScheduleJobID(s.Name)
	job := &api.Job{
		ID:          ptr(id),
		Name:        ptr(id),
		Type:        ptr(api.JobTypeBatch),
		Datacenters: datacenters(opts),
		Meta: map[string]string{
			MetaSchedule: s.Name,
			MetaFunction: s.Function,
			MetaManaged:  ManagedBy,
		},
		Periodic: &api.PeriodicConfig{
			Enabled:         ptr(s.Enabled),
			Spec:            ptr(spec),
			SpecType:        ptr(api.PeriodicSpecCron),
			ProhibitOverlap: ptr(true),
		},
	}
	if s.TimeZone != "" {
		job.Periodic.TimeZone = ptr(s.TimeZone)
	}
	if opts.Namespace != "" {
		job.Namespace = ptr(opts.Namespace)
	}
	if opts.Region != "" {
		job.Region = ptr(opts.Region)
	}
	network := &api.NetworkResource{Mode: "host"}
	if !opts.HostNetwork {
		network.Mode = cninet.Mode(model.EgressPublic)
		gatewayURL = "${meta." + protocol.NodeMetaGatewayURL + "}"
	}
	env := map[string]string{
		protocol.EnvGatewayURL:       gatewayURL,
		protocol.EnvScheduleFunction: s.Function,
		protocol.EnvScheduleName:     s.Name,
		protocol.EnvSchedulePayload:  s.Payload,
	}
	task := &api.Task{
		Name:         "invoke",
		Driver:       "exec",
		Config:       map[string]interface{}{"command": RuntimeMount + "/bin/nimbus-gateway", "args": []string{"invoke"}},
		Env:          env,
		Resources:    &api.Resources{CPU: ptr(100), MemoryMB: ptr(64)},
		VolumeMounts: []*api.VolumeMount{{Volume: ptr("runtime"), Destination: ptr(RuntimeMount), ReadOnly: ptr(true)}},
		LogConfig:    &api.LogConfig{MaxFiles: ptr(2), MaxFileSizeMB: ptr(5)},
	}
	job.TaskGroups = []*api.TaskGroup{{
		Name:     ptr("invoke"),
		Count:    ptr(1),
		Networks: []*api.NetworkResource{network},
		Volumes: map[string]*api.VolumeRequest{
			"runtime": {Name: "runtime", Type: "host", Source: HostVolumeRuntime, ReadOnly: true},
		},
		// The invoker retries on its own; a failed run is reported, not rerun.
		RestartPolicy:    &api.RestartPolicy{Attempts: ptr(0), Mode: ptr("fail")},
		ReschedulePolicy: &api.ReschedulePolicy{Attempts: ptr(0), Unlimited: ptr(false)},
		EphemeralDisk:    &api.EphemeralDisk{SizeMB: ptr(20)},
		Tasks:            []*api.Task{task},
	}}
	job.TaskGroups[0].Tasks[0].KillTimeout = ptr(10 * time.Second)
	return job, nil
}
