package provider

import (
	"context"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

// An environment value from a variable is unknown while Terraform
// validates the configuration: the function's spec is still read, and the
// environment's rules wait for the value.
func TestSpecWithAnUnknownEnvironmentValue(t *testing.T) {
	m := functionModel{
		Name: types.StringValue("fn"), Runtime: types.StringValue("provided"),
		Environment: types.MapValueMust(types.StringType, map[string]attr.Value{"RELEASE": types.StringUnknown(), "MODE": types.StringValue("x")}),
		Secrets:     types.MapNull(types.ObjectType{AttrTypes: map[string]attr.Type{"path": types.StringType, "key": types.StringType}}),
	}
	f, diags := m.spec(context.Background())
	if diags.HasError() {
		t.Fatalf("spec failed on an unknown environment value: %v", diags)
	}
	if f.Environment["MODE"] != "x" {
		t.Errorf("environment %v", f.Environment)
	}
	if m.known("environment") {
		t.Error("an environment with an unknown value reads as known")
	}
}
