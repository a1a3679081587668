package provider

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
)

var (
	_ resource.ResourceWithConfigure      = (*scheduleResource)(nil)
	_ resource.ResourceWithValidateConfig = (*scheduleResource)(nil)
	_ resource.ResourceWithImportState    = (*scheduleResource)(nil)
)

func newScheduleResource() resource.Resource { return &scheduleResource{} }

// scheduleResource is nimbus_schedule: a Nomad periodic batch job that
// invokes a function through the gateway.
type scheduleResource struct {
	withProviderData
}

type scheduleModel struct {
	ID       types.String `tfsdk:"id"`
	Name     types.String `tfsdk:"name"`
	Function types.String `tfsdk:"function"`
	Cron     types.String `tfsdk:"cron"`
	Rate     types.String `tfsdk:"rate"`
	TimeZone types.String `tfsdk:"time_zone"`
	Payload  types.String `tfsdk:"payload"`
	Enabled  types.Bool   `tfsdk:"enabled"`
	JobID    types.String `tfsdk:"job_id"`
}

func (m scheduleModel) spec() model.Schedule {
	return model.Schedule{
		Name: m.Name.ValueString(), Function: m.Function.ValueString(), Cron: m.Cron.ValueString(), Rate: m.Rate.ValueString(),
		TimeZone: m.TimeZone.ValueString(), Payload: m.Payload.ValueString(), Enabled: m.Enabled.IsNull() || m.Enabled.ValueBool(),
	}
}

func (r *scheduleResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_schedule"
}

func (r *scheduleResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "Runs a function on a cron expression or a rate. It is the Nomad periodic batch job `nimbus-sched-<name>` " +
			"(`prohibit_overlap = true`), so every run shows in the Nomad UI. Each run invokes the function through the gateway " +
			"with an EventBridge-style scheduled event (`id`, `time`, `schedule`, and `payload` as `detail`), retrying for about " +
			"a minute if the gateway is unreachable.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "The schedule's name.",
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"name": schema.StringAttribute{
				Required:            true,
				MarkdownDescription: "Schedule name (a DNS label). Changing it replaces the schedule.",
				PlanModifiers:       []planmodifier.String{stringplanmodifier.RequiresReplace()},
			},
			"function": schema.StringAttribute{
				Required:            true,
				MarkdownDescription: targetDescription("The function each run invokes."),
				Validators:          []validator.String{functionTarget()},
			},
			"cron": schema.StringAttribute{
				Optional:            true,
				MarkdownDescription: "Cron expression: 5 fields, or 6 with seconds first, as Nomad allows. Conflicts with `rate`.",
			},
			"rate": schema.StringAttribute{
				Optional: true,
				MarkdownDescription: "A rate instead of cron: minutes dividing an hour (`1m`, `5m`, `15m`), " +
					"hours dividing a day (`1h`, `6h`) or `1d`.",
			},
			"time_zone": schema.StringAttribute{
				Optional:            true,
				MarkdownDescription: "IANA time zone of the cron expression (default UTC).",
			},
			"payload": schema.StringAttribute{
				Optional:            true,
				MarkdownDescription: "JSON delivered as the event's `detail`; `jsonencode()` builds it.",
			},
			"enabled": schema.BoolAttribute{
				Optional:            true,
				Computed:            true,
				Default:             booldefault.StaticBool(true),
				MarkdownDescription: "`false` stops launching runs and keeps the job. Default `true`.",
			},
			"job_id": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "The Nomad job, `nimbus-sched-<name>`.",
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
		},
	}
}

func (r *scheduleResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var m scheduleModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	for _, v := range []types.String{m.Name, m.Function, m.Cron, m.Rate, m.TimeZone, m.Payload} {
		if v.IsUnknown() {
			return // checked at apply
		}
	}
	if err := m.spec().Validate(); err != nil {
		for _, fe := range model.AsFieldErrors(err) {
			if fe.Field == "function" {
				continue // the attribute's own validator reports it
			}
			resp.Diagnostics.AddAttributeError(path.Root(fe.Field), "Invalid "+fe.Field, fe.Message)
		}
	}
}

func (r *scheduleResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	saveModel(ctx, req.Plan, &resp.State, &resp.Diagnostics, r.save)
}

func (r *scheduleResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	saveModel(ctx, req.Plan, &resp.State, &resp.Diagnostics, r.save)
}

// save is the create and update: register once the function the
// schedule names exists, its error as a diagnostic.
func (r *scheduleResource) save(ctx context.Context, plan *scheduleModel) diag.Diagnostics {
	if diags := requireFunctions(ctx, r.data.Consul, "nimbus_schedule", plan.Function.ValueString()); diags.HasError() {
		return diags
	}
	return saveFailed("schedule", r.register(ctx, plan))
}

// register writes the periodic job; an update changes it in place.
func (r *scheduleResource) register(ctx context.Context, plan *scheduleModel) error {
	s := plan.spec()
	if err := s.Validate(); err != nil {
		return err
	}
	if r.data.Settings.Gateway.URL == "" {
		return errors.New("schedules invoke functions through the Nimbus gateway: set gateway_url in the provider block or NIMBUS_GATEWAY_URL")
	}
	job, err := nomadjob.RenderSchedule(s, r.data.Settings.Gateway.URL, nomadjob.Options{Namespace: r.data.Settings.Nomad.Namespace, Region: r.data.Settings.Nomad.Region, HostNetwork: r.data.Settings.HostNetwork})
	if err != nil {
		return err
	}
	if _, _, err := r.data.Nomad.Jobs().Register(job, r.data.nomadWrite(ctx)); err != nil {
		return fmt.Errorf("Nomad refused the schedule's job: %w", err)
	}
	plan.ID = types.StringValue(s.Name)
	plan.JobID = types.StringValue(*job.ID)
	return nil
}

func (r *scheduleResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state scheduleModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	name := state.ID.ValueString()
	job, found, err := r.data.liveJob(ctx, nomadjob.ScheduleJobID(name))
	if err != nil {
		resp.Diagnostics.AddError("Cannot read the schedule's Nomad job", err.Error())
		return
	}
	if !found {
		resp.State.RemoveResource(ctx)
		return
	}
	state.Name = types.StringValue(name)
	state.JobID = types.StringValue(*job.ID)
	state.Function = types.StringValue(job.Meta[nomadjob.MetaFunction])
	if job.Periodic != nil {
		state.Enabled = types.BoolValue(deref(job.Periodic.Enabled))
		spec := deref(job.Periodic.Spec)
		// A rate was stored as its cron; keep the user's rate when it maps there.
		if rateCron, err := model.RateToCron(state.Rate.ValueString()); state.Rate.IsNull() || err != nil || rateCron != spec {
			state.Cron = types.StringValue(spec)
			state.Rate = types.StringNull()
		}
		if tz := deref(job.Periodic.TimeZone); tz != "" && !strings.EqualFold(tz, "UTC") || !state.TimeZone.IsNull() {
			state.TimeZone = types.StringValue(tz)
		}
	}
	if len(job.TaskGroups) == 1 && len(job.TaskGroups[0].Tasks) == 1 {
		if p := job.TaskGroups[0].Tasks[0].Env[protocol.EnvSchedulePayload]; p != "" || !state.Payload.IsNull() {
			state.Payload = types.StringValue(p)
		}
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

func (r *scheduleResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var state scheduleModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	parent := nomadjob.ScheduleJobID(state.ID.ValueString())
	// The runs are child jobs "<parent>/periodic-<time>": purge them too.
	jobs, _, err := r.data.Nomad.Jobs().PrefixList(parent)
	if err != nil {
		resp.Diagnostics.AddError("Cannot list the schedule's jobs", err.Error())
		return
	}
	for _, j := range jobs {
		if j.ID == parent || strings.HasPrefix(j.ID, parent+"/") {
			if err := r.data.purgeJob(ctx, j.ID); err != nil {
				resp.Diagnostics.AddError("Cannot delete the schedule's job", err.Error())
				return
			}
		}
	}
}

func (r *scheduleResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	name := strings.TrimPrefix(req.ID, nomadjob.SchedulePrefix)
	if e := model.ValidateName(name); e != nil {
		resp.Diagnostics.AddError("Invalid import ID", "Import a schedule by its name: "+e.Message)
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), name)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("rate"), types.StringNull())...)
}
