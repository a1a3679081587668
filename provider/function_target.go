package provider

import (
	"context"
	"fmt"
	"strconv"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
)

// A trigger's target is what its `function` attribute names: a function,
// or <name>:<qualifier> for one of its published versions, one of its
// aliases or $LATEST. The gateway resolves the qualifier on every
// invocation, so a route on an alias follows the alias as it moves.

// targetDescription is the MarkdownDescription of a trigger's `function`
// attribute: lead says what the function is invoked with.
func targetDescription(lead string) string {
	return lead + " Name the function (reference `nimbus_function.<x>.name` so that it is created first), " +
		"or one of its versions or aliases as `<name>:<qualifier>`: a published version's number " +
		"(`\"${nimbus_function.<x>.name}:${nimbus_function.<x>.version}\"`), an alias " +
		"(`\"${nimbus_alias.live.function}:${nimbus_alias.live.name}\"`, which follows the alias as it moves), or `$LATEST`."
}

// functionTarget checks at plan time that a `function` attribute names a
// function, optionally qualified; whether it exists is checked at apply
// (requireFunctions).
func functionTarget() validator.String { return functionTargetValidator{} }

type functionTargetValidator struct{}

func (functionTargetValidator) Description(context.Context) string {
	return "a function name, optionally followed by :<version number>, :<alias> or :$LATEST"
}

func (v functionTargetValidator) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}

func (functionTargetValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if e := model.ValidateTarget(req.ConfigValue.ValueString()); e != nil {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid function", e.Message)
	}
}

// requireFunctions checks at apply that the functions a resource names
// exist, and for a qualified target that the version is published or the
// alias declared: a trigger on something that does not exist would only
// fail its invocations, later and out of sight. Empty targets are skipped.
func requireFunctions(ctx context.Context, consul *consulapi.Client, resourceType string, targets ...string) diag.Diagnostics {
	var diags diag.Diagnostics
	for _, target := range targets {
		if target == "" {
			continue
		}
		// A target unknown at plan time was not validated there.
		if e := model.ValidateTarget(target); e != nil {
			diags.AddError("Invalid function", resourceType+" names "+e.Message)
			return diags
		}
		for _, need := range targetRecords(resourceType, target) {
			pair, _, err := consul.KV().Get(need.key, (&consulapi.QueryOptions{}).WithContext(ctx))
			if err != nil {
				return saveFailed(resourceType, fmt.Errorf("reading %s from Consul KV: %w", need.key, err))
			}
			if pair == nil {
				diags.AddError(need.summary, need.detail)
				return diags
			}
		}
	}
	return diags
}

// targetRecord is a KV record a target needs, and what to say when it is
// missing.
type targetRecord struct{ key, summary, detail string }

// targetRecords lists, in order, the records target needs: its function's,
// then its version's or alias's.
func targetRecords(resourceType, target string) []targetRecord {
	name, qualifier := model.SplitQualified(target)
	needs := []targetRecord{{kvstore.FunctionKey(name), "Function " + name + " does not exist",
		resourceType + " names function " + name + ", which Nimbus does not know. Create it with nimbus_function, and reference its name (nimbus_function.<x>.name) so that Terraform creates it first."}}
	switch {
	case qualifier == "" || qualifier == model.Latest:
	case model.IsVersionNumber(qualifier):
		n, _ := strconv.Atoi(qualifier)
		needs = append(needs, targetRecord{kvstore.VersionKey(name, n), "Version " + qualifier + " of function " + name + " is not published",
			fmt.Sprintf("%s names %s, but function %s has no published version %s. Set publish = true on its nimbus_function and reference the version it publishes "+
				"(\"${nimbus_function.<x>.name}:${nimbus_function.<x>.version}\"), name an alias (\"${nimbus_alias.<x>.function}:${nimbus_alias.<x>.name}\"), or name the function alone for its $LATEST code.",
				resourceType, target, name, qualifier)})
	default:
		needs = append(needs, targetRecord{kvstore.AliasKey(name, qualifier), "Function " + name + " has no alias " + qualifier,
			fmt.Sprintf("%s names %s, but function %s has no alias %s. Declare it with a nimbus_alias and reference it as "+
				"\"${nimbus_alias.<x>.function}:${nimbus_alias.<x>.name}\" so that Terraform creates it first, or name a published version or the function alone.",
				resourceType, target, name, qualifier)})
	}
	return needs
}
