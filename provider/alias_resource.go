package provider

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/backoff"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/progressive"
)

var (
	_ resource.ResourceWithConfigure      = (*aliasResource)(nil)
	_ resource.ResourceWithImportState    = (*aliasResource)(nil)
	_ resource.ResourceWithValidateConfig = (*aliasResource)(nil)
)

func newAliasResource() resource.Resource { return &aliasResource{} }

// aliasResource is nimbus_alias: a name for one of a function's versions,
// with part of the traffic sent to other versions by weight, as
// aws_lambda_alias. It lives in Consul KV beside the function's versions;
// the gateways follow it, so a change of weights takes effect at once and
// touches no instance.
type aliasResource struct {
	withProviderData
}

type aliasModel struct {
	ID              types.String `tfsdk:"id"`
	Name            types.String `tfsdk:"name"`
	Function        types.String `tfsdk:"function"`
	FunctionVersion types.String `tfsdk:"function_version"`
	Description     types.String `tfsdk:"description"`
	RoutingConfig   types.Object `tfsdk:"routing_config"`
	Deployment      types.Object `tfsdk:"deployment"`
	WaitForDeploy   types.Bool   `tfsdk:"wait_for_deployment"`
	InvokeURL       types.String `tfsdk:"invoke_url"`
}

type deploymentModel struct {
	Type           types.String  `tfsdk:"type"`
	Percentage     types.Float64 `tfsdk:"percentage"`
	Interval       types.String  `tfsdk:"interval"`
	ErrorRateAbove types.Float64 `tfsdk:"error_rate_above"`
	P99Above       types.String  `tfsdk:"p99_above"`
	Window         types.String  `tfsdk:"window"`
	MinRequests    types.Int64   `tfsdk:"min_requests"`
}

type routingConfigModel struct {
	Weights types.Map `tfsdk:"additional_version_weights"`
}

var routingConfigType = map[string]attr.Type{"additional_version_weights": types.MapType{ElemType: types.Float64Type}}

func (r *aliasResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_alias"
}

func (r *aliasResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	replace := []planmodifier.String{stringplanmodifier.RequiresReplace()}
	resp.Schema = schema.Schema{
		MarkdownDescription: "An alias of a function, as `aws_lambda_alias`: a name for one of its versions (see `publish` on `nimbus_function`), " +
			"with part of the invocations sent to other versions by weight. Callers invoke `<function>:<alias>`, on the Lambda Invoke API " +
			"(or with `Qualifier=`) and on the native API (or with `?qualifier=`); `X-Amz-Executed-Version` says which version ran. " +
			"The alias lives in Consul KV under `nimbus/functions/<function>/aliases/<name>`: a change takes effect in the gateways at once, " +
			"and touches no instance. Import with `<function>/<name>`.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "`<function>/<name>`.",
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"name": schema.StringAttribute{
				Required:            true,
				MarkdownDescription: "The alias's name: letters, digits, `-` and `_`, at most 128, not all digits (those name versions).",
				PlanModifiers:       replace,
				Validators:          []validator.String{qualifierValidator{alias: true}},
			},
			"function": schema.StringAttribute{
				Required:            true,
				MarkdownDescription: "The function; reference `nimbus_function.<x>.name`.",
				PlanModifiers:       replace,
				Validators:          []validator.String{stringvalidator.RegexMatches(functionName, "must be a function name (a DNS label)")},
			},
			"function_version": schema.StringAttribute{
				Required: true,
				MarkdownDescription: "The version the alias names: a published version's number (reference `nimbus_function.<x>.version`), or `$LATEST`. " +
					"It gets the invocations that `routing_config` does not send elsewhere.",
				Validators: []validator.String{qualifierValidator{version: true}},
			},
			"description": schema.StringAttribute{
				Optional:            true,
				MarkdownDescription: "What the alias is for.",
				Validators:          []validator.String{stringvalidator.LengthAtMost(256)},
			},
			"wait_for_deployment": schema.BoolAttribute{
				Optional: true,
				Computed: true,
				Default:  booldefault.StaticBool(false),
				MarkdownDescription: "Wait, when `function_version` changes under a `canary` or `linear` `deployment`, until the deployment ends: " +
					"the apply succeeds once the new version gets all the invocations, and fails with the reason if it rolled back.",
			},
			"invoke_url": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "The gateway's invoke endpoint for the alias, `.../functions/<function>:<name>/invoke`; empty without `gateway_url`.",
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
		},
		Blocks: map[string]schema.Block{
			"deployment": schema.SingleNestedBlock{
				MarkdownDescription: "How the alias moves to a new `function_version`, natively, as CodeDeploy does for Lambda: " +
					"the gateways shift its invocations from the version it named to the new one step by step, and roll back to the old one " +
					"when a condition trips on the new version's invocations. One gateway drives each deployment (a Consul lock), and the next resumes it " +
					"at its step. Its state shows in `GET /v1/functions/<function>` (`alias_deployments`) and, step by step, as scaling events of the new version's Nomad job. " +
					"After a rollback, the alias's `function_version` reads as the old version, so the next plan shows the drift.",
				Attributes: map[string]schema.Attribute{
					"type": schema.StringAttribute{
						Optional: true,
						MarkdownDescription: "`all_at_once` (the default: the new version gets everything at once), `canary` (`percentage` for `interval`, then everything) " +
							"or `linear` (`percentage` more every `interval`).",
						Validators: []validator.String{stringvalidator.OneOf(kvstore.DeployAllAtOnce, kvstore.DeployCanary, kvstore.DeployLinear)},
					},
					"percentage": schema.Float64Attribute{
						Optional:            true,
						MarkdownDescription: "The share of the invocations, in percent (above 0, below 100), that the new version gets at the first step, and that `linear` adds at each step.",
					},
					"interval": schema.StringAttribute{
						Optional:            true,
						MarkdownDescription: "How long each step lasts, at least `1s`: `\"5m\"`.",
					},
					"error_rate_above": schema.Float64Attribute{
						Optional:            true,
						MarkdownDescription: "Roll back when the new version fails more than this percentage of its invocations over `window` (a function error, a timeout, or the gateway unable to run it; throttles do not count).",
					},
					"p99_above": schema.StringAttribute{
						Optional:            true,
						MarkdownDescription: "Roll back when the new version's p99 latency, as the callers see it, is above this over `window`: `\"500ms\"`.",
					},
					"window": schema.StringAttribute{
						Optional:            true,
						MarkdownDescription: "How far back the rollback conditions look, never before the deployment began. Default `1m`.",
					},
					"min_requests": schema.Int64Attribute{
						Optional:            true,
						MarkdownDescription: "The fewest invocations of the new version in `window` on which the conditions judge. Default 10.",
					},
				},
			},
			"routing_config": schema.SingleNestedBlock{
				MarkdownDescription: "Sends part of the alias's invocations to other versions, as Lambda's weighted aliases.",
				Attributes: map[string]schema.Attribute{
					"additional_version_weights": schema.MapAttribute{
						ElementType: types.Float64Type,
						Optional:    true,
						MarkdownDescription: "Each published version's share of the invocations, from 0 to 1, keyed by its number: " +
							"`{ \"2\" = 0.1 }` sends a tenth to version 2 and the rest to `function_version`. The shares add up to at most 1.",
					},
				},
			},
		},
	}
}

// weights reads the routing_config's weights; nil when it has none.
func (m aliasModel) weights(ctx context.Context, diags *diag.Diagnostics) map[string]float64 {
	if m.RoutingConfig.IsNull() || m.RoutingConfig.IsUnknown() {
		return nil
	}
	var rc routingConfigModel
	diags.Append(m.RoutingConfig.As(ctx, &rc, basetypes.ObjectAsOptions{})...)
	if rc.Weights.IsNull() || rc.Weights.IsUnknown() {
		return nil
	}
	w := map[string]float64{}
	diags.Append(rc.Weights.ElementsAs(ctx, &w, false)...)
	if len(w) == 0 {
		return nil
	}
	return w
}

// deployment reads the deployment block; nil without one, or while a value
// is unknown.
func (m aliasModel) deployment(ctx context.Context, diags *diag.Diagnostics) *kvstore.AliasDeployment {
	if m.Deployment.IsNull() || m.Deployment.IsUnknown() {
		return nil
	}
	var d deploymentModel
	diags.Append(m.Deployment.As(ctx, &d, basetypes.ObjectAsOptions{})...)
	if d.Type.IsUnknown() || d.Percentage.IsUnknown() || d.Interval.IsUnknown() || d.ErrorRateAbove.IsUnknown() ||
		d.P99Above.IsUnknown() || d.Window.IsUnknown() || d.MinRequests.IsUnknown() {
		return nil
	}
	out := &kvstore.AliasDeployment{
		Type: d.Type.ValueString(), Percentage: d.Percentage.ValueFloat64(), Interval: d.Interval.ValueString(),
		ErrorRateAbove: d.ErrorRateAbove.ValueFloat64(), P99Above: d.P99Above.ValueString(), Window: d.Window.ValueString(),
		MinRequests: int(d.MinRequests.ValueInt64()),
	}
	if out.Type == "" {
		out.Type = kvstore.DeployAllAtOnce
	}
	return out
}

// ValidateConfig checks the weights at plan time: versions by number, each
// share from 0 to 1, at most 1 in all, none for the alias's own version.
func (r *aliasResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var m aliasModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	weights := m.weights(ctx, &resp.Diagnostics)
	at := path.Root("routing_config").AtName("additional_version_weights")
	if len(weights) > 0 && m.FunctionVersion.ValueString() == model.Latest {
		resp.Diagnostics.AddAttributeError(path.Root("function_version"), "An alias with weights names a published version",
			"$LATEST changes with every apply, so a split between it and a version compares nothing fixed. Set publish on the function, and name its version (nimbus_function.<x>.version).")
	}
	sum := 0.0
	for _, v := range slices.Sorted(maps.Keys(weights)) {
		w := weights[v]
		switch {
		case !model.IsVersionNumber(v):
			resp.Diagnostics.AddAttributeError(at.AtMapKey(v), "Weights are keyed by version number",
				fmt.Sprintf("%q is not a published version's number (1, 2, ...). Key each weight by the version it sends invocations to.", v))
		case v == m.FunctionVersion.ValueString():
			resp.Diagnostics.AddAttributeError(at.AtMapKey(v), "A weight for the alias's own version",
				"function_version gets every invocation the weights do not send elsewhere; weight only other versions.")
		case w < 0 || w > 1:
			resp.Diagnostics.AddAttributeError(at.AtMapKey(v), "A weight is a share from 0 to 1",
				fmt.Sprintf("Version %s has weight %v. Write 0.1 for a tenth of the invocations.", v, w))
		}
		sum += w
	}
	if d := m.deployment(ctx, &resp.Diagnostics); d != nil {
		if _, err := progressive.ParseSpec(*d); err != nil {
			resp.Diagnostics.AddAttributeError(path.Root("deployment"), "Invalid deployment",
				"The alias's deployment "+err.Error()+". For example: type = \"canary\", percentage = 10, interval = \"5m\", error_rate_above = 5.")
		}
		if d.Type != kvstore.DeployAllAtOnce && len(weights) > 0 {
			resp.Diagnostics.AddAttributeError(path.Root("routing_config"), "Weights and a progressive deployment",
				"A canary or linear deployment sets the alias's weights itself, step by step. Remove routing_config, or the deployment block.")
		}
	}
	if sum > 1+1e-9 {
		resp.Diagnostics.AddAttributeError(at, "The weights add up to more than 1",
			fmt.Sprintf("They add up to %v: the additional versions would get more than all the invocations. Lower them so that they add up to at most 1.", sum))
	}
}

// write saves the alias as planned over prior (nil on create). When a
// canary or linear deployment moves it to a new version, the record names
// the version it served before and a new deployment, which the gateways
// run; with wait_for_deployment, write waits for its end. rolledBack says
// the deployment rolled back: the alias then serves prior's version again.
func (r *aliasResource) write(ctx context.Context, m *aliasModel, prior *aliasModel) (rolledBack bool, diags diag.Diagnostics) {
	rec := kvstore.AliasRecord{
		Name: m.Name.ValueString(), Function: m.Function.ValueString(), FunctionVersion: m.FunctionVersion.ValueString(),
		AdditionalVersionWeights: m.weights(ctx, &diags), Description: m.Description.ValueString(), Deployment: m.deployment(ctx, &diags),
	}
	if diags.HasError() {
		return false, diags
	}
	// The function, and every version the alias sends invocations to,
	// must exist.
	targets := []string{rec.Function}
	for _, v := range append([]string{rec.FunctionVersion}, slices.Sorted(maps.Keys(rec.AdditionalVersionWeights))...) {
		targets = append(targets, model.Qualify(rec.Function, v))
	}
	if diags := requireFunctions(ctx, r.data.Consul, "nimbus_alias "+rec.Name, targets...); diags.HasError() {
		return false, diags
	}
	kv := r.data.Consul.KV()
	current, found, err := readRecord(ctx, r.data.Consul, kvstore.AliasKey(rec.Function, rec.Name), kvstore.DecodeAlias)
	if err != nil {
		return false, saveFailed("alias", fmt.Errorf("reading it from Consul KV: %w", err))
	}
	switch {
	case prior != nil && prior.FunctionVersion.ValueString() != rec.FunctionVersion && rec.Deployment != nil:
		rec.PreviousVersion, rec.DeploymentID = prior.FunctionVersion.ValueString(), newDeploymentID()
	case found && current.FunctionVersion == rec.FunctionVersion && rec.Deployment != nil:
		// Another change (a description, say) leaves the deployment be.
		rec.PreviousVersion, rec.DeploymentID = current.PreviousVersion, current.DeploymentID
	}
	if _, err := kv.Put(&consulapi.KVPair{Key: kvstore.AliasKey(rec.Function, rec.Name), Value: rec.Encode()}, (&consulapi.WriteOptions{}).WithContext(ctx)); err != nil {
		return false, saveFailed("alias", fmt.Errorf("writing it to Consul KV: %w", err))
	}
	m.ID = types.StringValue(rec.Function + "/" + rec.Name)
	m.InvokeURL = types.StringValue(r.invokeURL(rec.Function, rec.Name))
	if !rec.Deploying() || !m.WaitForDeploy.ValueBool() {
		return false, nil
	}
	return r.awaitDeployment(ctx, rec)
}

// newDeploymentID names a deployment, unique enough that no two of one
// alias share it.
func newDeploymentID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// awaitDeployment waits until the gateways have run the alias's deployment
// to its end: an error names the reason of a rollback, or what stalled.
func (r *aliasResource) awaitDeployment(ctx context.Context, a kvstore.AliasRecord) (rolledBack bool, diags diag.Diagnostics) {
	spec, err := progressive.ParseSpec(*a.Deployment)
	if err != nil {
		diags.AddError("Invalid deployment", err.Error())
		return false, diags
	}
	// The steps take their intervals; the rest is for the gateway to
	// start it and for the last judgements.
	bound := time.Duration(len(spec.Steps()))*spec.Interval + 5*time.Minute
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	key := kvstore.DeploymentKey(a.Function, a.Name)
	var st kvstore.DeploymentState
	var index uint64
	for {
		pair, meta, err := r.data.Consul.KV().Get(key, (&consulapi.QueryOptions{WaitIndex: index, WaitTime: 10 * time.Second}).WithContext(ctx))
		if ctx.Err() != nil {
			where := "no gateway started it: check that a gateway runs, with a Consul token that may write nimbus/deployments/ and nimbus/deployment-locks/ (examples/platform/policies/consul/gateway.hcl)"
			if st.ID == a.DeploymentID {
				where = fmt.Sprintf("it stands at step %d of %d, %.0f%% to version %s", st.Step, st.Steps, 100*st.Weight, a.FunctionVersion)
			}
			diags.AddError("The alias's deployment did not finish in time",
				fmt.Sprintf("nimbus_alias %s waited %s for its deployment to version %s: %s. The gateways go on with it; see GET /v1/functions/%s.", a.Name, bound, a.FunctionVersion, where, a.Function))
			return false, diags
		}
		if err != nil {
			// Consul failed (a restart, a new leader): look again in a
			// second, or report above once ctx ends.
			_ = backoff.Sleep(ctx, time.Second)
			continue
		}
		index = meta.LastIndex
		if pair == nil {
			continue
		}
		if st, err = kvstore.DecodeDeployment(pair.Value); err != nil || st.ID != a.DeploymentID {
			continue
		}
		switch st.Status {
		case kvstore.DeploymentSucceeded:
			return false, nil
		case kvstore.DeploymentRolledBack:
			diags.AddError(fmt.Sprintf("The deployment of version %s to alias %s rolled back", a.FunctionVersion, a.Name),
				fmt.Sprintf("%s.\n\nThe alias serves version %s again. Publish a fixed version and point function_version at it, or apply again to retry version %s.",
					st.Reason, a.PreviousVersion, a.FunctionVersion))
			return true, diags
		}
	}
}

func (r *aliasResource) invokeURL(function, alias string) string {
	if r.data == nil || r.data.Settings.Gateway.URL == "" {
		return ""
	}
	return r.data.Settings.Gateway.URL + "/v1/functions/" + model.Qualify(function, alias) + "/invoke"
}

// aliasKey is the KV key of the alias whose id is <function>/<name>.
func aliasKey(id string) string {
	function, name, _ := strings.Cut(id, "/")
	return kvstore.AliasKey(function, name)
}

func (r *aliasResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	r.save(ctx, req.Plan, nil, &resp.State, &resp.Diagnostics)
}

func (r *aliasResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var prior aliasModel
	resp.Diagnostics.Append(req.State.Get(ctx, &prior)...)
	if resp.Diagnostics.HasError() {
		return
	}
	r.save(ctx, req.Plan, &prior, &resp.State, &resp.Diagnostics)
}

// save writes the planned alias. After a rollback the state keeps the
// alias with the version it serves, so that the next plan shows the
// drift, and the apply fails.
func (r *aliasResource) save(ctx context.Context, planned tfsdk.Plan, prior *aliasModel, state *tfsdk.State, diags *diag.Diagnostics) {
	var m aliasModel
	diags.Append(planned.Get(ctx, &m)...)
	if diags.HasError() {
		return
	}
	rolledBack, d := r.write(ctx, &m, prior)
	diags.Append(d...)
	if rolledBack {
		m.FunctionVersion = prior.FunctionVersion
	} else if diags.HasError() {
		return
	}
	diags.Append(state.Set(ctx, &m)...)
}

func (r *aliasResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	readKV(ctx, r.data.Consul, req, resp, "alias", aliasKey, kvstore.DecodeAlias, func(state *aliasModel, a kvstore.AliasRecord) {
		state.ID = types.StringValue(a.Function + "/" + a.Name)
		state.Name = types.StringValue(a.Name)
		state.Function = types.StringValue(a.Function)
		state.FunctionVersion = types.StringValue(a.FunctionVersion)
		state.Description = optionalString(a.Description)
		state.InvokeURL = types.StringValue(r.invokeURL(a.Function, a.Name))
		if state.WaitForDeploy.IsNull() { // imported
			state.WaitForDeploy = types.BoolValue(false)
		}
		if len(a.AdditionalVersionWeights) > 0 || !state.RoutingConfig.IsNull() {
			state.RoutingConfig = routingConfigValue(a.AdditionalVersionWeights)
		}
		if a.Deployment != nil && state.Deployment.IsNull() {
			state.Deployment = deploymentValue(*a.Deployment)
		}
		// A deployment that rolled back left the alias on the version it
		// named before: that is the version it serves.
		if a.Deploying() {
			st, found, err := readRecord(ctx, r.data.Consul, kvstore.DeploymentKey(a.Function, a.Name), kvstore.DecodeDeployment)
			if err == nil && found && st.ID == a.DeploymentID && st.Status == kvstore.DeploymentRolledBack {
				state.FunctionVersion = types.StringValue(a.PreviousVersion)
			}
		}
	})
}

var deploymentType = map[string]attr.Type{
	"type": types.StringType, "percentage": types.Float64Type, "interval": types.StringType, "error_rate_above": types.Float64Type,
	"p99_above": types.StringType, "window": types.StringType, "min_requests": types.Int64Type,
}

// deploymentValue is the deployment block of a record, for an import.
func deploymentValue(d kvstore.AliasDeployment) types.Object {
	optFloat := func(f float64) types.Float64 {
		if f == 0 {
			return types.Float64Null()
		}
		return types.Float64Value(f)
	}
	minRequests := types.Int64Null()
	if d.MinRequests > 0 {
		minRequests = types.Int64Value(int64(d.MinRequests))
	}
	return types.ObjectValueMust(deploymentType, map[string]attr.Value{
		"type": optionalString(d.Type), "percentage": optFloat(d.Percentage), "interval": optionalString(d.Interval),
		"error_rate_above": optFloat(d.ErrorRateAbove), "p99_above": optionalString(d.P99Above), "window": optionalString(d.Window),
		"min_requests": minRequests,
	})
}

// routingConfigValue is the routing_config block of the weights (a null
// map for none).
func routingConfigValue(weights map[string]float64) types.Object {
	m := types.MapNull(types.Float64Type)
	if len(weights) > 0 {
		elems := map[string]attr.Value{}
		for v, w := range weights {
			elems[v] = types.Float64Value(w)
		}
		m = types.MapValueMust(types.Float64Type, elems)
	}
	return types.ObjectValueMust(routingConfigType, map[string]attr.Value{"additional_version_weights": m})
}

func (r *aliasResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	deleteKV(ctx, r.data.Consul, req, resp, "alias", aliasKey, deploymentKey)
}

// deploymentKey is the KV key of the deployment state of the alias whose
// id is <function>/<name>.
func deploymentKey(id string) string {
	function, name, _ := strings.Cut(id, "/")
	return kvstore.DeploymentKey(function, name)
}

// ImportState takes <function>/<name>, as aws_lambda_alias does.
func (r *aliasResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	function, name, ok := strings.Cut(req.ID, "/")
	if !ok || model.ValidateName(function) != nil || model.ValidateQualifier(name) != nil || name == "" || model.IsVersionNumber(name) || name == model.Latest {
		resp.Diagnostics.AddError("Invalid import ID", fmt.Sprintf("Import an alias as <function>/<name>, for example orders/live; got %q.", req.ID))
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), req.ID)...)
}

// qualifierValidator checks an alias name (alias) or a version
// (version: a number or $LATEST) at plan time.
type qualifierValidator struct{ alias, version bool }

func (v qualifierValidator) Description(context.Context) string {
	if v.alias {
		return "an alias name: letters, digits, - and _, at most 128, not all digits"
	}
	return "a published version's number, or $LATEST"
}

func (v qualifierValidator) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}

func (v qualifierValidator) ValidateString(ctx context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	s := req.ConfigValue.ValueString()
	ok := model.ValidateQualifier(s) == nil && s != ""
	if v.alias {
		ok = ok && !model.IsVersionNumber(s) && s != model.Latest
	} else {
		ok = model.IsVersionNumber(s) || s == model.Latest
	}
	if !ok {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid "+req.Path.String(), fmt.Sprintf("%q must be %s.", s, v.Description(ctx)))
	}
}
