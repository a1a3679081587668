package provider

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
)

// A state written before versions existed keeps its job version as
// job_version, and reads as never published.
func TestUpgradeFunctionStateV0(t *testing.T) {
	req := resource.UpgradeStateRequest{RawState: &tfprotov6.RawState{JSON: []byte(`{"name":"orders","version":7,"job_id":"nimbus-fn-orders"}`)}}
	var resp resource.UpgradeStateResponse
	upgradeFunctionStateV0(context.Background(), req, &resp)
	if resp.Diagnostics.HasError() || resp.DynamicValue == nil {
		t.Fatalf("upgrade failed: %v", resp.Diagnostics)
	}
	var got map[string]any
	if err := json.Unmarshal(resp.DynamicValue.JSON, &got); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"job_version": float64(7), "version": "$LATEST", "publish": false, "version_grace_period": "24h", "name": "orders"} {
		if got[k] != want {
			t.Errorf("%s = %v; want %v (state %v)", k, got[k], want, got)
		}
	}
	var bad resource.UpgradeStateResponse
	upgradeFunctionStateV0(context.Background(), resource.UpgradeStateRequest{RawState: &tfprotov6.RawState{JSON: []byte(`[1]`)}}, &bad)
	if !bad.Diagnostics.HasError() {
		t.Error("a state that is not an object was upgraded")
	}
}
