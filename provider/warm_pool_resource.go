package provider

import (
	"context"
	"fmt"
	"strconv"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
)

var (
	_ resource.ResourceWithConfigure   = (*warmPoolResource)(nil)
	_ resource.ResourceWithImportState = (*warmPoolResource)(nil)
)

func newWarmPoolResource() resource.Resource { return &warmPoolResource{} }

// warmPoolResource is nimbus_warm_pool: instances of nimbus-host kept
// running without a function, which the gateway hands to a function on a
// cold start (runtime/gateway/warmpool.go).
type warmPoolResource struct {
	withProviderData
}

type warmPoolModel struct {
	ID       types.String `tfsdk:"id"`
	Runtime  types.String `tfsdk:"runtime"`
	MemoryMB types.Int64  `tfsdk:"memory_mb"`
	Size     types.Int64  `tfsdk:"size"`
	JobID    types.String `tfsdk:"job_id"`
}

func (m warmPoolModel) pool() model.Pool {
	return model.Pool{Runtime: m.Runtime.ValueString(), MemoryMB: int(m.MemoryMB.ValueInt64()), Size: int(m.Size.ValueInt64())}
}

func (r *warmPoolResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_warm_pool"
}

func (r *warmPoolResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "A warm pool: `size` instances of nimbus-host for one runtime and memory class, running without a " +
			"function as the Nomad job `nimbus-pool-<runtime>-<memory_mb>`, in the same sandbox as functions. On a cold start " +
			"the gateway hands an idle instance the function (its package, handler, timeout, memory size and environment), " +
			"which answers while the function's own instance starts; then the gateway stops the instance's allocation and " +
			"Nomad starts a fresh one in its place, so an instance never serves a second function. A function is served " +
			"from the smallest pool of its runtime whose `memory_mb` is at least its own; the instance holds it to its own " +
			"`memory_mb`. Functions with `secrets`, with `egress = \"none\"` or with a `source_url` are never served from a " +
			"pool. Removing the resource removes the job.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "The pool's Nomad job id, `nimbus-pool-<runtime>-<memory_mb>`.",
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"runtime": schema.StringAttribute{
				Required:            true,
				MarkdownDescription: "The runtime of the functions the pool serves: `provided`, `python3` or `nodejs`. Changing it replaces the pool.",
				Validators:          []validator.String{stringvalidator.OneOf(model.PoolRuntimes...)},
				PlanModifiers:       []planmodifier.String{stringplanmodifier.RequiresReplace()},
			},
			"memory_mb": schema.Int64Attribute{
				Required: true,
				MarkdownDescription: "The memory class: each instance's memory in MB. It serves functions of the runtime whose " +
					"`memory_mb` is at most this. Changing it replaces the pool.",
				Validators:    []validator.Int64{int64validator.Between(model.MinMemoryMB, model.MaxMemoryMB)},
				PlanModifiers: []planmodifier.Int64{int64planmodifier.RequiresReplace()},
			},
			"size": schema.Int64Attribute{
				Required:            true,
				MarkdownDescription: "How many idle instances to keep: how many cold starts at once the pool serves. Each holds `memory_mb` on a client.",
				Validators:          []validator.Int64{int64validator.Between(model.MinPoolSize, model.MaxPoolSize)},
			},
			"job_id": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "The Nomad job that runs the pool.",
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
		},
	}
}

func (r *warmPoolResource) options() nomadjob.Options {
	return nomadjob.Options{Namespace: r.data.Settings.Nomad.Namespace, Region: r.data.Settings.Nomad.Region, HostNetwork: r.data.Settings.HostNetwork}
}

// write registers the pool's job and its record, then waits until its
// instances pass their checks. A pool that does not start is removed
// again, with its instances' events in the error.
func (r *warmPoolResource) write(ctx context.Context, m *warmPoolModel, creating bool) diag.Diagnostics {
	var diags diag.Diagnostics
	p := m.pool()
	if err := p.Validate(); err != nil {
		diags.AddError("Invalid warm pool", err.Error())
		return diags
	}
	job := nomadjob.RenderPool(p, r.options())
	if creating {
		existing, found, err := r.data.liveJob(ctx, *job.ID)
		if err != nil {
			diags.AddError("Cannot reach Nomad", err.Error())
			return diags
		}
		if found && existing.Meta[nomadjob.MetaManaged] != nomadjob.ManagedBy {
			diags.AddAttributeError(path.Root("runtime"), "A Nomad job with this name exists",
				fmt.Sprintf("Job %s exists and is not managed by Nimbus. Stop and purge it, or choose another memory_mb.", *job.ID))
			return diags
		}
	}
	if _, _, err := r.data.Nomad.Jobs().Register(job, r.data.nomadWrite(ctx)); err != nil {
		diags.AddError("Nomad refused the warm pool's job", err.Error())
		return diags
	}
	rec := nomadjob.PoolRecord(p, r.options())
	if _, err := r.data.Consul.KV().Put(&consulapi.KVPair{Key: kvstore.PoolKey(rec.JobID), Value: rec.Encode()}, (&consulapi.WriteOptions{}).WithContext(ctx)); err != nil {
		diags.AddError("Cannot write the warm pool's record to Consul KV", err.Error())
		return diags
	}
	if err := r.waitHealthy(ctx, rec.JobID, p.Size); err != nil {
		if creating {
			r.remove(ctx, rec.JobID, &diags)
		}
		diags.AddError("The warm pool's instances did not become healthy", err.Error())
		return diags
	}
	m.ID, m.JobID = types.StringValue(rec.JobID), types.StringValue(rec.JobID)
	return diags
}

// waitHealthy waits until size instances of the pool pass their checks.
func (r *warmPoolResource) waitHealthy(ctx context.Context, jobID string, size int) error {
	ctx, cancel := context.WithTimeout(ctx, poolStartTimeout)
	defer cancel()
	return r.data.poll(ctx, fmt.Sprintf("%d healthy instances of %s", size, jobID), func() (bool, error) {
		allocs, _, err := r.data.Nomad.Jobs().Allocations(jobID, false, r.data.nomadQuery(ctx))
		if err != nil {
			return false, err
		}
		for _, a := range allocs {
			if failed(a) {
				return false, finalError{fmt.Errorf("an instance of %s failed:\n%s", jobID, events(a))}
			}
		}
		entries, err := r.data.passing(ctx, jobID)
		return len(entries) >= size, err
	}, func() string { return r.data.lastEvents(ctx, jobID) },
		fmt.Sprintf("A pool's instances get %s to start; their task events are in the Nomad UI (job %s).", poolStartTimeout, jobID))
}

// poolStartTimeout bounds the wait for a pool's instances at apply.
const poolStartTimeout = 5 * time.Minute

func (r *warmPoolResource) remove(ctx context.Context, jobID string, diags *diag.Diagnostics) {
	if _, err := r.data.Consul.KV().Delete(kvstore.PoolKey(jobID), (&consulapi.WriteOptions{}).WithContext(ctx)); err != nil {
		diags.AddError("Cannot delete the warm pool's record from Consul KV", err.Error())
	}
	if err := r.data.purgeJob(ctx, jobID); err != nil {
		diags.AddError("Cannot remove the warm pool's job", err.Error())
	}
}

func (r *warmPoolResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	saveModel(ctx, req.Plan, &resp.State, &resp.Diagnostics, func(ctx context.Context, m *warmPoolModel) diag.Diagnostics { return r.write(ctx, m, true) })
}

func (r *warmPoolResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	saveModel(ctx, req.Plan, &resp.State, &resp.Diagnostics, func(ctx context.Context, m *warmPoolModel) diag.Diagnostics { return r.write(ctx, m, false) })
}

func (r *warmPoolResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state warmPoolModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	job, found, err := r.data.liveJob(ctx, state.ID.ValueString())
	if err != nil {
		resp.Diagnostics.AddError("Cannot read the warm pool's job", err.Error())
		return
	}
	if !found || job.Meta[nomadjob.MetaPoolRuntime] == "" || len(job.TaskGroups) == 0 {
		resp.State.RemoveResource(ctx)
		return
	}
	memory, _ := strconv.Atoi(job.Meta[nomadjob.MetaPoolMemory])
	state.Runtime = types.StringValue(job.Meta[nomadjob.MetaPoolRuntime])
	state.MemoryMB = types.Int64Value(int64(memory))
	state.Size = types.Int64Value(int64(deref(job.TaskGroups[0].Count)))
	state.JobID = types.StringValue(*job.ID)
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

func (r *warmPoolResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var state warmPoolModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	r.remove(ctx, state.ID.ValueString(), &resp.Diagnostics)
}

func (r *warmPoolResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
}
