package provider

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/terraform-plugin-framework-validators/setvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/setplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
)

var (
	_ resource.ResourceWithConfigure   = (*httpRouteResource)(nil)
	_ resource.ResourceWithModifyPlan  = (*httpRouteResource)(nil)
	_ resource.ResourceWithImportState = (*httpRouteResource)(nil)
)

func newHTTPRouteResource() resource.Resource { return &httpRouteResource{} }

// httpRouteResource is nimbus_http_route: the gateway serves matching HTTP
// requests by invoking a function with an API Gateway v2 event.
type httpRouteResource struct {
	withProviderData
}

type httpRouteModel struct {
	ID       types.String `tfsdk:"id"`
	Function types.String `tfsdk:"function"`
	Path     types.String `tfsdk:"path"`
	Match    types.String `tfsdk:"match"`
	Methods  types.Set    `tfsdk:"methods"`
	Host     types.String `tfsdk:"host"`
	// Authorization is who may call the route.
	Authorization types.String `tfsdk:"authorization"`
	URL           types.String `tfsdk:"url"`
}

// reservedPaths belong to the gateway's own API.
var reservedPaths = []string{"/v1/", "/2015-03-31/", "/metrics", "/healthz"}

func (r *httpRouteResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_http_route"
}

func (r *httpRouteResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	replace := []planmodifier.String{stringplanmodifier.RequiresReplace()}
	resp.Schema = schema.Schema{
		MarkdownDescription: "An HTTP route on the Nimbus gateway. A matching request reaches the function as an API Gateway v2 " +
			"(payload format 2.0) event, and the function's answer (`statusCode`, `headers`, `body`) becomes the response. " +
			"Routes live in Consul KV under `nimbus/routes/`; the gateway picks up changes without a restart. " +
			"Exact paths win over prefixes, longer prefixes over shorter ones.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "What the route matches: `[host]path[*] [METHODS]` (`*` marks a prefix). Import by it.",
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"function": schema.StringAttribute{
				Required:            true,
				MarkdownDescription: targetDescription("The function that serves the route."),
				Validators:          []validator.String{functionTarget()},
			},
			"path": schema.StringAttribute{
				Required:            true,
				PlanModifiers:       replace,
				MarkdownDescription: "Path to match, starting with `/`. Paths of the gateway's own API (`/v1/`, `/2015-03-31/`, `/metrics`, `/healthz`) are refused.",
				Validators:          []validator.String{stringvalidator.RegexMatches(regexp.MustCompile(`^/[^\s?#]*$`), "must start with / and hold no spaces, query or fragment")},
			},
			"match": schema.StringAttribute{
				Optional:            true,
				Computed:            true,
				Default:             stringdefault.StaticString("prefix"),
				PlanModifiers:       replace,
				MarkdownDescription: "`prefix` (default: the path and everything below it, by whole segments) or `exact`.",
				Validators:          []validator.String{stringvalidator.OneOf("prefix", "exact")},
			},
			"methods": schema.SetAttribute{
				ElementType:         types.StringType,
				Optional:            true,
				PlanModifiers:       []planmodifier.Set{setplanmodifier.RequiresReplace()},
				MarkdownDescription: "HTTP methods to match, uppercase (`GET`, `POST`, ...). Unset: any method.",
				Validators: []validator.Set{setvalidator.SizeAtLeast(1), setvalidator.ValueStringsAre(stringvalidator.OneOf(
					http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions))},
			},
			"host": schema.StringAttribute{
				Optional:            true,
				PlanModifiers:       replace,
				MarkdownDescription: "Host to match (without port). Unset: any host.",
				Validators:          []validator.String{stringvalidator.RegexMatches(regexp.MustCompile(`^[A-Za-z0-9.-]+$`), "must be a host name without scheme or port")},
			},
			"authorization": schema.StringAttribute{
				Optional: true,
				Computed: true,
				Default:  stringdefault.StaticString(kvstore.RouteAuthIAM),
				MarkdownDescription: "Who may call the route, as API Gateway names it: " +
					"`AWS_IAM` (the default) wants a SigV4 signature for service `execute-api` by a `nimbus_access_key` that may invoke the function; " +
					"`API_KEY` wants such a key's `bearer_token` in `x-api-key` or `Authorization: Bearer`; " +
					"`NONE` lets anyone on the network call it, for public routes. " +
					"The default is the safest: a signature proves the caller, covers the body and expires after 15 minutes, and the secret never crosses the network, " +
					"whereas a token is replayable by whoever sees it. `NONE` must be written out, so a public route is visible in review. " +
					"The gateway strips the credentials (`Authorization`, `x-api-key`) from the event of an `AWS_IAM` or `API_KEY` route: they are the caller's, not the function's.",
				Validators: []validator.String{stringvalidator.OneOf(kvstore.RouteAuthorizations...)},
			},
			"url": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "The route on the gateway (for routes without a host).",
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
		},
	}
}

// route builds the record from a model whose match attributes are known.
func (m httpRouteModel) route(ctx context.Context) (kvstore.Route, diag.Diagnostics) {
	methods, diags := setStrings(ctx, m.Methods)
	sort.Strings(methods)
	rt := kvstore.Route{Function: m.Function.ValueString(), Host: m.Host.ValueString(), Path: m.Path.ValueString(), Match: m.Match.ValueString(), Methods: methods,
		Authorization: m.Authorization.ValueString()}
	if rt.Authorization == "" {
		rt.Authorization = kvstore.RouteAuthIAM
	}
	if rt.Match == "" {
		rt.Match = "prefix"
	}
	rt.ID = kvstore.RouteID(rt.Host, rt.Path, rt.Match, rt.Methods)
	return rt, diags
}

func (m httpRouteModel) matchKnown() bool {
	return !m.Path.IsUnknown() && !m.Match.IsUnknown() && !m.Methods.IsUnknown() && !m.Host.IsUnknown()
}

// ModifyPlan computes the id and refuses, at plan time, a route that
// another route already matches.
func (r *httpRouteResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() {
		return
	}
	var plan httpRouteModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() || !plan.matchKnown() {
		return
	}
	p := plan.Path.ValueString()
	for _, reserved := range reservedPaths {
		if p == strings.TrimSuffix(reserved, "/") || strings.HasPrefix(p, reserved) {
			resp.Diagnostics.AddAttributeError(path.Root("path"), "Reserved path",
				fmt.Sprintf("%s belongs to the gateway's own API (%s); choose another path.", p, strings.Join(reservedPaths, ", ")))
			return
		}
	}
	rt, diags := plan.route(ctx)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	plan.ID = types.StringValue(rt.ID)
	plan.URL = types.StringValue(r.url(rt))
	if r.data != nil && r.data.Consul != nil {
		other, err := r.conflict(ctx, rt)
		switch {
		case err != nil:
			checkSkipped(&resp.Diagnostics, path.Root("path"), "for conflicting routes", err,
				"The plan goes on; apply checks again before it writes the route.")
		case other != nil:
			resp.Diagnostics.AddAttributeError(path.Root("path"), "Conflicting route", conflictMessage(rt, *other))
			return
		}
	}
	resp.Diagnostics.Append(resp.Plan.Set(ctx, &plan)...)
}

// url is where the gateway serves a route without a host; empty for
// routes with a host or without gateway_url.
func (r *httpRouteResource) url(rt kvstore.Route) string {
	if r.data == nil || r.data.Settings.Gateway.URL == "" || rt.Host != "" {
		return ""
	}
	return r.data.Settings.Gateway.URL + rt.Path
}

// conflict finds another route that matches the same requests.
func (r *httpRouteResource) conflict(ctx context.Context, rt kvstore.Route) (*kvstore.Route, error) {
	pairs, _, err := r.data.Consul.KV().List(kvstore.RoutesPrefix, (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, err
	}
	for _, p := range pairs {
		other, err := kvstore.DecodeRoute(p.Value)
		if err != nil || other.ID == rt.ID {
			continue
		}
		if rt.Overlaps(other) {
			return &other, nil
		}
	}
	return nil, nil
}

func conflictMessage(rt, other kvstore.Route) string {
	return fmt.Sprintf("The route %q would match the same requests as the existing route %q (function %s). Change the path, host or methods, or remove the other route.",
		rt.ID, other.ID, other.Function)
}

// plannedRoute reads the plan of an apply and the route it describes.
func plannedRoute(ctx context.Context, planned tfsdk.Plan, diags *diag.Diagnostics) (httpRouteModel, kvstore.Route, bool) {
	var plan httpRouteModel
	diags.Append(planned.Get(ctx, &plan)...)
	if diags.HasError() {
		return plan, kvstore.Route{}, false
	}
	rt, d := plan.route(ctx)
	diags.Append(d...)
	return plan, rt, !diags.HasError()
}

func (r *httpRouteResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	plan, rt, ok := plannedRoute(ctx, req.Plan, &resp.Diagnostics)
	if !ok {
		return
	}
	if resp.Diagnostics.Append(requireFunctions(ctx, r.data.Consul, "nimbus_http_route", rt.Function)...); resp.Diagnostics.HasError() {
		return
	}
	kv := r.data.Consul.KV()
	if other, err := r.conflict(ctx, rt); err != nil {
		resp.Diagnostics.AddError("Cannot read the routes in Consul KV", err.Error())
		return
	} else if other != nil {
		resp.Diagnostics.AddAttributeError(path.Root("path"), "Conflicting route", conflictMessage(rt, *other))
		return
	}
	// Create only: another apply may have raced us to the same route.
	written, _, err := kv.CAS(&consulapi.KVPair{Key: kvstore.RouteKey(rt.ID), Value: rt.Encode(), ModifyIndex: 0}, (&consulapi.WriteOptions{}).WithContext(ctx))
	if err != nil {
		resp.Diagnostics.AddError("Cannot write the route to Consul KV", err.Error())
		return
	}
	if !written {
		resp.Diagnostics.AddAttributeError(path.Root("path"), "Conflicting route", fmt.Sprintf("The route %q already exists; import it or remove it first.", rt.ID))
		return
	}
	plan.ID = types.StringValue(rt.ID)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

func (r *httpRouteResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	readKV(ctx, r.data.Consul, req, resp, "route", kvstore.RouteKey, kvstore.DecodeRoute, func(state *httpRouteModel, rt kvstore.Route) {
		state.Function = types.StringValue(rt.Function)
		state.Authorization = types.StringValue(rt.EffectiveAuthorization())
		state.Path = types.StringValue(rt.Path)
		state.Match = types.StringValue(rt.Match)
		if rt.Host != "" || !state.Host.IsNull() {
			state.Host = types.StringValue(rt.Host)
		}
		if len(rt.Methods) > 0 {
			state.Methods = stringSet(rt.Methods)
		} else {
			state.Methods = types.SetNull(types.StringType)
		}
		state.URL = types.StringValue(r.url(rt))
	})
}

// Update can only change the function: everything else replaces the route.
func (r *httpRouteResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	plan, rt, ok := plannedRoute(ctx, req.Plan, &resp.Diagnostics)
	if !ok {
		return
	}
	if resp.Diagnostics.Append(requireFunctions(ctx, r.data.Consul, "nimbus_http_route", rt.Function)...); resp.Diagnostics.HasError() {
		return
	}
	if _, err := r.data.Consul.KV().Put(&consulapi.KVPair{Key: kvstore.RouteKey(rt.ID), Value: rt.Encode()}, (&consulapi.WriteOptions{}).WithContext(ctx)); err != nil {
		resp.Diagnostics.AddError("Cannot write the route to Consul KV", err.Error())
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

func (r *httpRouteResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	deleteKV(ctx, r.data.Consul, req, resp, "route", kvstore.RouteKey)
}

func (r *httpRouteResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
}
