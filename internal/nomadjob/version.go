package nomadjob

import (
	"strconv"

	"github.com/hashicorp/nomad/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
)

// MetaVersion is the published version a version's job runs.
const MetaVersion = "nimbus.version"

// VersionJobID names the job of a function's published version n.
func VersionJobID(function string, n int) string {
	return JobPrefix + function + "-v" + strconv.Itoa(n)
}

// RenderVersion returns the job of a function's published version n: the
// function's job as Render makes it, under its own name and service, so
// that it scales to zero and back on its own and shows as such in the
// Nomad UI. A version never changes once published, so its job is
// registered once and never rolled out.
func RenderVersion(f model.Function, src Source, opts Options, n int) *api.Job {
	f = f.WithDefaults()
	f.Environment = withVersion(f.Environment, n)
	// Provisioned instances belong to the function's $LATEST: a version
	// starts at zero and the gateway scales it on demand.
	f.MinInstances = 0
	job := Render(f, src, opts)
	id := VersionJobID(f.Name, n)
	job.ID, job.Name = ptr(id), ptr(id)
	job.Meta[MetaVersion] = strconv.Itoa(n)
	tg := job.TaskGroups[0]
	tg.Tasks[0].Services[0].Name = id
	return job
}

// VersionRecord is the immutable record of a function's published version
// n in Consul KV, for the job RenderVersion makes.
func VersionRecord(f model.Function, src Source, opts Options, n int) kvstore.FunctionRecord {
	f = f.WithDefaults()
	f.Environment = withVersion(f.Environment, n)
	f.MinInstances = 0
	rec := Record(f, src, opts, 0)
	rec.JobID, rec.Service, rec.Version = VersionJobID(f.Name, n), VersionJobID(f.Name, n), strconv.Itoa(n)
	return rec
}

// withVersion is env with the host told its version, which it reports to
// the handler as AWS_LAMBDA_FUNCTION_VERSION and in its log lines.
func withVersion(env map[string]string, n int) map[string]string {
	out := make(map[string]string, len(env)+1)
	for k, v := range env {
		out[k] = v
	}
	out[protocol.EnvFunctionVersion] = strconv.Itoa(n)
	return out
}
