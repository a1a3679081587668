package provider

import (
	"context"
	"fmt"
	neturl "net/url"
	"regexp"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/objectplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
)

var (
	_ resource.ResourceWithConfigure      = (*eventSourceResource)(nil)
	_ resource.ResourceWithImportState    = (*eventSourceResource)(nil)
	_ resource.ResourceWithValidateConfig = (*eventSourceResource)(nil)
)

func newEventSourceResource() resource.Resource { return &eventSourceResource{} }

// eventSourceResource is nimbus_event_source: a NATS JetStream stream or a
// RabbitMQ queue whose messages invoke a function in batches, as
// aws_lambda_event_source_mapping. The gateway checks it against the
// broker before it is recorded, so a source the broker refuses is never
// half-created.
type eventSourceResource struct {
	withProviderData
}

type eventSourceModel struct {
	ID             types.String `tfsdk:"id"`
	Name           types.String `tfsdk:"name"`
	Function       types.String `tfsdk:"function"`
	Enabled        types.Bool   `tfsdk:"enabled"`
	BatchSize      types.Int64  `tfsdk:"batch_size"`
	BatchingWindow types.Int64  `tfsdk:"maximum_batching_window_in_seconds"`
	MaxConcurrency types.Int64  `tfsdk:"maximum_concurrency"`
	MaxRetries     types.Int64  `tfsdk:"maximum_retry_attempts"`
	OnFailure      types.Object `tfsdk:"on_failure"`
	NATS           types.Object `tfsdk:"nats"`
	RabbitMQ       types.Object `tfsdk:"rabbitmq"`
}

type natsSourceModel struct {
	Stream            types.String `tfsdk:"stream"`
	FilterSubject     types.String `tfsdk:"filter_subject"`
	StartingPosition  types.String `tfsdk:"starting_position"`
	StartingTimestamp types.String `tfsdk:"starting_position_timestamp"`
}

type rabbitMQSourceModel struct {
	URL                 types.String `tfsdk:"url"`
	Queue               types.String `tfsdk:"queue"`
	CredentialsVariable types.String `tfsdk:"credentials_variable"`
}

var (
	natsSourceType = map[string]attr.Type{"stream": types.StringType, "filter_subject": types.StringType,
		"starting_position": types.StringType, "starting_position_timestamp": types.StringType}
	rabbitMQSourceType = map[string]attr.Type{"url": types.StringType, "queue": types.StringType, "credentials_variable": types.StringType}

	// Stream names become tokens of JetStream's API subjects (and of the
	// gateway's NATS permissions): no dots, wildcards or spaces.
	streamName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,255}$`)
	// A subject filter: tokens of printable characters without spaces,
	// * for one token, > for the rest.
	natsSubject = regexp.MustCompile(`^([^.\s*>]+|\*)(\.([^.\s*>]+|\*))*(\.>)?$|^>$`)
)

func (r *eventSourceResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_event_source"
}

func (r *eventSourceResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	replace := []planmodifier.String{stringplanmodifier.RequiresReplace()}
	resp.Schema = schema.Schema{
		MarkdownDescription: "A message broker source whose messages invoke a function in batches, as `aws_lambda_event_source_mapping`: " +
			"a NATS JetStream stream (`nats`) or a RabbitMQ queue (`rabbitmq`). Every gateway consumes it, sharing the work " +
			"(a JetStream durable consumer named `nimbus-source-<name>`, or competing RabbitMQ consumers). " +
			"A batch's records succeed or fail together unless the function answers Lambda's partial batch response " +
			"(`{\"batchItemFailures\":[{\"itemIdentifier\":\"…\"}]}`); failed records are retried, and a record whose retries are spent goes to " +
			"`on_failure`, or to the dead letters (stream `NIMBUS_DEAD`, subject `nimbus.dead.sources.<name>`), while the rest flow. " +
			"At apply the gateway checks the source against its broker first (and creates the NATS consumer), so the broker's refusal fails the apply " +
			"and nothing is recorded. See the guide \"Consume a queue\" for the event shapes and what the platform must grant.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				Computed: true, MarkdownDescription: "The source's name.",
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"name": schema.StringAttribute{
				Required: true, PlanModifiers: replace,
				MarkdownDescription: "The source's name, a DNS label: it names the NATS consumer (`nimbus-source-<name>`), the dead letters' subject and the RabbitMQ credentials' Nomad Variable.",
				Validators:          []validator.String{stringvalidator.RegexMatches(functionName, "must be a DNS label: lowercase letters, digits and -"), stringvalidator.LengthAtMost(63)},
			},
			"function": schema.StringAttribute{
				Required:            true,
				MarkdownDescription: targetDescription("The function the batches invoke."),
				Validators:          []validator.String{functionTarget()},
			},
			"enabled": schema.BoolAttribute{
				Optional: true, Computed: true, Default: booldefault.StaticBool(true),
				MarkdownDescription: "Whether the gateways consume the source. A disabled source keeps its position (the NATS consumer) and resumes from it. Default `true`.",
			},
			"batch_size": schema.Int64Attribute{
				Optional: true, Computed: true, Default: int64default.StaticInt64(kvstore.DefaultSourceBatchSize),
				MarkdownDescription: fmt.Sprintf("The most records in one invocation, 1 to %d. Default %d.", kvstore.MaxSourceBatchSize, kvstore.DefaultSourceBatchSize),
				Validators:          []validator.Int64{int64validator.Between(1, kvstore.MaxSourceBatchSize)},
			},
			"maximum_batching_window_in_seconds": schema.Int64Attribute{
				Optional: true, Computed: true, Default: int64default.StaticInt64(0),
				MarkdownDescription: fmt.Sprintf("How long to gather records after the first of a batch before invoking, 0 to %d seconds. "+
					"0 (the default) invokes with what has arrived at once.", kvstore.MaxSourceBatchingWindowSecs),
				Validators: []validator.Int64{int64validator.Between(0, kvstore.MaxSourceBatchingWindowSecs)},
			},
			"maximum_concurrency": schema.Int64Attribute{
				Optional: true, Computed: true, Default: int64default.StaticInt64(kvstore.DefaultSourceConcurrency),
				MarkdownDescription: fmt.Sprintf("The most invocations of this source at once, across every gateway, %d to %d (Lambda's bounds). Default %d. "+
					"The gateways share the bound through NATS (a key-value bucket, `NIMBUS_SOURCE_SLOTS`); a gateway without NATS bounds only its own. "+
					"The function's own `max_instances` × `concurrency` bounds it too.", kvstore.MinSourceConcurrency, kvstore.MaxSourceConcurrency, kvstore.DefaultSourceConcurrency),
				Validators: []validator.Int64{int64validator.Between(kvstore.MinSourceConcurrency, kvstore.MaxSourceConcurrency)},
			},
			"maximum_retry_attempts": schema.Int64Attribute{
				Optional: true, Computed: true, Default: int64default.StaticInt64(kvstore.DefaultSourceRetries),
				MarkdownDescription: fmt.Sprintf("Retries of a record the function failed, 0 to %d, before it goes to `on_failure` or the dead letters. Default %d. "+
					"A batch the gateway throttled is retried without counting.", kvstore.MaxSourceRetries, kvstore.DefaultSourceRetries),
				Validators: []validator.Int64{int64validator.Between(0, kvstore.MaxSourceRetries)},
			},
			"on_failure": destinationAttribute("a record whose retries are spent goes, as Lambda's failure record (`version`, `timestamp`, `requestContext` with `condition` `RetryAttemptsExhausted` and `approximateInvokeCount`, `responseContext`, `responsePayload`, `eventSource`, and the record itself under `record`); without it, to the dead letters"),
			"nats": schema.SingleNestedAttribute{
				Optional:            true,
				MarkdownDescription: "A JetStream stream on the gateways' NATS. Records have the shape of SQS records (`events.SQSEvent` handlers work: `body` is the data as text) plus `subject`, `headers`, `sequence` and `data` (base64); a record's `itemIdentifier` is its `messageId`.",
				PlanModifiers:       []planmodifier.Object{objectplanmodifier.RequiresReplaceIf(streamChanged, "The consumer belongs to its stream.", "The consumer belongs to its stream.")},
				Attributes: map[string]schema.Attribute{
					"stream": schema.StringAttribute{
						Required: true, MarkdownDescription: "The stream's name. The gateway's NATS user needs the consumer rights on it (see the guide).",
						Validators: []validator.String{stringvalidator.RegexMatches(streamName, "must be a JetStream stream name of letters, digits, - and _ (no dots, wildcards or spaces)")},
					},
					"filter_subject": schema.StringAttribute{
						Optional: true, MarkdownDescription: "Only the stream's messages on these subjects (NATS wildcards `*` and `>` allowed).",
						Validators: []validator.String{stringvalidator.RegexMatches(natsSubject, "must be a NATS subject: dot-separated tokens without spaces, * for one token and > for the rest")},
					},
					"starting_position": schema.StringAttribute{
						Optional: true, Computed: true, Default: stringdefault.StaticString(kvstore.StartTrimHorizon),
						MarkdownDescription: "Where a new source starts: `TRIM_HORIZON` (the stream's oldest message, the default), `LATEST` (messages stored after the apply) or `AT_TIMESTAMP`. Changing it replaces the source.",
						Validators:          []validator.String{stringvalidator.OneOf(kvstore.StartTrimHorizon, kvstore.StartLatest, kvstore.StartAtTimestamp)},
						PlanModifiers:       replace,
					},
					"starting_position_timestamp": schema.StringAttribute{
						Optional: true, MarkdownDescription: "With `AT_TIMESTAMP`: the RFC 3339 time to start from, such as `2026-11-27T08:00:00Z`.",
						PlanModifiers: replace,
					},
				},
			},
			"rabbitmq": schema.SingleNestedAttribute{
				Optional: true,
				MarkdownDescription: "A RabbitMQ queue. Batches have the shape of Lambda's Amazon MQ for RabbitMQ event (`rmqMessagesByQueue`), so `events.RabbitMQEvent` handlers work unmodified; " +
					"a record's `itemIdentifier` is its `basicProperties.messageId` (Nimbus sets one where the publisher did not). " +
					"The credentials are the items `username` and `password` of the Nomad Variable `nimbus/event-sources/<name>`: never in the configuration, the state or Consul.",
				Attributes: map[string]schema.Attribute{
					"url": schema.StringAttribute{
						Required: true, MarkdownDescription: "`amqp://host:port/vhost` or `amqps://…`, without user or password.",
						Validators: []validator.String{amqpURLValidator{}},
					},
					"queue": schema.StringAttribute{
						Required: true, MarkdownDescription: "The queue, which must exist (declared durable for messages to survive a broker restart).",
						Validators: []validator.String{
							stringvalidator.LengthBetween(1, 255),
							stringvalidator.RegexMatches(regexp.MustCompile(`^[^\x00-\x1f]+$`), "must be printable"),
							stringvalidator.RegexMatches(regexp.MustCompile(`^(?:[^a]|a[^m]|am[^q]|amq[^.])|^.{1,3}$`), "must not start with amq., which RabbitMQ reserves"),
						},
					},
					"credentials_variable": schema.StringAttribute{
						Computed: true, MarkdownDescription: "The Nomad Variable that holds the credentials: `nimbus/event-sources/<name>`.",
						PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
					},
				},
			},
		},
	}
}

// streamChanged replaces the source when its stream changes: the durable
// consumer belongs to the stream.
func streamChanged(_ context.Context, req planmodifier.ObjectRequest, resp *objectplanmodifier.RequiresReplaceIfFuncResponse) {
	if req.StateValue.IsNull() || req.PlanValue.IsNull() || req.PlanValue.IsUnknown() {
		return
	}
	old, oldOK := req.StateValue.Attributes()["stream"].(types.String)
	now, nowOK := req.PlanValue.Attributes()["stream"].(types.String)
	resp.RequiresReplace = oldOK && nowOK && !now.IsUnknown() && !old.Equal(now)
}

// amqpURLValidator accepts amqp:// and amqps:// URLs without credentials.
type amqpURLValidator struct{}

func (amqpURLValidator) Description(context.Context) string {
	return "an amqp:// or amqps:// URL without user info"
}
func (v amqpURLValidator) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (amqpURLValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	u, err := neturl.Parse(req.ConfigValue.ValueString())
	switch {
	case err != nil || (u.Scheme != "amqp" && u.Scheme != "amqps") || u.Host == "":
		resp.Diagnostics.AddAttributeError(req.Path, "Not a RabbitMQ URL",
			fmt.Sprintf("%q is not an amqp:// or amqps:// URL with a host, such as amqp://rabbitmq.service.consul:5672/orders.", req.ConfigValue.ValueString()))
	case u.User != nil:
		resp.Diagnostics.AddAttributeError(req.Path, "Credentials do not belong in the URL",
			"The URL carries a user or password, which would sit in clear in the state and in Consul. Remove them, and put them in the Nomad Variable nimbus/event-sources/<name> as items username and password (nomad var put nimbus/event-sources/<name> username=… password=…).")
	}
}

// ValidateConfig checks at plan what the attributes cannot alone: one
// broker, and a timestamp exactly with AT_TIMESTAMP.
func (r *eventSourceResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var m eventSourceModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	destinationOf(ctx, m.OnFailure, &resp.Diagnostics, "on_failure")
	if m.NATS.IsUnknown() || m.RabbitMQ.IsUnknown() {
		return
	}
	if m.NATS.IsNull() == m.RabbitMQ.IsNull() {
		resp.Diagnostics.AddError("An event source is one broker", "Set exactly one of the blocks nats and rabbitmq.")
		return
	}
	if !m.NATS.IsNull() {
		var n natsSourceModel
		resp.Diagnostics.Append(m.NATS.As(ctx, &n, basetypes.ObjectAsOptions{})...)
		if n.StartingPosition.IsUnknown() || n.StartingTimestamp.IsUnknown() {
			return
		}
		at := n.StartingPosition.ValueString() == kvstore.StartAtTimestamp
		switch {
		case at && n.StartingTimestamp.IsNull():
			resp.Diagnostics.AddAttributeError(path.Root("nats").AtName("starting_position_timestamp"), "AT_TIMESTAMP needs a time",
				"Set starting_position_timestamp to the RFC 3339 time to start from, such as 2026-11-27T08:00:00Z.")
		case !at && !n.StartingTimestamp.IsNull():
			resp.Diagnostics.AddAttributeError(path.Root("nats").AtName("starting_position_timestamp"), "A timestamp only goes with AT_TIMESTAMP",
				"Remove starting_position_timestamp, or set starting_position = \"AT_TIMESTAMP\".")
		case at:
			if _, err := time.Parse(time.RFC3339, n.StartingTimestamp.ValueString()); err != nil {
				resp.Diagnostics.AddAttributeError(path.Root("nats").AtName("starting_position_timestamp"), "Not an RFC 3339 time",
					fmt.Sprintf("%q: write it as 2026-11-27T08:00:00Z (%v).", n.StartingTimestamp.ValueString(), err))
			}
		}
	}
}

func (m *eventSourceModel) record(ctx context.Context) (kvstore.EventSource, diag.Diagnostics) {
	var diags diag.Diagnostics
	rec := kvstore.EventSource{
		Name: m.Name.ValueString(), Function: m.Function.ValueString(), Enabled: m.Enabled.ValueBool(),
		BatchSize: int(m.BatchSize.ValueInt64()), MaxBatchingWindowSeconds: int(m.BatchingWindow.ValueInt64()),
		MaxConcurrency: int(m.MaxConcurrency.ValueInt64()), MaxRetries: int(m.MaxRetries.ValueInt64()),
		OnFailure: destinationOf(ctx, m.OnFailure, &diags, "on_failure"),
	}
	if !m.NATS.IsNull() {
		var n natsSourceModel
		diags.Append(m.NATS.As(ctx, &n, basetypes.ObjectAsOptions{})...)
		rec.NATS = &kvstore.NATSSource{Stream: n.Stream.ValueString(), FilterSubject: n.FilterSubject.ValueString(),
			StartingPosition: n.StartingPosition.ValueString(), StartingPositionTimestamp: n.StartingTimestamp.ValueString()}
	}
	if !m.RabbitMQ.IsNull() {
		var q rabbitMQSourceModel
		diags.Append(m.RabbitMQ.As(ctx, &q, basetypes.ObjectAsOptions{})...)
		rec.RabbitMQ = &kvstore.RabbitMQSource{URL: q.URL.ValueString(), Queue: q.Queue.ValueString()}
	}
	return rec, diags
}

func (m *eventSourceModel) fill(s kvstore.EventSource) {
	m.ID, m.Name, m.Function = types.StringValue(s.Name), types.StringValue(s.Name), types.StringValue(s.Function)
	m.Enabled = types.BoolValue(s.Enabled)
	m.BatchSize, m.BatchingWindow = types.Int64Value(int64(s.BatchSize)), types.Int64Value(int64(s.MaxBatchingWindowSeconds))
	m.MaxConcurrency, m.MaxRetries = types.Int64Value(int64(s.MaxConcurrency)), types.Int64Value(int64(s.MaxRetries))
	m.OnFailure = destinationValue(s.OnFailure)
	m.NATS, m.RabbitMQ = types.ObjectNull(natsSourceType), types.ObjectNull(rabbitMQSourceType)
	if n := s.NATS; n != nil {
		m.NATS, _ = types.ObjectValue(natsSourceType, map[string]attr.Value{
			"stream": types.StringValue(n.Stream), "filter_subject": optionalString(n.FilterSubject),
			"starting_position": types.StringValue(n.StartingPosition), "starting_position_timestamp": optionalString(n.StartingPositionTimestamp),
		})
	}
	if q := s.RabbitMQ; q != nil {
		m.RabbitMQ, _ = types.ObjectValue(rabbitMQSourceType, map[string]attr.Value{
			"url": types.StringValue(q.URL), "queue": types.StringValue(q.Queue), "credentials_variable": types.StringValue(kvstore.EventSourceVariable(s.Name)),
		})
	}
}

func (r *eventSourceResource) write(ctx context.Context, m *eventSourceModel) diag.Diagnostics {
	rec, diags := m.record(ctx)
	if diags.HasError() {
		return diags
	}
	if r.data.Artifacts == nil {
		diags.AddError("nimbus_event_source needs the gateway",
			"The gateway checks an event source against its broker before it is recorded. Set gateway_url (or NIMBUS_GATEWAY_URL) and gateway_token in the provider block.")
		return diags
	}
	if diags := requireFunctions(ctx, r.data.Consul, "nimbus_event_source", rec.Function, destinationFunction(rec.OnFailure)); diags.HasError() {
		return diags
	}
	if err := r.data.Artifacts.PrepareEventSource(ctx, rec.Name, rec.Encode()); err != nil {
		diags.AddError("The broker refused event source "+rec.Name, err.Error())
		return diags
	}
	if _, err := r.data.Consul.KV().Put(&consulapi.KVPair{Key: kvstore.EventSourceKey(rec.Name), Value: rec.Encode()}, (&consulapi.WriteOptions{}).WithContext(ctx)); err != nil {
		return saveFailed("event source", fmt.Errorf("writing it to Consul KV: %w", err))
	}
	m.fill(rec)
	return nil
}

func (r *eventSourceResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	saveModel(ctx, req.Plan, &resp.State, &resp.Diagnostics, r.write)
}

func (r *eventSourceResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	saveModel(ctx, req.Plan, &resp.State, &resp.Diagnostics, r.write)
}

func (r *eventSourceResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	readKV(ctx, r.data.Consul, req, resp, "event source", kvstore.EventSourceKey, kvstore.DecodeEventSource, (*eventSourceModel).fill)
}

// Delete removes the record, so that every gateway stops consuming, then
// the NATS consumer.
func (r *eventSourceResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var m eventSourceModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	deleteKV(ctx, r.data.Consul, req, resp, "event source", kvstore.EventSourceKey)
	if resp.Diagnostics.HasError() || m.NATS.IsNull() {
		return
	}
	var n natsSourceModel
	resp.Diagnostics.Append(m.NATS.As(ctx, &n, basetypes.ObjectAsOptions{})...)
	if r.data.Artifacts == nil {
		resp.Diagnostics.AddWarning("The NATS consumer stays", "Without gateway_url the provider cannot have the gateway remove the consumer "+
			"nimbus-source-"+m.Name.ValueString()+" from stream "+n.Stream.ValueString()+": remove it with `nats consumer rm`.")
		return
	}
	if err := r.data.Artifacts.DeleteEventSource(ctx, m.Name.ValueString(), n.Stream.ValueString()); err != nil {
		resp.Diagnostics.AddWarning("The NATS consumer stays", err.Error()+". The source is deleted; remove the consumer with `nats consumer rm "+n.Stream.ValueString()+" nimbus-source-"+m.Name.ValueString()+"`.")
	}
}

func (r *eventSourceResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
}
