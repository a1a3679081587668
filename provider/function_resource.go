package provider

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/packaging"
)

var (
	_ resource.ResourceWithConfigure      = (*functionResource)(nil)
	_ resource.ResourceWithValidateConfig = (*functionResource)(nil)
	_ resource.ResourceWithModifyPlan     = (*functionResource)(nil)
	_ resource.ResourceWithImportState    = (*functionResource)(nil)
)

func newFunctionResource() resource.Resource { return &functionResource{} }

// functionResource is nimbus_function: a function packaged, uploaded to
// the gateway's artifact store and run as a Nomad job.
type functionResource struct {
	withProviderData
}

func (r *functionResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_function"
}

func (r *functionResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	keep := []planmodifier.String{stringplanmodifier.UseStateForUnknown()}
	resp.Schema = schema.Schema{
		Version: functionSchemaVersion,
		MarkdownDescription: "A serverless function. Nimbus packages `source` reproducibly, uploads it to the gateway's " +
			"content-addressed artifact store, writes the function's record to Consul KV under `nimbus/functions/<name>` " +
			"and runs it as the Nomad job `nimbus-fn-<name>` under the sandboxed `exec` driver. A new version first runs " +
			"as a one-instance canary job and replaces the function only once the canary passes its health check. " +
			"Running instances are then replaced blue/green by one Nomad deployment: the new instances start beside the old, " +
			"and the old ones stop, finishing the invocations they run, only once the new ones pass their checks; " +
			"a deployment that fails reverts the job and fails the apply. See the platform guide's \"Deploys and long invocations\".",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "The function's name.",
				PlanModifiers:       keep,
			},
			"name": schema.StringAttribute{
				Required:            true,
				MarkdownDescription: "Function name: a DNS label (lowercase letters, digits, `-`), at most 63 characters, unique per Nomad namespace. Changing it replaces the function.",
				PlanModifiers:       []planmodifier.String{stringplanmodifier.RequiresReplace()},
			},
			"description": schema.StringAttribute{
				Optional:            true,
				MarkdownDescription: "Shown in the Nomad UI as job meta. At most 256 characters.",
			},
			"runtime": schema.StringAttribute{
				Required:            true,
				MarkdownDescription: "One of `provided` (an executable speaking the Lambda Runtime API), `python3`, `nodejs`, `http` (an executable serving HTTP on `$PORT`).",
				Validators:          []validator.String{stringvalidator.OneOf(model.Runtimes...)},
			},
			"handler": schema.StringAttribute{
				Optional:            true,
				Computed:            true,
				MarkdownDescription: "Entry point: `module.function` for `python3`, `file.export` for `nodejs`, a path to an executable in the source for `provided` and `http` (default `bootstrap`).",
			},
			"memory_mb": schema.Int64Attribute{
				Optional:            true,
				Computed:            true,
				Default:             int64default.StaticInt64(model.DefaultMemoryMB),
				MarkdownDescription: "Memory per instance in MB, 64 to 10240. The instance is OOM-killed beyond it. Default 128.",
				Validators:          []validator.Int64{int64validator.Between(model.MinMemoryMB, model.MaxMemoryMB)},
			},
			"cpu_mhz": schema.Int64Attribute{
				Optional:            true,
				Computed:            true,
				MarkdownDescription: "CPU per instance in MHz. Unset, it follows memory: 1 MHz per MB, at least 100.",
				Validators:          []validator.Int64{int64validator.AtLeast(model.MinCPUMHz)},
			},
			"timeout": schema.StringAttribute{
				Optional: true,
				Computed: true,
				Default:  stringdefault.StaticString("3s"),
				MarkdownDescription: "Longest an invocation may run, as a duration from `1s` to `15m`. Default `3s`. " +
					"A stopping instance finishes its invocations only if the clients' `max_kill_timeout` exceeds this by 5 s: the plan warns otherwise.",
				Validators: []validator.String{durationBetween("timeout", model.MinTimeout, model.MaxTimeout)},
			},
			"environment": schema.MapAttribute{
				ElementType: types.StringType,
				Optional:    true,
				Sensitive:   true,
				MarkdownDescription: "Environment variables for the handler, at most 4 KB in all. Names the runtime sets (`AWS_LAMBDA_*`, `_HANDLER`, `LAMBDA_TASK_ROOT`, `NIMBUS_*`, `NOMAD_*`, ...) are refused. " +
					"Sensitive: plans and the provider's messages never show the values, and they are not written to Consul KV. " +
					"They are part of the Nomad job, so anyone who may read the job sees them.",
			},
			"secrets": schema.MapNestedAttribute{
				Optional: true,
				MarkdownDescription: "Secrets for the handler's environment, by variable name: each is a `key` of a Nomad Variable at `path`. " +
					"Only these references are configuration; the values never pass through Terraform, plans, the Nomad job or Consul KV. " +
					"The job renders them at task start with a `template` (`nomadVar`) under its own workload identity, and nimbus-host hands them to the handler without logging them. " +
					"Nomad lets a job read only its own variables, so `path` must be `nomad/jobs/nimbus-fn-<name>` (or its `/fn` or `/fn/host` sub-path): " +
					"`nomad var put nomad/jobs/nimbus-fn-<name> db_password=...`. A rotated value reaches new instances; running ones keep theirs until replaced. " +
					"The canary that proves a new version runs without the values (each variable set but empty): Nomad lets only the function's own job read them.",
				NestedObject: schema.NestedAttributeObject{
					Attributes: map[string]schema.Attribute{
						"path": schema.StringAttribute{Required: true, MarkdownDescription: "The Nomad Variable's path, `nomad/jobs/nimbus-fn-<name>`."},
						"key":  schema.StringAttribute{Required: true, MarkdownDescription: "The key within the variable."},
					},
				},
			},
			"concurrency": schema.Int64Attribute{
				Optional:            true,
				Computed:            true,
				Default:             int64default.StaticInt64(1),
				MarkdownDescription: "Invocations one instance serves at once. Above 1 only for the `http` runtime. Default 1.",
				Validators:          []validator.Int64{int64validator.Between(1, model.MaxConcurrency)},
			},
			"reserved_concurrency": schema.Int64Attribute{
				Optional:            true,
				MarkdownDescription: "In-flight invocations guaranteed to this function and its cap, taken out of the namespace's `max_concurrency` (`nimbus_limits`); at least 100 must stay unreserved. Unset: the function shares the unreserved pool.",
				Validators:          []validator.Int64{int64validator.AtLeast(1)},
			},
			"min_instances": schema.Int64Attribute{
				Optional:            true,
				Computed:            true,
				Default:             int64default.StaticInt64(0),
				MarkdownDescription: "Instances kept running when idle; 0 scales to zero. Default 0.",
				Validators:          []validator.Int64{int64validator.AtLeast(0)},
			},
			"max_instances": schema.Int64Attribute{
				Optional:            true,
				Computed:            true,
				Default:             int64default.StaticInt64(model.DefaultMaxInst),
				MarkdownDescription: "Most instances the gateway scales to. Default 10.",
				Validators:          []validator.Int64{int64validator.AtLeast(1)},
			},
			"idle_timeout": schema.StringAttribute{
				Optional:            true,
				Computed:            true,
				Default:             stringdefault.StaticString("5m"),
				MarkdownDescription: "Time without traffic after which the gateway scales down to `min_instances`, `10s` to `24h`. Default `5m`.",
				Validators:          []validator.String{durationBetween("idle_timeout", model.MinIdle, model.MaxIdle)},
			},
			"billing_granularity": schema.StringAttribute{
				Optional:            true,
				Computed:            true,
				Default:             stringdefault.StaticString("1ms"),
				MarkdownDescription: "Rounding of billed durations: `1ms` (default) or `100ms`.",
				Validators:          []validator.String{stringvalidator.OneOf("1ms", "100ms")},
			},
			"egress": schema.StringAttribute{
				Optional: true,
				Computed: true,
				Default:  stringdefault.StaticString(model.EgressPublic),
				MarkdownDescription: "What the function's instances may connect to. `public` (default): any destination, as Lambda functions outside a VPC, " +
					"and the Nimbus gateway's function listener, through which functions invoke each other. `none`: no outgoing connection at all; instances only answer the gateway. " +
					"Either way an instance never reaches the host's other ports (Nomad, Consul, the gateway's API and artifacts), other instances, or link-local addresses (cloud metadata). " +
					"Enforced on the clients' Nimbus CNI networks; with the provider's `host_network`, only `public` is possible.",
				Validators: []validator.String{stringvalidator.OneOf(model.EgressPublic, model.EgressNone)},
			},
			"source": schema.StringAttribute{
				Optional:            true,
				MarkdownDescription: "Path to the function's code: a directory (zipped reproducibly, its files stored uncompressed when they fit 50 MB that way so that instances start without inflating them, else deflated) or a `.zip` file. At most 50 MB zipped. Conflicts with `source_url`.",
			},
			"source_url": schema.StringAttribute{
				Optional:            true,
				MarkdownDescription: "A go-getter URL of an existing zip that Nomad fetches directly; requires `source_sha256`. Conflicts with `source`.",
			},
			"source_sha256": schema.StringAttribute{
				Optional:            true,
				Computed:            true,
				MarkdownDescription: "sha256 of the zip. Computed from `source` at plan time, so a code change shows as a change of this value; required with `source_url`.",
				Validators:          []validator.String{stringvalidator.RegexMatches(regexp.MustCompile(`^[0-9a-f]{64}$`), "must be 64 lowercase hex characters")},
			},
			"job_id": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "The Nomad job, `nimbus-fn-<name>`.",
				PlanModifiers:       keep,
			},
			"publish": schema.BoolAttribute{
				Optional: true,
				Computed: true,
				Default:  booldefault.StaticBool(false),
				MarkdownDescription: "Publish an immutable version with each change of code or configuration (and when first set), as Lambda's `publish`. " +
					"Version N snapshots the code digest, handler, runtime, memory, CPU, timeout, concurrency, environment and egress; it runs as its own Nomad job, " +
					"`nimbus-fn-<name>-v<N>`, which starts at zero instances and scales on its own, and answers `<name>:<N>`. The function itself stays `$LATEST`, " +
					"mutable. Not yet available with `secrets`: Nomad lets only the function's own job read its Variables.",
			},
			"version_grace_period": schema.StringAttribute{
				Optional: true,
				Computed: true,
				Default:  stringdefault.StaticString("24h"),
				MarkdownDescription: "How long a published version that nothing references is kept, `0s` to `8760h`. Default `24h`. " +
					"The latest version is always kept, as is one that an alias (its version, its weights, or the version its deployment moves from), " +
					"a route, a schedule, a KV trigger or an event source names. The first apply of the function after the period removes " +
					"the version's job and record; the gateways then collect its code if no version uses it.",
				Validators: []validator.String{durationBetween("version_grace_period", 0, 365*24*time.Hour)},
			},
			"version": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "The latest published version (`1`, `2`, ...), or `$LATEST` while none is published.",
			},
			"job_version": schema.Int64Attribute{
				Computed:            true,
				MarkdownDescription: "The version of the Nomad job `nimbus-fn-<name>` now running. A change that replaces running instances registers two: the blue/green deployment, then the job as rendered.",
			},
			"invoke_url": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "The gateway's invoke endpoint for this function (its `$LATEST`), empty without `gateway_url`.",
			},
			"qualified_invoke_url": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "The gateway's invoke endpoint for the latest published version, `.../functions/<name>:<version>/invoke` (`<name>:$LATEST` while none is published); empty without `gateway_url`.",
			},
			"artifact_url_expires": schema.StringAttribute{
				Computed: true,
				MarkdownDescription: "When the signed URL that Nomad clients fetch the code with expires (RFC 3339); empty for a `source_url`. " +
					"The gateway signs it for its `-artifact-url-ttl` (a year by default). Within 30 days of the expiry, a plan shows the function updated, " +
					"with a warning, and the apply renews the URL: apply at least that often, or cold starts after the expiry cannot fetch the code.",
			},
		},
		Blocks: map[string]schema.Block{
			"timeouts": timeouts.Block(ctx, timeouts.Opts{Create: true, Update: true, Delete: true}),
		},
	}
}

// ValidateConfig checks every rule of the model whose inputs are known, so
// a bad name, size, timeout or environment fails at plan time.
func (r *functionResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var m functionModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	f, diags := m.spec(ctx)
	resp.Diagnostics.Append(diags...)
	if err := f.Validate(); err != nil {
		for _, fe := range model.AsFieldErrors(err) {
			if m.known(fe.Field) && !schemaValidated(fe.Field) {
				resp.Diagnostics.AddAttributeError(path.Root(fe.Field), "Invalid "+fe.Field, fe.Message)
			}
		}
	}
	hasSource := !m.Source.IsNull()
	hasURL := !m.SourceURL.IsNull()
	switch {
	case hasSource && hasURL:
		resp.Diagnostics.AddAttributeError(path.Root("source_url"), "Conflicting sources", "Set either source (a local directory or zip) or source_url, not both.")
	case !hasSource && !hasURL:
		resp.Diagnostics.AddAttributeError(path.Root("source"), "Missing source", "Set source to the function's code (a directory or a .zip file), or source_url with source_sha256.")
	case hasURL && m.SourceSHA256.IsNull():
		resp.Diagnostics.AddAttributeError(path.Root("source_sha256"), "Missing source_sha256", "source_url needs source_sha256, the sha256 of the zip, so Nomad can verify what it fetches.")
	case hasSource && !m.Source.IsUnknown():
		if _, err := os.Stat(m.Source.ValueString()); err != nil {
			resp.Diagnostics.AddAttributeError(path.Root("source"), "Source not found",
				fmt.Sprintf("%s: %v. Point source at the function's directory or zip, relative to the configuration (path.module helps).", m.Source.ValueString(), err))
		}
	}
	if m.Publish.ValueBool() && len(m.Secrets.Elements()) > 0 {
		resp.Diagnostics.AddAttributeError(path.Root("publish"), "Versions cannot read secrets yet",
			"A published version runs as its own Nomad job, nimbus-fn-<name>-v<N>, and Nomad lets only the function's own job, nimbus-fn-<name>, "+
				"read the Variables its secrets come from. Remove publish, or pass these values another way, until versions support secrets.")
	}
	if hasSource && !m.SourceSHA256.IsNull() && !m.SourceSHA256.IsUnknown() {
		resp.Diagnostics.AddAttributeError(path.Root("source_sha256"), "source_sha256 is computed from source",
			"Leave source_sha256 unset with source; Nimbus computes it. Set it only with source_url.")
	}
}

// schemaValidated lists fields whose range the schema's own validators
// already report, so the user sees one message per mistake.
func schemaValidated(field string) bool {
	switch field {
	case "memory_mb", "timeout", "idle_timeout", "billing_granularity", "runtime", "egress":
		return true
	}
	return false
}

// ModifyPlan packages the source at plan time, so that a code change is a
// visible change of source_sha256 and an unchanged source plans nothing,
// and fills the values that follow from others.
func (r *functionResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() { // destroy
		return
	}
	var plan functionModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if !plan.Source.IsNull() && !plan.Source.IsUnknown() {
		digest, err := r.packages().Digest(plan.Source.ValueString())
		if err != nil {
			resp.Diagnostics.AddAttributeError(path.Root("source"), "Cannot package source", err.Error())
			return
		}
		plan.SourceSHA256 = types.StringValue(digest)
	}
	if plan.Handler.IsUnknown() && !plan.Runtime.IsUnknown() {
		if h := (model.Function{Runtime: plan.Runtime.ValueString()}).WithDefaults().Handler; h != "" {
			plan.Handler = types.StringValue(h)
		}
	}
	if plan.CPUMHz.IsUnknown() && !plan.MemoryMB.IsUnknown() {
		plan.CPUMHz = types.Int64Value(int64(model.Function{MemoryMB: int(plan.MemoryMB.ValueInt64())}.EffectiveCPUMHz()))
	}
	if r.data != nil && r.data.Settings.HostNetwork && plan.Egress.ValueString() == model.EgressNone {
		resp.Diagnostics.AddAttributeError(path.Root("egress"), "egress = \"none\" needs isolated networking",
			"The provider runs functions with host networking (host_network or NIMBUS_HOST_NETWORK), where instances share the host's network and egress cannot be restricted. "+
				"Set up the Nimbus CNI networks on the clients (see the platform guide) and unset host_network, or remove egress.")
		return
	}
	if !plan.ReservedConcurrency.IsNull() && !plan.ReservedConcurrency.IsUnknown() && !plan.Name.IsUnknown() && r.data != nil && r.data.Consul != nil {
		resp.Diagnostics.Append(r.checkReservation(ctx, plan)...)
		if resp.Diagnostics.HasError() {
			return
		}
	}
	r.warnKillTimeout(ctx, plan, &resp.Diagnostics)
	if !plan.Name.IsUnknown() {
		plan.ID = plan.Name
		plan.JobID = types.StringValue("nimbus-fn-" + plan.Name.ValueString())
		plan.InvokeURL = types.StringValue(r.invokeURL(plan.Name.ValueString()))
	}
	if req.State.Raw.IsNull() {
		plan.Version, plan.QualifiedInvokeURL = types.StringValue(model.Latest), types.StringValue("")
		if plan.Publish.ValueBool() || plan.Publish.IsUnknown() {
			plan.Version, plan.QualifiedInvokeURL = types.StringUnknown(), types.StringUnknown()
		} else if !plan.Name.IsUnknown() {
			plan.QualifiedInvokeURL = types.StringValue(r.invokeURL(model.Qualify(plan.Name.ValueString(), model.Latest)))
		}
	}
	// job_version changes only when the job does, version only when a
	// version is published.
	if !req.State.Raw.IsNull() {
		var state functionModel
		resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
		// The framework cannot see a change of the code behind an unchanged
		// source path, so say here when the job gets a new version.
		if jobUnchanged(state, plan) {
			plan.JobVersion = state.JobVersion
		} else {
			plan.JobVersion = types.Int64Unknown()
		}
		plan.Version, plan.QualifiedInvokeURL = state.Version, state.QualifiedInvokeURL
		if publishes(&state, plan) {
			plan.Version, plan.QualifiedInvokeURL = types.StringUnknown(), types.StringUnknown()
		}
		plan.ArtifactURLExpires = state.ArtifactURLExpires
		if !state.SourceSHA256.Equal(plan.SourceSHA256) || !state.SourceURL.Equal(plan.SourceURL) {
			plan.ArtifactURLExpires = types.StringUnknown()
		}
		if expires, ok := renewalDue(state.ArtifactURLExpires); ok {
			plan.ArtifactURLExpires, plan.JobVersion = types.StringUnknown(), types.Int64Unknown()
			resp.Diagnostics.AddAttributeWarning(path.Root("artifact_url_expires"), "Renewing the signed URL of the function's code",
				fmt.Sprintf("Nomad clients fetch the code of %s with a signed URL that expires at %s. This apply renews it, which registers a new version of the job. "+
					"If this shows at every plan, the gateway's -artifact-url-ttl is shorter than the 30 days of renewal: raise it.",
					plan.Name.ValueString(), expires.Format(time.RFC3339)))
		}
	}
	resp.Diagnostics.Append(resp.Plan.Set(ctx, &plan)...)
}

// packages is the provider's package cache, or one for this call before
// the provider is configured.
func (r *functionResource) packages() *packaging.Cache {
	if r.data != nil && r.data.Packages != nil {
		return r.data.Packages
	}
	return packaging.NewCache("")
}

// renewalDue reports whether a signed URL expiring at expires (RFC 3339)
// is within urlRenewal of its expiry.
func renewalDue(expires types.String) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339, expires.ValueString())
	if err != nil {
		return t, false
	}
	return t, time.Until(t) < urlRenewal
}

func (r *functionResource) invokeURL(name string) string {
	if r.data == nil || r.data.Settings.Gateway.URL == "" {
		return ""
	}
	return r.data.Settings.Gateway.URL + "/v1/functions/" + name + "/invoke"
}

// snapshotUnchanged reports whether nothing that a published version
// snapshots changed: everything that renders into the job but the
// function's instance counts.
func snapshotUnchanged(a, b functionModel) bool {
	a.MinInstances, a.MaxInstances = b.MinInstances, b.MaxInstances
	return jobUnchanged(a, b)
}

// publishes reports whether applying plan over prior (nil: a new
// function) publishes a version: with publish set, when the function is
// new, changed, or has no version yet.
func publishes(prior *functionModel, plan functionModel) bool {
	if !plan.Publish.ValueBool() && !plan.Publish.IsUnknown() {
		return false
	}
	return prior == nil || prior.Version.ValueString() == model.Latest || !snapshotUnchanged(*prior, plan)
}

// jobUnchanged reports whether nothing that renders into the job changed.
func jobUnchanged(a, b functionModel) bool {
	return a.Name.Equal(b.Name) && a.Description.Equal(b.Description) && a.Runtime.Equal(b.Runtime) &&
		a.Handler.Equal(b.Handler) && a.MemoryMB.Equal(b.MemoryMB) && a.CPUMHz.Equal(b.CPUMHz) &&
		a.Timeout.Equal(b.Timeout) && a.Environment.Equal(b.Environment) && a.Secrets.Equal(b.Secrets) && a.Concurrency.Equal(b.Concurrency) &&
		a.MinInstances.Equal(b.MinInstances) && a.MaxInstances.Equal(b.MaxInstances) &&
		a.BillingGranularity.Equal(b.BillingGranularity) && a.SourceSHA256.Equal(b.SourceSHA256) &&
		a.SourceURL.Equal(b.SourceURL) && a.Egress.Equal(b.Egress)
}

func (r *functionResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	name := strings.TrimPrefix(req.ID, "nimbus-fn-")
	if e := model.ValidateName(name); e != nil {
		resp.Diagnostics.AddError("Invalid import ID", "Import a function by its name: "+e.Message)
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("name"), name)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), name)...)
}

// checkReservation refuses, at plan time, a reservation that would leave
// less than 100 of the namespace's max_concurrency unreserved.
func (r *functionResource) checkReservation(ctx context.Context, plan functionModel) diag.Diagnostics {
	var diags diag.Diagnostics
	ns := namespaceOrDefault(r.data.Settings.Nomad.Namespace)
	limits, err := limitsFor(ctx, r.data.Consul, ns)
	var reserved map[string]int
	if err == nil {
		reserved, err = reservations(ctx, r.data.Consul, ns, plan.Name.ValueString())
	}
	if err != nil {
		checkSkipped(&diags, path.Root("reserved_concurrency"), "the namespace's reserved concurrency", err,
			"The plan goes on; the gateway still enforces max_concurrency with its own accounting.")
		return diags
	}
	reserved[plan.Name.ValueString()] = int(plan.ReservedConcurrency.ValueInt64())
	if msg := kvstore.CheckReservations(limits.MaxConcurrency, reserved); msg != "" {
		diags.AddAttributeError(path.Root("reserved_concurrency"), "Too much reserved concurrency", "In namespace "+ns+", "+msg+".")
	}
	return diags
}

// warnKillTimeout warns at plan when the clients would kill a stopping
// instance before it finishes an invocation of the function's timeout.
func (r *functionResource) warnKillTimeout(ctx context.Context, plan functionModel, diags *diag.Diagnostics) {
	if r.data == nil || r.data.Nomad == nil || plan.Timeout.IsUnknown() || plan.Name.IsUnknown() {
		return
	}
	timeout, err := time.ParseDuration(plan.Timeout.ValueString())
	if err != nil {
		return // the validator reports it
	}
	kt, err := r.data.clientKillTimeouts(ctx)
	if err != nil {
		tflog.Debug(ctx, "Cannot read the clients' max_kill_timeout", map[string]any{"error": err.Error()})
		return
	}
	f := model.Function{Timeout: timeout}
	if msg := killTimeoutWarning(kt, plan.Name.ValueString(), timeout, nomadjob.KillTimeout(f)); msg != "" {
		diags.AddAttributeWarning(path.Root("timeout"), "Invocations can be cut short when instances stop", msg)
	}
}
