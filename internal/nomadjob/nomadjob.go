// Package nomadjob renders a function's specification into the Nomad job
// that runs it. Rendering is a pure function, covered by golden files; a
// test submits the result to a real Nomad's validate endpoint.
//
// Shape of a function job, and why:
//
//   - One group "fn" whose count is min_instances, with a scaling block of
//     min and max, so the gateway's scale calls stay inside the limits.
//   - update { max_parallel = 0 }: Nomad creates no deployments, so a scale
//     request is never refused as "job scaling blocked due to active
//     deployment". Health gating of new versions moves to the provider,
//     which first runs the new version as a one-instance canary job
//     (RenderCanary) and only updates the function when the canary passes
//     its check. A change that replaces running instances is registered
//     blue/green for the time of one deployment (internal/rollout).
//   - The task's shutdown_delay (DrainDelay) and kill_timeout (the
//     function's timeout and 5 s) let a stopping instance be drained: the
//     gateway stops sending it requests, and it finishes those in flight.
//   - The exec driver runs nimbus-host from the read-only host volume
//     "nimbus-runtime", installed once per client: nothing is downloaded
//     per instance but the function's own code, which keeps cold starts
//     short, and the host's version is the operator's to manage.
//   - The code comes from the gateway's artifact store, and nimbus-host
//     fetches it itself (runtime/codefetch): the job names the package's
//     signed URL and sha256, and the host verifies the bytes before it
//     unpacks them, so a package altered in the store never runs. This
//     skips Nomad's go-getter subprocess, a fifth of a cold start. A
//     source_url, and the code of a function with egress "none" (whose
//     instance may open no connection, not even to the gateway), still come
//     through an artifact block with checksum = "sha256:<hex>", which Nomad
//     verifies.
//   - Each instance runs in its own network namespace, on the client's
//     Nimbus CNI network for the function's egress (internal/cninet):
//     nimbus-host listens on the namespace's interface, Consul and the
//     gateway reach it through the mapped port, and its Runtime API stays
//     on the namespace's loopback. Options.HostNetwork opts out, for
//     clusters without CNI.
//   - python3 and nodejs functions also mount the host's /usr read-only
//     (host volume "nimbus-usr") for their interpreter; provided and http
//     functions do not see it.
package nomadjob

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/cninet"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
)

// Names shared with the client configuration and the gateway.
const (
	JobPrefix         = model.JobPrefix
	CanaryPrefix      = "nimbus-canary-"
	GroupName         = "fn"
	TaskName          = "host"
	PortLabel         = "http"
	HostVolumeRuntime = "nimbus-runtime" // holds bin/nimbus-host
	HostVolumeUsr     = "nimbus-usr"     // the host's /usr, for interpreters
	RuntimeMount      = "/opt/nimbus"
	HostCommand       = RuntimeMount + "/bin/nimbus-host"
	CodeDir           = "local/function"
	ManagedBy         = "terraform-provider-nimbus"
)

// Meta keys shown in the Nomad UI.
const (
	MetaFunction = "nimbus.function"
	MetaRuntime  = "nimbus.runtime"
	MetaSource   = "nimbus.source_sha256"
	MetaMemory   = "nimbus.memory_mb"
	MetaTimeout  = "nimbus.timeout"
	MetaManaged  = "nimbus.managed_by"
	MetaNetwork  = "nimbus.network"
	MetaEgress   = "nimbus.egress"
	// MetaDescription is the function's description, where it has one.
	MetaDescription = "nimbus.description"
	// MetaSchedule names the schedule of a schedule's periodic job, whose
	// MetaFunction is the function it invokes.
	MetaSchedule = "nimbus.schedule"
)

// DrainDelay is how long a stopping instance keeps running after Nomad
// deregisters it from Consul, before Nomad signals it: the task's
// shutdown_delay. The gateway learns of the deregistration within it and
// sends the instance no new request, so that none reaches a host that is
// shutting down; then the host finishes the invocations in flight
// (KillTimeout).
const DrainDelay = 5 * time.Second

// ClientMaxKillTimeout is the max_kill_timeout the platform guide asks of
// every Nomad client. Nomad caps each task's kill_timeout at it (30 s by
// default), and a task still running then is killed: it must exceed every
// function's kill_timeout (KillTimeout, at most 15m5s) and the gateway
// job's (its drain, 16 m, and a margin).
const ClientMaxKillTimeout = 17 * time.Minute

// KillTimeout is how long Nomad lets a stopping instance finish the
// invocations in flight: the function's timeout, and a margin for the
// host to stop its handler.
func KillTimeout(f model.Function) time.Duration { return f.Timeout + 5*time.Second }

// JobID names a function's job.
func JobID(function string) string { return JobPrefix + function }

// ServiceName names a function's Consul service.
func ServiceName(function string) string { return JobPrefix + function }

// Source is where the function's code comes from.
type Source struct {
	// URL is the zip's URL: a signed URL of the gateway's
	// /v1/artifacts/sha256/<hex>, or a go-getter URL (source_url).
	URL    string
	SHA256 string
	// FromStore says URL is the gateway's artifact store, which
	// nimbus-host fetches from itself; otherwise Nomad's artifact block
	// fetches URL.
	FromStore bool
}

// Options are the deployment's settings beyond the function itself.
type Options struct {
	Namespace   string
	Region      string
	Datacenters []string // default: all ("*")
	// HostNetwork runs instances in the host's network namespace, for
	// clusters whose clients have no CNI: they can then reach the host's
	// ports and each other, and egress is not enforced.
	HostNetwork bool
}

// Network modes as MetaNetwork shows them.
const (
	NetworkIsolated = "isolated"
	NetworkHost     = "host"
)

// NetworkOf names the network mode of opts.
func NetworkOf(opts Options) string {
	if opts.HostNetwork {
		return NetworkHost
	}
	return NetworkIsolated
}

// Render returns the function's job.
func Render(f model.Function, src Source, opts Options) *api.Job {
	f = f.WithDefaults()
	id := JobID(f.Name)
	job := &api.Job{
		ID:          ptr(id),
		Name:        ptr(id),
		Type:        ptr(api.JobTypeService),
		Datacenters: datacenters(opts),
		Meta:        meta(f, src, opts),
	}
	if opts.Namespace != "" {
		job.Namespace = ptr(opts.Namespace)
	}
	if opts.Region != "" {
		job.Region = ptr(opts.Region)
	}
	tg := group(f, src, ServiceName(f.Name), f.MinInstances, opts)
	tg.Scaling = &api.ScalingPolicy{
		Min:     ptr(int64(f.MinInstances)),
		Max:     ptr(int64(f.MaxInstances)),
		Enabled: ptr(true),
		Type:    "horizontal",
	}
	job.TaskGroups = []*api.TaskGroup{tg}
	return job
}

// RenderCanary returns a one-instance job of the same version under its own
// name and service, which the provider runs to prove a new version healthy
// before it replaces the function's instances.
func RenderCanary(f model.Function, src Source, opts Options) *api.Job {
	job := Render(f, src, opts)
	id := CanaryPrefix + f.Name
	job.ID, job.Name = ptr(id), ptr(id)
	tg := job.TaskGroups[0]
	tg.Scaling = nil
	tg.Count = ptr(1)
	// A canary that fails is reported, not retried.
	tg.RestartPolicy = &api.RestartPolicy{Attempts: ptr(0), Mode: ptr("fail")}
	tg.ReschedulePolicy = &api.ReschedulePolicy{Attempts: ptr(0), Unlimited: ptr(false)}
	tg.Tasks[0].Services[0].Name = id
	tg.Tasks[0].Services[0].Tags = []string{"nimbus", "nimbus-canary"}
	// Nomad lets only the function's own job read its secrets, and the
	// canary is another job: it proves the code starts with each secret
	// variable set but empty.
	task := tg.Tasks[0]
	task.Templates = nil
	delete(task.Env, protocol.EnvSecrets)
	for name := range f.Secrets {
		task.Env[name] = ""
	}
	return job
}

func group(f model.Function, src Source, service string, count int, opts Options) *api.TaskGroup {
	volumes, mounts := hostVolumes(f.Runtime)
	task := &api.Task{
		Name:   TaskName,
		Driver: "exec",
		Config: hostConfig(),
		Env:    taskEnv(f, src, opts),
		Resources: &api.Resources{
			CPU:      ptr(f.EffectiveCPUMHz()),
			MemoryMB: ptr(f.MemoryMB),
		},
		Artifacts:    artifacts(src, hostFetches(f, src, opts)),
		VolumeMounts: mounts,
		Templates:    secretsTemplates(f),
		// The host drains invocations in flight on SIGTERM; let it. Nomad
		// caps this at the client's max_kill_timeout (30 s unless the
		// operator raises it; the platform guide says to).
		KillTimeout: ptr(KillTimeout(f)),
		// Deregistered, the instance runs on while the gateway stops
		// sending it requests (see DrainDelay).
		ShutdownDelay: DrainDelay,
		LogConfig:     &api.LogConfig{MaxFiles: ptr(5), MaxFileSizeMB: ptr(10)},
		Services: []*api.Service{{
			Name:      service,
			PortLabel: PortLabel,
			Provider:  "consul",
			Tags:      []string{"nimbus", "nimbus-fn", "runtime-" + f.Runtime},
			Meta:      map[string]string{"function": f.Name},
			Checks: []api.ServiceCheck{{
				Name:     "nimbus-host ready",
				Type:     "http",
				Path:     "/healthz",
				Interval: 2 * time.Second,
				Timeout:  time.Second,
			}},
		}},
	}
	return &api.TaskGroup{
		Name:  ptr(GroupName),
		Count: ptr(count),
		Networks: []*api.NetworkResource{{
			Mode:         networkMode(f, opts),
			DynamicPorts: []api.Port{{Label: PortLabel}},
		}},
		// No deployments, so scaling is never blocked (see the package doc).
		Update: &api.UpdateStrategy{MaxParallel: ptr(0)},
		RestartPolicy: &api.RestartPolicy{
			Attempts: ptr(3), Interval: ptr(time.Minute), Delay: ptr(time.Second), Mode: ptr("delay"),
		},
		EphemeralDisk: &api.EphemeralDisk{SizeMB: ptr(150)},
		Volumes:       volumes,
		Tasks:         []*api.Task{task},
	}
}

// hostConfig is the exec driver's configuration of every nimbus-host
// task. Nomad gives an exec task a default set of capabilities as ambient
// ones (CHOWN, DAC_OVERRIDE, SETUID, MKNOD, ...), with which a handler
// running as nobody could setuid(0). nimbus-host needs none of them: it
// only listens on an unprivileged port and starts the handler.
func hostConfig() map[string]interface{} {
	return map[string]interface{}{"command": HostCommand, "cap_drop": []string{"all"}}
}

// hostFetches says whether nimbus-host fetches the package itself: a
// package of the store, on a network that lets the instance reach the
// gateway. An isolated instance with egress "none" opens no connection at
// all, not even to the gateway's function listener, so Nomad fetches its
// code as it fetches a source_url.
func hostFetches(f model.Function, src Source, opts Options) bool {
	return src.FromStore && (opts.HostNetwork || f.Egress != model.EgressNone)
}

// artifacts has Nomad fetch the code, verified by its checksum, unless the
// host fetches it.
func artifacts(src Source, hostFetches bool) []*api.TaskArtifact {
	if hostFetches {
		return nil
	}
	return []*api.TaskArtifact{{
		GetterSource: ptr(src.URL),
		GetterOptions: map[string]string{
			"checksum": "sha256:" + src.SHA256,
			"archive":  "zip",
		},
		RelativeDest: ptr(CodeDir),
	}}
}

func networkMode(f model.Function, opts Options) string {
	if opts.HostNetwork {
		return "host"
	}
	return cninet.Mode(f.Egress)
}

// hostVolumes are the host volumes nimbus-host needs for a runtime: its
// own binary, and the host's /usr for python3 and nodejs interpreters.
func hostVolumes(runtime string) (map[string]*api.VolumeRequest, []*api.VolumeMount) {
	volumes := map[string]*api.VolumeRequest{
		"runtime": {Name: "runtime", Type: "host", Source: HostVolumeRuntime, ReadOnly: true},
	}
	mounts := []*api.VolumeMount{{Volume: ptr("runtime"), Destination: ptr(RuntimeMount), ReadOnly: ptr(true)}}
	if needsInterpreter(runtime) {
		volumes["usr"] = &api.VolumeRequest{Name: "usr", Type: "host", Source: HostVolumeUsr, ReadOnly: true}
		mounts = append(mounts, &api.VolumeMount{Volume: ptr("usr"), Destination: ptr("/usr"), ReadOnly: ptr(true)})
	}
	return volumes, mounts
}

// hostEnv is what every nimbus-host task gets, a function's or a warm
// pool's: where it listens, where it reaches the gateway, its key file and
// its runtime's interpreter.
func hostEnv(runtime string, opts Options) map[string]string {
	e := map[string]string{
		// Where the function reaches the gateway, as the client's operator
		// set it; nimbus-host hands it to the handler.
		protocol.EnvGatewayForFunctions: "${meta." + protocol.NodeMetaGatewayURL + "}",
		// The host's key, which only the gateway reads (through Nomad).
		protocol.EnvInstanceKeyFile: "${NOMAD_TASK_DIR}/" + protocol.InstanceKeyFile,
	}
	if !opts.HostNetwork {
		// The gateway's connections arrive on the namespace's interface,
		// through the mapped port.
		e[protocol.EnvListen] = "0.0.0.0:${NOMAD_PORT_" + PortLabel + "}"
	}
	switch runtime {
	case model.RuntimePython:
		e[protocol.EnvPython] = "/usr/bin/python3"
	case model.RuntimeNode:
		e[protocol.EnvNode] = "/usr/bin/node"
	}
	return e
}

// taskEnv is the environment of a function's nimbus-host task.
func taskEnv(f model.Function, src Source, opts Options) map[string]string {
	e := hostEnv(f.Runtime, opts)
	protocol.SetFunctionVariables(e, f.Environment)
	e[protocol.EnvFunctionName] = f.Name
	e[protocol.EnvRuntime] = f.Runtime
	e[protocol.EnvHandler] = f.Handler
	e[protocol.EnvMemoryMB] = strconv.Itoa(f.MemoryMB)
	e[protocol.EnvTimeout] = f.Timeout.String()
	e[protocol.EnvBillingGranularity] = f.BillingGranularity.String()
	e[protocol.EnvConcurrency] = strconv.Itoa(f.Concurrency)
	protocol.SetSecretRefs(e, f.Secrets)
	if hostFetches(f, src, opts) {
		e[protocol.EnvPackageURL] = src.URL
		e[protocol.EnvPackageSHA256] = src.SHA256
	}
	return e
}

// EnvDigest is a digest of a task's environment, the same for the same
// variables in any order.
func EnvDigest(env map[string]string) string {
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		// NUL ends each name and value: no variable holds one.
		fmt.Fprintf(h, "%s\x00%s\x00", k, env[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// secretsTemplates renders the function's secrets from Nomad Variables
// into the task's secrets dir at start, with the job's own workload
// identity: the job spec holds only paths and keys. Each referenced
// variable renders whole (JSON path → key → value) and nimbus-host picks
// the keys, so a missing key is reported by name rather than rendered
// empty. Running instances keep the values they started with
// (change_mode noop); new instances read the current ones.
func secretsTemplates(f model.Function) []*api.Template {
	if len(f.Secrets) == 0 {
		return nil
	}
	paths := map[string]bool{}
	for _, ref := range f.Secrets {
		paths[ref.Path] = true
	}
	sorted := make([]string, 0, len(paths))
	for p := range paths {
		sorted = append(sorted, p)
	}
	sort.Strings(sorted)
	var b strings.Builder
	b.WriteString("{")
	for i, p := range sorted {
		if i > 0 {
			b.WriteString(",")
		}
		q := strconv.Quote(p)
		fmt.Fprintf(&b, "\n%s: {{ with nomadVar %s }}{ {{- range $i, $t := .Tuples }}{{ if $i }}, {{ end }}{{ $t.K | toJSON }}: {{ $t.V | toJSON }}{{ end -}} }{{ end }}", q, q)
	}
	b.WriteString("\n}\n")
	return []*api.Template{{
		EmbeddedTmpl: ptr(b.String()),
		DestPath:     ptr("secrets/" + protocol.SecretsFile),
		ChangeMode:   ptr("noop"),
		Perms:        ptr("0400"),
		// The task runs as nobody; only it may read the file.
		Uid: ptr(65534),
		Gid: ptr(65534),
	}}
}

func meta(f model.Function, src Source, opts Options) map[string]string {
	m := map[string]string{
		MetaNetwork:  NetworkOf(opts),
		MetaEgress:   f.Egress,
		MetaFunction: f.Name,
		MetaRuntime:  f.Runtime,
		MetaSource:   src.SHA256,
		MetaMemory:   strconv.Itoa(f.MemoryMB),
		MetaTimeout:  f.Timeout.String(),
		MetaManaged:  ManagedBy,
	}
	if f.Description != "" {
		m[MetaDescription] = f.Description
	}
	return m
}

func needsInterpreter(runtime string) bool {
	return runtime == model.RuntimePython || runtime == model.RuntimeNode
}

func datacenters(opts Options) []string {
	if len(opts.Datacenters) > 0 {
		return opts.Datacenters
	}
	return []string{"*"}
}

// InstanceKeyPath is where a function instance's host keeps its key,
// relative to the allocation's directory: the task's local directory, as
// the job's NIMBUS_INSTANCE_KEY_FILE names it from inside the task.
const InstanceKeyPath = TaskName + "/local/" + protocol.InstanceKeyFile

// ArtifactSource is the URL a function's job fetches its code from (the
// host's package URL, or the artifact block's); empty for a nil job or
// another shape.
func ArtifactSource(job *api.Job) string {
	if job == nil || len(job.TaskGroups) == 0 || len(job.TaskGroups[0].Tasks) == 0 {
		return ""
	}
	if u := job.TaskGroups[0].Tasks[0].Env[protocol.EnvPackageURL]; u != "" {
		return u
	}
	for _, a := range job.TaskGroups[0].Tasks[0].Artifacts {
		if a != nil && a.GetterSource != nil {
			return *a.GetterSource
		}
	}
	return ""
}

// ArtifactURL is the gateway's address of a package.
func ArtifactURL(gatewayURL, sha256 string) string {
	return fmt.Sprintf("%s/v1/artifacts/sha256/%s", strings.TrimRight(gatewayURL, "/"), sha256)
}

func ptr[T any](v T) *T { return &v }

// Record is the function's record in Consul KV, which the gateway
// follows, for the job Render makes of the same function, source and
// options; reserved is its reserved concurrency (0: none).
func Record(f model.Function, src Source, opts Options, reserved int) kvstore.FunctionRecord {
	f = f.WithDefaults()
	return kvstore.FunctionRecord{
		Name: f.Name, Namespace: opts.Namespace, JobID: JobID(f.Name), Service: ServiceName(f.Name),
		Runtime: f.Runtime, Handler: f.Handler, MemoryMB: f.MemoryMB, CPUMHz: f.EffectiveCPUMHz(),
		Timeout: f.Timeout.String(), Concurrency: f.Concurrency, MinInstances: f.MinInstances, MaxInstances: f.MaxInstances,
		IdleTimeout: f.IdleTimeout.String(), BillingGranularity: f.BillingGranularity.String(), SourceSHA256: src.SHA256,
		Description: f.Description, ReservedConcurrency: reserved, Network: NetworkOf(opts), Egress: f.Egress,
		EnvSHA256: EnvDigest(taskEnv(f, src, opts)),
	}
}

// HasNimbusNetworks reports whether a node (listed with resources) offers
// the Nimbus CNI networks that isolated function instances join.
func HasNimbusNetworks(n *api.NodeListStub) bool {
	if n.NodeResources == nil {
		return false
	}
	found := map[string]bool{}
	for _, net := range n.NodeResources.Networks {
		found[net.Mode] = true
	}
	return found[cninet.Mode(model.EgressPublic)] && found[cninet.Mode(model.EgressNone)]
}

// ExecDriverHealthy reports whether a node's exec driver, which every
// Nimbus job uses, can run tasks.
func ExecDriverHealthy(n *api.NodeListStub) bool {
	d := n.Drivers["exec"]
	return d != nil && d.Detected && d.Healthy
}
