package provider

import (
	"context"
	"encoding/json"

	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
)

// functionSchemaVersion 1 made version the latest published version (a
// string, as Lambda's) and moved the Nomad job's version to job_version.
const functionSchemaVersion = 1

var _ resource.ResourceWithUpgradeState = (*functionResource)(nil)

func (r *functionResource) UpgradeState(context.Context) map[int64]resource.StateUpgrader {
	return map[int64]resource.StateUpgrader{0: {StateUpgrader: upgradeFunctionStateV0}}
}

// upgradeFunctionStateV0 moves version 0's version, the Nomad job's, to
// job_version. No version was published before publish existed; the next
// refresh fills the new URLs.
func upgradeFunctionStateV0(_ context.Context, req resource.UpgradeStateRequest, resp *resource.UpgradeStateResponse) {
	var state map[string]json.RawMessage
	if err := json.Unmarshal(req.RawState.JSON, &state); err != nil {
		resp.Diagnostics.AddError("Cannot upgrade the state of a nimbus_function",
			"Its stored state is not a JSON object ("+err.Error()+"). Remove it from the state and import the function again.")
		return
	}
	state["job_version"] = state["version"]
	latest, _ := json.Marshal(model.Latest)
	state["version"] = latest
	state["publish"] = json.RawMessage("false")
	state["qualified_invoke_url"] = json.RawMessage(`""`)
	state["version_grace_period"] = json.RawMessage(`"24h"`)
	b, err := json.Marshal(state)
	if err != nil {
		resp.Diagnostics.AddError("Cannot upgrade the state of a nimbus_function", err.Error())
		return
	}
	resp.DynamicValue = &tfprotov6.DynamicValue{JSON: b}
}
