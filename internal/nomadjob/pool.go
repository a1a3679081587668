package nomadjob

import (
	"strconv"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
)

// PoolGroupName is the group of a warm pool's job.
const PoolGroupName = "pool"

// Meta keys of a pool's job.
const (
	MetaPoolRuntime = "nimbus.pool_runtime"
	MetaPoolMemory  = "nimbus.pool_memory_mb"
)

// RenderPool returns a warm pool's job: Size instances of nimbus-host in
// the sandbox a function of the pool's runtime and memory class gets
// (exec, the same volumes, its own namespace on the Nimbus network with
// public egress, since it fetches the package it is handed), each waiting
// for the gateway to hand it a function.
//
// A pool instance must never serve a second function nor reuse a task
// directory: its task is never restarted in place (restart attempts 0),
// and the gateway releases a specialised instance by stopping its
// allocation, which Nomad replaces with a fresh one.
func RenderPool(p model.Pool, opts Options) *api.Job {
	f := model.Function{Name: "pool", Runtime: p.Runtime, MemoryMB: p.MemoryMB, Egress: model.EgressPublic}.WithDefaults()
	id := p.JobID()
	volumes, mounts := hostVolumes(p.Runtime)
	env := hostEnv(p.Runtime, opts)
	env[protocol.EnvPoolRuntime] = p.Runtime
	env[protocol.EnvMemoryMB] = strconv.Itoa(p.MemoryMB)
	task := &api.Task{
		Name:         TaskName,
		Driver:       "exec",
		Config:       hostConfig(),
		Env:          env,
		Resources:    &api.Resources{CPU: ptr(f.EffectiveCPUMHz()), MemoryMB: ptr(p.MemoryMB)},
		VolumeMounts: mounts,
		// A specialised instance drains its invocation on SIGTERM, within
		// the clients' max_kill_timeout.
		KillTimeout: ptr(30 * time.Second),
		LogConfig:   &api.LogConfig{MaxFiles: ptr(5), MaxFileSizeMB: ptr(10)},
		Services: []*api.Service{{
			Name:      id,
			PortLabel: PortLabel,
			Provider:  "consul",
			Tags:      []string{"nimbus", "nimbus-pool", "runtime-" + p.Runtime},
			Meta:      map[string]string{"pool": id},
			Checks: []api.ServiceCheck{{
				Name: "nimbus-host pooled", Type: "http", Path: "/healthz", Interval: 2 * time.Second, Timeout: time.Second,
			}},
		}},
	}
	tg := &api.TaskGroup{
		Name:     ptr(PoolGroupName),
		Count:    ptr(p.Size),
		Networks: []*api.NetworkResource{{Mode: networkMode(f, opts), DynamicPorts: []api.Port{{Label: PortLabel}}}},
		Update:   &api.UpdateStrategy{MaxParallel: ptr(0)},
		// Never in place: a new life is a new allocation.
		RestartPolicy:    &api.RestartPolicy{Attempts: ptr(0), Mode: ptr("fail")},
		ReschedulePolicy: &api.ReschedulePolicy{Unlimited: ptr(true), Delay: ptr(5 * time.Second), DelayFunction: ptr("constant")},
		EphemeralDisk:    &api.EphemeralDisk{SizeMB: ptr(150)},
		Volumes:          volumes,
		Tasks:            []*api.Task{task},
	}
	job := &api.Job{
		ID: ptr(id), Name: ptr(id), Type: ptr(api.JobTypeService), Datacenters: datacenters(opts),
		Meta: map[string]string{
			MetaPoolRuntime: p.Runtime, MetaPoolMemory: strconv.Itoa(p.MemoryMB),
			MetaNetwork: NetworkOf(opts), MetaManaged: ManagedBy,
		},
		TaskGroups: []*api.TaskGroup{tg},
	}
	if opts.Namespace != "" {
		job.Namespace = ptr(opts.Namespace)
	}
	if opts.Region != "" {
		job.Region = ptr(opts.Region)
	}
	return job
}

// PoolRecord is the pool's record in Consul KV, which the gateway follows.
func PoolRecord(p model.Pool, opts Options) kvstore.PoolRecord {
	return kvstore.PoolRecord{JobID: p.JobID(), Namespace: opts.Namespace, Runtime: p.Runtime, MemoryMB: p.MemoryMB, Size: p.Size, Network: NetworkOf(opts)}
}
