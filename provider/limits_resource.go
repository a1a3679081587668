package provider

import (
	"context"
	"fmt"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
)

var (
	_ resource.ResourceWithConfigure   = (*limitsResource)(nil)
	_ resource.ResourceWithModifyPlan  = (*limitsResource)(nil)
	_ resource.ResourceWithImportState = (*limitsResource)(nil)
)

func newLimitsResource() resource.Resource { return &limitsResource{} }

// limitsResource is nimbus_limits: a namespace's quotas, which the gateway
// enforces live.
type limitsResource struct {
	withProviderData
}

type limitsModel struct {
	ID             types.String `tfsdk:"id"`
	Namespace      types.String `tfsdk:"namespace"`
	MaxConcurrency types.Int64  `tfsdk:"max_concurrency"`
	MaxInstances   types.Int64  `tfsdk:"max_instances"`
	MaxMemoryMB    types.Int64  `tfsdk:"max_memory_mb"`
}

func (m limitsModel) record() kvstore.Limits {
	return kvstore.Limits{
		Namespace: m.Namespace.ValueString(), MaxConcurrency: int(m.MaxConcurrency.ValueInt64()),
		MaxInstances: int(m.MaxInstances.ValueInt64()), MaxMemoryMB: int(m.MaxMemoryMB.ValueInt64()),
	}
}

func (r *limitsResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_limits"
}

func (r *limitsResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "Quotas for a Nomad namespace's functions, as an AWS account has concurrency limits. The gateway " +
			"applies changes live. Beyond `max_concurrency` invocations answer 429 with `Retry-After` and a body naming the " +
			"limit; scale-ups beyond `max_instances` or `max_memory_mb` are not issued. Functions' `reserved_concurrency` " +
			"comes out of `max_concurrency`, and at least 100 must stay unreserved. Without this resource a namespace has " +
			"`max_concurrency = 1000` and no instance or memory limit.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "The namespace.",
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"namespace": schema.StringAttribute{
				Optional:            true,
				Computed:            true,
				Default:             stringdefault.StaticString("default"),
				MarkdownDescription: "Nomad namespace the limits apply to. Default `default`.",
				PlanModifiers:       []planmodifier.String{stringplanmodifier.RequiresReplace()},
			},
			"max_concurrency": schema.Int64Attribute{
				Optional:            true,
				Computed:            true,
				Default:             int64default.StaticInt64(kvstore.DefaultMaxConcurrency),
				MarkdownDescription: "Most invocations in flight (including those waiting for an instance) across the namespace. Default 1000.",
				Validators:          []validator.Int64{int64validator.AtLeast(1)},
			},
			"max_instances": schema.Int64Attribute{
				Optional:            true,
				MarkdownDescription: "Most running instances across the namespace's functions. Unset: no limit.",
				Validators:          []validator.Int64{int64validator.AtLeast(1)},
			},
			"max_memory_mb": schema.Int64Attribute{
				Optional:            true,
				MarkdownDescription: "Most memory of running instances across the namespace, in MB. Unset: no limit.",
				Validators:          []validator.Int64{int64validator.AtLeast(64)},
			},
		},
	}
}

// ModifyPlan refuses, at plan time, a max_concurrency that the functions'
// reservations already leave less than 100 of.
func (r *limitsResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() || r.data == nil {
		return
	}
	var plan limitsModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() || plan.Namespace.IsUnknown() || plan.MaxConcurrency.IsUnknown() {
		return
	}
	reserved, err := reservations(ctx, r.data.Consul, plan.Namespace.ValueString(), "")
	if err != nil {
		checkSkipped(&resp.Diagnostics, path.Root("max_concurrency"), "the functions' reserved concurrency", err,
			"The plan goes on; the gateway still enforces the limits with its own accounting.")
		return
	}
	if msg := kvstore.CheckReservations(int(plan.MaxConcurrency.ValueInt64()), reserved); msg != "" {
		resp.Diagnostics.AddAttributeError(path.Root("max_concurrency"), "Too little unreserved concurrency", "Functions' "+msg+".")
	}
	plan.ID = plan.Namespace
	resp.Diagnostics.Append(resp.Plan.Set(ctx, &plan)...)
}

func (r *limitsResource) write(ctx context.Context, m *limitsModel) diag.Diagnostics {
	rec := m.record()
	if _, err := r.data.Consul.KV().Put(&consulapi.KVPair{Key: kvstore.LimitsKey(rec.Namespace), Value: rec.Encode()}, (&consulapi.WriteOptions{}).WithContext(ctx)); err != nil {
		return saveFailed("limits", fmt.Errorf("writing the limits to Consul KV: %w", err))
	}
	m.ID = m.Namespace
	return nil
}

func (r *limitsResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	saveModel(ctx, req.Plan, &resp.State, &resp.Diagnostics, r.write)
}

func (r *limitsResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	saveModel(ctx, req.Plan, &resp.State, &resp.Diagnostics, r.write)
}

func (r *limitsResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	readKV(ctx, r.data.Consul, req, resp, "limits", kvstore.LimitsKey, kvstore.DecodeLimits, func(state *limitsModel, l kvstore.Limits) {
		state.Namespace = types.StringValue(l.Namespace)
		state.MaxConcurrency = types.Int64Value(int64(l.MaxConcurrency))
		state.MaxInstances = optionalInt(l.MaxInstances)
		state.MaxMemoryMB = optionalInt(l.MaxMemoryMB)
	})
}

func (r *limitsResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	deleteKV(ctx, r.data.Consul, req, resp, "limits", kvstore.LimitsKey)
}

func (r *limitsResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
}
