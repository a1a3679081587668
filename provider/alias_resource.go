package provider

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
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
	InvokeURL       types.String `tfsdk:"invoke_url"`
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
			"invoke_url": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "The gateway's invoke endpoint for the alias, `.../functions/<function>:<name>/invoke`; empty without `gateway_url`.",
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
		},
		Blocks: map[string]schema.Block{
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
	for _, v := range sortedKeys(weights) {
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
	if sum > 1+1e-9 {
		resp.Diagnostics.AddAttributeError(at, "The weights add up to more than 1",
			fmt.Sprintf("They add up to %v: the additional versions would get more than all the invocations. Lower them so that they add up to at most 1.", sum))
	}
}

func (r *aliasResource) write(ctx context.Context, m *aliasModel) diag.Diagnostics {
	var diags diag.Diagnostics
	rec := kvstore.AliasRecord{
		Name: m.Name.ValueString(), Function: m.Function.ValueString(), FunctionVersion: m.FunctionVersion.ValueString(),
		AdditionalVersionWeights: m.weights(ctx, &diags), Description: m.Description.ValueString(),
	}
	if diags.HasError() {
		return diags
	}
	if diags := requireFunctions(ctx, r.data.Consul, "nimbus_alias", rec.Function); diags.HasError() {
		return diags
	}
	// Every version the alias sends invocations to must be published.
	versions := append([]string{rec.FunctionVersion}, sortedKeys(rec.AdditionalVersionWeights)...)
	for _, v := range versions {
		if v == model.Latest {
			continue
		}
		n, _ := strconv.Atoi(v)
		pair, _, err := r.data.Consul.KV().Get(kvstore.VersionKey(rec.Function, n), (&consulapi.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return saveFailed("alias", fmt.Errorf("reading version %s of function %s from Consul KV: %w", v, rec.Function, err))
		}
		if pair == nil {
			diags.AddError(fmt.Sprintf("Version %s of function %s is not published", v, rec.Function),
				fmt.Sprintf("nimbus_alias %s sends invocations to version %s, which does not exist. Set publish = true on the function and reference its version attribute, "+
					"or name a version that its published_versions in GET /v1/functions/%s lists.", rec.Name, v, rec.Function))
			return diags
		}
	}
	if _, err := r.data.Consul.KV().Put(&consulapi.KVPair{Key: kvstore.AliasKey(rec.Function, rec.Name), Value: rec.Encode()}, (&consulapi.WriteOptions{}).WithContext(ctx)); err != nil {
		return saveFailed("alias", fmt.Errorf("writing it to Consul KV: %w", err))
	}
	m.ID = types.StringValue(rec.Function + "/" + rec.Name)
	m.InvokeURL = types.StringValue(r.invokeURL(rec.Function, rec.Name))
	return nil
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
	saveModel(ctx, req.Plan, &resp.State, &resp.Diagnostics, r.write)
}

func (r *aliasResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	saveModel(ctx, req.Plan, &resp.State, &resp.Diagnostics, r.write)
}

func (r *aliasResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	readKV(ctx, r.data.Consul, req, resp, "alias", aliasKey, kvstore.DecodeAlias, func(state *aliasModel, a kvstore.AliasRecord) {
		state.ID = types.StringValue(a.Function + "/" + a.Name)
		state.Name = types.StringValue(a.Name)
		state.Function = types.StringValue(a.Function)
		state.FunctionVersion = types.StringValue(a.FunctionVersion)
		state.Description = optionalString(a.Description)
		state.InvokeURL = types.StringValue(r.invokeURL(a.Function, a.Name))
		if len(a.AdditionalVersionWeights) > 0 || !state.RoutingConfig.IsNull() {
			state.RoutingConfig = routingConfigValue(a.AdditionalVersionWeights)
		}
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
	deleteKV(ctx, r.data.Consul, req, resp, "alias", aliasKey)
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

// sortedKeys are a map's keys in order, so that messages and checks come
// in the same order at every plan.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
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
