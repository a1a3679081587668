package provider

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
)

// withProviderData is embedded in every resource: its Configure keeps what
// the provider hands over, nil before the provider is configured.
type withProviderData struct {
	data *providerData
}

func (w *withProviderData) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	w.data = providerDataFrom(req.ProviderData, &resp.Diagnostics)
}

// saveModel reads the plan into a model, stores it with save (which may
// fill computed values), and records it as the state: the create and update
// of resources whose update is the same write.
func saveModel[T any](ctx context.Context, planned tfsdk.Plan, state *tfsdk.State, diags *diag.Diagnostics, save func(context.Context, *T) diag.Diagnostics) {
	var m T
	diags.Append(planned.Get(ctx, &m)...)
	if diags.HasError() {
		return
	}
	diags.Append(save(ctx, &m)...)
	if diags.HasError() {
		return
	}
	diags.Append(state.Set(ctx, &m)...)
}

// saveFailed is the diagnostic of a save of the named resource that failed
// with err; none when err is nil.
func saveFailed(what string, err error) diag.Diagnostics {
	var diags diag.Diagnostics
	if err != nil {
		diags.AddError("Cannot save the "+what, err.Error())
	}
	return diags
}

// checkSkipped warns that a plan-time check on attr could not run because
// Consul could not be read; the plan goes on and later says when it is
// checked again.
func checkSkipped(diags *diag.Diagnostics, attr path.Path, check string, err error, later string) {
	diags.AddAttributeWarning(attr, "Could not check "+check,
		fmt.Sprintf("Reading Consul KV to check %s at plan time failed: %v\n\n%s", check, err, later))
}
