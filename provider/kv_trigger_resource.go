package provider

import (
	"context"
	"fmt"
	"strings"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/setvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/setdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
)

var (
	_ resource.ResourceWithConfigure      = (*kvTriggerResource)(nil)
	_ resource.ResourceWithImportState    = (*kvTriggerResource)(nil)
	_ resource.ResourceWithValidateConfig = (*kvTriggerResource)(nil)
)

func newKVTriggerResource() resource.Resource { return &kvTriggerResource{} }

// kvTriggerResource is nimbus_kv_trigger: the gateway invokes a function
// with batches of changes under a Consul KV prefix.
type kvTriggerResource struct {
	withProviderData
}

type kvTriggerModel struct {
	ID               types.String `tfsdk:"id"`
	Name             types.String `tfsdk:"name"`
	Function         types.String `tfsdk:"function"`
	Prefix           types.String `tfsdk:"prefix"`
	Events           types.Set    `tfsdk:"events"`
	BatchSize        types.Int64  `tfsdk:"batch_size"`
	StartingPosition types.String `tfsdk:"starting_position"`
	MaxRetries       types.Int64  `tfsdk:"max_retries"`
}

func (r *kvTriggerResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_kv_trigger"
}

func (r *kvTriggerResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "Invokes a function when keys under a Consul KV prefix change, the way DynamoDB Streams drive Lambda. " +
			"The gateway watches the prefix with blocking queries and delivers batches of `Records` " +
			"(`eventName` INSERT, MODIFY or REMOVE, `key`, `newValue`, `oldValue` where known). Delivery is at least once: " +
			"progress is kept in Consul KV after each batch, so a gateway restart resumes without skipping and repeats at most " +
			"one batch. A failing batch is retried with backoff `max_retries` times, then recorded under " +
			"`nimbus/dead-letter/kv/<name>/`. A Consul session lock makes exactly one gateway run each trigger.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "The trigger's name.",
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"name": schema.StringAttribute{
				Required:            true,
				MarkdownDescription: "Trigger name (a DNS label). Changing it replaces the trigger and restarts its progress.",
				PlanModifiers:       []planmodifier.String{stringplanmodifier.RequiresReplace()},
			},
			"function": schema.StringAttribute{
				Required:            true,
				MarkdownDescription: targetDescription("The function the batches of changes invoke."),
				Validators:          []validator.String{functionTarget()},
			},
			"prefix": schema.StringAttribute{
				Required:            true,
				MarkdownDescription: "Consul KV prefix to watch, such as `orders/`. A prefix that covers `nimbus/` or lies in it (`nimbus`, `n`, the empty prefix, `nimbus/functions/`) is refused: those keys are Nimbus's own, and the trigger would invoke itself forever on the progress it writes.",
				Validators:          []validator.String{stringvalidator.LengthAtLeast(1)},
			},
			"events": schema.SetAttribute{
				ElementType:         types.StringType,
				Optional:            true,
				Computed:            true,
				Default:             setdefault.StaticValue(stringSet([]string{"put", "delete"})),
				MarkdownDescription: "Changes to deliver: `put` (created or modified keys) and `delete`. Default both.",
				Validators:          []validator.Set{setvalidator.SizeAtLeast(1), setvalidator.ValueStringsAre(stringvalidator.OneOf("put", "delete"))},
			},
			"batch_size": schema.Int64Attribute{
				Optional:            true,
				Computed:            true,
				Default:             int64default.StaticInt64(100),
				MarkdownDescription: "Most records per invocation, 1 to 1000. Default 100.",
				Validators:          []validator.Int64{int64validator.Between(1, 1000)},
			},
			"starting_position": schema.StringAttribute{
				Optional:            true,
				Computed:            true,
				Default:             stringdefault.StaticString("latest"),
				MarkdownDescription: "`latest` (default): only changes after the trigger starts; `existing`: the keys already there are delivered first, as INSERTs.",
				Validators:          []validator.String{stringvalidator.OneOf("latest", "existing")},
			},
			"max_retries": schema.Int64Attribute{
				Optional:            true,
				Computed:            true,
				Default:             int64default.StaticInt64(3),
				MarkdownDescription: "Retries of a failing batch before it goes to the dead-letter prefix, 0 to 10. Default 3.",
				Validators:          []validator.Int64{int64validator.Between(0, 10)},
			},
		},
	}
}

func (m kvTriggerModel) record(ctx context.Context) (kvstore.KVTrigger, diag.Diagnostics) {
	events, diags := setStrings(ctx, m.Events)
	return kvstore.KVTrigger{
		Name: m.Name.ValueString(), Function: m.Function.ValueString(), Prefix: m.Prefix.ValueString(), Events: events,
		BatchSize: int(m.BatchSize.ValueInt64()), StartingPosition: m.StartingPosition.ValueString(), MaxRetries: int(m.MaxRetries.ValueInt64()),
	}, diags
}

func (r *kvTriggerResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var m kvTriggerModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if !m.Name.IsUnknown() {
		if e := model.ValidateName(m.Name.ValueString()); e != nil {
			resp.Diagnostics.AddAttributeError(path.Root("name"), "Invalid name", e.Message)
		}
	}
	if p := m.Prefix.ValueString(); !m.Prefix.IsUnknown() && (kvstore.OverlapsNimbus(p) || strings.HasPrefix(p, "/")) {
		resp.Diagnostics.AddAttributeError(path.Root("prefix"), "Invalid prefix",
			fmt.Sprintf("%q is not allowed: it covers keys under nimbus/, which are Nimbus's own (a trigger there would feed on the progress it writes and invoke itself forever), or starts with / (KV keys do not). Watch a prefix of your own, such as \"orders/\".", p))
	}
}

func (r *kvTriggerResource) write(ctx context.Context, m *kvTriggerModel) diag.Diagnostics {
	rec, diags := m.record(ctx)
	if diags.HasError() {
		return diags
	}
	if diags.Append(requireFunctions(ctx, r.data.Consul, "nimbus_kv_trigger", rec.Function)...); diags.HasError() {
		return diags
	}
	_, err := r.data.Consul.KV().Put(&consulapi.KVPair{Key: kvstore.KVTriggerKey(rec.Name), Value: rec.Encode()}, (&consulapi.WriteOptions{}).WithContext(ctx))
	m.ID = m.Name
	return append(diags, saveFailed("KV trigger", err)...)
}

func (r *kvTriggerResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	saveModel(ctx, req.Plan, &resp.State, &resp.Diagnostics, r.write)
}

func (r *kvTriggerResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	saveModel(ctx, req.Plan, &resp.State, &resp.Diagnostics, r.write)
}

func (r *kvTriggerResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	readKV(ctx, r.data.Consul, req, resp, "trigger", kvstore.KVTriggerKey, kvstore.DecodeKVTrigger, func(state *kvTriggerModel, t kvstore.KVTrigger) {
		state.Name = types.StringValue(t.Name)
		state.Function = types.StringValue(t.Function)
		state.Prefix = types.StringValue(t.Prefix)
		state.Events = stringSet(t.Events)
		state.BatchSize = types.Int64Value(int64(t.BatchSize))
		state.StartingPosition = types.StringValue(t.StartingPosition)
		state.MaxRetries = types.Int64Value(int64(t.MaxRetries))
	})
}

// Delete removes the trigger and its progress; dead letters stay for
// inspection under nimbus/dead-letter/kv/<name>/.
func (r *kvTriggerResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	deleteKV(ctx, r.data.Consul, req, resp, "trigger", kvstore.KVTriggerKey, kvTriggerStateKey, kvstore.KVTriggerProgressKeys)
}

// kvTriggerStateKey is where the gateway keeps a trigger's progress.
func kvTriggerStateKey(name string) string { return kvstore.KVTriggerState + name }

func (r *kvTriggerResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
}
