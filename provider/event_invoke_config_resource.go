package provider

import (
	"context"
	"fmt"
	"regexp"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
)

var (
	_ resource.ResourceWithConfigure      = (*eventInvokeConfigResource)(nil)
	_ resource.ResourceWithImportState    = (*eventInvokeConfigResource)(nil)
	_ resource.ResourceWithValidateConfig = (*eventInvokeConfigResource)(nil)
)

func newEventInvokeConfigResource() resource.Resource { return &eventInvokeConfigResource{} }

// eventInvokeConfigResource is nimbus_function_event_invoke_config: how a
// function's asynchronous invocations are retried, how long they may wait,
// and where their outcome goes, as aws_lambda_function_event_invoke_config.
// It is a resource of its own, not a block of nimbus_function, for the
// same reasons as on AWS: changing it touches no instance of the function
// (no new job version, no canary), and it can be imported and owned apart.
type eventInvokeConfigResource struct {
	withProviderData
}

type eventInvokeConfigModel struct {
	ID          types.String `tfsdk:"id"`
	Function    types.String `tfsdk:"function"`
	MaxRetries  types.Int64  `tfsdk:"maximum_retry_attempts"`
	MaxEventAge types.Int64  `tfsdk:"maximum_event_age_in_seconds"`
	OnSuccess   types.Object `tfsdk:"on_success"`
	OnFailure   types.Object `tfsdk:"on_failure"`
}

type destinationModel struct {
	Function    types.String `tfsdk:"function"`
	NATSSubject types.String `tfsdk:"nats_subject"`
}

var destinationType = map[string]attr.Type{"function": types.StringType, "nats_subject": types.StringType}

var (
	functionName       = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	destinationSubject = regexp.MustCompile(`^` + regexp.QuoteMeta(kvstore.DestinationSubjectPrefix) + `[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
)

func (r *eventInvokeConfigResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_function_event_invoke_config"
}

// destinationAttribute is an on_success or on_failure block; what says
// where its record comes from and what the record holds.
func destinationAttribute(what string) schema.SingleNestedAttribute {
	return schema.SingleNestedAttribute{
		Optional: true,
		MarkdownDescription: "Where " + what + ". " +
			"Exactly one of `function` and `nats_subject`.",
		Attributes: map[string]schema.Attribute{
			"function": schema.StringAttribute{
				Optional:            true,
				MarkdownDescription: "A function that receives the record as an asynchronous invocation; reference `nimbus_function.<x>.name`.",
				Validators:          []validator.String{stringvalidator.RegexMatches(functionName, "must be a function name (a DNS label)")},
			},
			"nats_subject": schema.StringAttribute{
				Optional: true,
				MarkdownDescription: "A NATS subject under `" + kvstore.DestinationSubjectPrefix + "`, which the gateways may publish to; a JetStream stream of yours must capture it " +
					"(the record is refused otherwise, and a failure's record then goes to the dead letters).",
				Validators: []validator.String{stringvalidator.RegexMatches(destinationSubject, "must be a NATS subject under "+kvstore.DestinationSubjectPrefix+" (tokens of letters, digits, - and _), the subjects the gateway's NATS user may publish to")},
			},
		},
	}
}

func (r *eventInvokeConfigResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "How a function's asynchronous (`Event`) invocations are handled, as `aws_lambda_function_event_invoke_config`: " +
			"how often a failed run is retried, how long an event may wait to run, and where the record of a success or a failure goes. " +
			"Without it a function has Lambda's defaults: 2 retries, 6 hours, and failures kept in the gateways' dead-letter stream " +
			"(`NIMBUS_DEAD`, subject `nimbus.dead.<function>`). Events are stored in NATS JetStream before their 202 (see the platform guide). " +
			"Changes take effect in the gateways at once, without touching the function's instances.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "The function's name.",
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"function": schema.StringAttribute{
				Required:            true,
				MarkdownDescription: "The function; reference `nimbus_function.<x>.name`.",
				PlanModifiers:       []planmodifier.String{stringplanmodifier.RequiresReplace()},
				Validators:          []validator.String{stringvalidator.RegexMatches(functionName, "must be a function name (a DNS label)")},
			},
			"maximum_retry_attempts": schema.Int64Attribute{
				Optional:            true,
				Computed:            true,
				Default:             int64default.StaticInt64(kvstore.DefaultAsyncRetries),
				MarkdownDescription: "Retries after the function fails, 0 to 2. Default 2. A throttled run is retried until the event is too old, whatever this says.",
				Validators:          []validator.Int64{int64validator.Between(0, kvstore.MaxAsyncRetries)},
			},
			"maximum_event_age_in_seconds": schema.Int64Attribute{
				Optional:            true,
				Computed:            true,
				Default:             int64default.StaticInt64(kvstore.DefaultMaxEventAgeSecs),
				MarkdownDescription: "How long an event may wait to run, 60 to 21600 seconds (6 hours). Default 21600. An older event is not run; its record goes to `on_failure` with condition `EventAgeExceeded`.",
				Validators:          []validator.Int64{int64validator.Between(kvstore.MinMaxEventAgeSecs, kvstore.DefaultMaxEventAgeSecs)},
			},
			"on_success": destinationAttribute("the record of an asynchronous invocation that succeeded goes, as Lambda's destination record (`version`, `timestamp`, `requestContext` with `condition` and `approximateInvokeCount`, `requestPayload`, `responseContext`, `responsePayload`)"),
			"on_failure": destinationAttribute("the record of an asynchronous invocation that failed its retries or waited too long goes, as Lambda's destination record (`version`, `timestamp`, `requestContext` with `condition` and `approximateInvokeCount`, `requestPayload`, `responseContext`, `responsePayload`)"),
		},
	}
}

func destinationOf(ctx context.Context, o types.Object, diags *diag.Diagnostics, attr string) *kvstore.Destination {
	if o.IsNull() || o.IsUnknown() {
		return nil
	}
	var d destinationModel
	diags.Append(o.As(ctx, &d, basetypes.ObjectAsOptions{})...)
	if d.Function.IsUnknown() || d.NATSSubject.IsUnknown() {
		return nil
	}
	if d.Function.IsNull() == d.NATSSubject.IsNull() {
		diags.AddAttributeError(path.Root(attr), "A destination is one function or one NATS subject",
			"Set exactly one of "+attr+".function and "+attr+".nats_subject.")
		return nil
	}
	return &kvstore.Destination{Function: d.Function.ValueString(), NATSSubject: d.NATSSubject.ValueString()}
}

func (m eventInvokeConfigModel) record(ctx context.Context) (kvstore.AsyncConfig, diag.Diagnostics) {
	var diags diag.Diagnostics
	rec := kvstore.AsyncConfig{
		Function: m.Function.ValueString(), MaxRetries: int(m.MaxRetries.ValueInt64()), MaxEventAgeSeconds: int(m.MaxEventAge.ValueInt64()),
		OnSuccess: destinationOf(ctx, m.OnSuccess, &diags, "on_success"), OnFailure: destinationOf(ctx, m.OnFailure, &diags, "on_failure"),
	}
	return rec, diags
}

func destinationValue(d *kvstore.Destination) types.Object {
	if d == nil {
		return types.ObjectNull(destinationType)
	}
	v, _ := types.ObjectValue(destinationType, map[string]attr.Value{
		"function": optionalString(d.Function), "nats_subject": optionalString(d.NATSSubject),
	})
	return v
}

// ValidateConfig reports a destination naming both a function and a
// subject at plan time.
func (r *eventInvokeConfigResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var m eventInvokeConfigModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	destinationOf(ctx, m.OnSuccess, &resp.Diagnostics, "on_success")
	destinationOf(ctx, m.OnFailure, &resp.Diagnostics, "on_failure")
}

func (r *eventInvokeConfigResource) write(ctx context.Context, m *eventInvokeConfigModel) diag.Diagnostics {
	rec, diags := m.record(ctx)
	if diags.HasError() {
		return diags
	}
	// The function and a destination function must exist: an event's
	// record sent to a function that does not is a dead letter.
	if diags := requireFunctions(ctx, r.data.Consul, "nimbus_function_event_invoke_config",
		rec.Function, destinationFunction(rec.OnSuccess), destinationFunction(rec.OnFailure)); diags.HasError() {
		return diags
	}
	if _, err := r.data.Consul.KV().Put(&consulapi.KVPair{Key: kvstore.AsyncKey(rec.Function), Value: rec.Encode()}, (&consulapi.WriteOptions{}).WithContext(ctx)); err != nil {
		return saveFailed("asynchronous invocation config", fmt.Errorf("writing it to Consul KV: %w", err))
	}
	m.ID = m.Function
	return nil
}

func destinationFunction(d *kvstore.Destination) string {
	if d == nil {
		return ""
	}
	return d.Function
}

func (r *eventInvokeConfigResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	saveModel(ctx, req.Plan, &resp.State, &resp.Diagnostics, r.write)
}

func (r *eventInvokeConfigResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	saveModel(ctx, req.Plan, &resp.State, &resp.Diagnostics, r.write)
}

func (r *eventInvokeConfigResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	readKV(ctx, r.data.Consul, req, resp, "asynchronous invocation config", kvstore.AsyncKey, kvstore.DecodeAsync, func(state *eventInvokeConfigModel, a kvstore.AsyncConfig) {
		state.ID = types.StringValue(a.Function)
		state.Function = types.StringValue(a.Function)
		state.MaxRetries = types.Int64Value(int64(a.MaxRetries))
		state.MaxEventAge = types.Int64Value(int64(a.MaxEventAgeSeconds))
		state.OnSuccess = destinationValue(a.OnSuccess)
		state.OnFailure = destinationValue(a.OnFailure)
	})
}

func (r *eventInvokeConfigResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	deleteKV(ctx, r.data.Consul, req, resp, "asynchronous invocation config", kvstore.AsyncKey)
}

func (r *eventInvokeConfigResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
}
