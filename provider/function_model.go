package provider

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
)

// functionModel is nimbus_function's state.
type functionModel struct {
	ID                  types.String   `tfsdk:"id"`
	Name                types.String   `tfsdk:"name"`
	Description         types.String   `tfsdk:"description"`
	Runtime             types.String   `tfsdk:"runtime"`
	Handler             types.String   `tfsdk:"handler"`
	MemoryMB            types.Int64    `tfsdk:"memory_mb"`
	CPUMHz              types.Int64    `tfsdk:"cpu_mhz"`
	Timeout             types.String   `tfsdk:"timeout"`
	Environment         types.Map      `tfsdk:"environment"`
	Secrets             types.Map      `tfsdk:"secrets"`
	Concurrency         types.Int64    `tfsdk:"concurrency"`
	ReservedConcurrency types.Int64    `tfsdk:"reserved_concurrency"`
	MinInstances        types.Int64    `tfsdk:"min_instances"`
	MaxInstances        types.Int64    `tfsdk:"max_instances"`
	IdleTimeout         types.String   `tfsdk:"idle_timeout"`
	BillingGranularity  types.String   `tfsdk:"billing_granularity"`
	Egress              types.String   `tfsdk:"egress"`
	Source              types.String   `tfsdk:"source"`
	SourceURL           types.String   `tfsdk:"source_url"`
	SourceSHA256        types.String   `tfsdk:"source_sha256"`
	JobID               types.String   `tfsdk:"job_id"`
	Publish             types.Bool     `tfsdk:"publish"`
	VersionGracePeriod  types.String   `tfsdk:"version_grace_period"`
	Version             types.String   `tfsdk:"version"`
	JobVersion          types.Int64    `tfsdk:"job_version"`
	InvokeURL           types.String   `tfsdk:"invoke_url"`
	QualifiedInvokeURL  types.String   `tfsdk:"qualified_invoke_url"`
	ArtifactURLExpires  types.String   `tfsdk:"artifact_url_expires"`
	Timeouts            timeouts.Value `tfsdk:"timeouts"`
}

// environmentKnown reports whether the environment and all its values are
// known.
func environmentKnown(env types.Map) bool {
	if env.IsUnknown() {
		return false
	}
	for _, v := range env.Elements() {
		if v.IsUnknown() {
			return false
		}
	}
	return true
}

// known reports whether the inputs of a model rule (named by its
// FieldError field, which is also the attribute) are known at plan time, so
// that a rule is never judged on placeholder values.
func (m functionModel) known(field string) bool {
	switch field {
	case "name":
		return !m.Name.IsUnknown()
	case "description":
		return !m.Description.IsUnknown()
	case "runtime", "handler":
		return !m.Runtime.IsUnknown() && !m.Handler.IsUnknown()
	case "memory_mb":
		return !m.MemoryMB.IsUnknown()
	case "cpu_mhz":
		return !m.CPUMHz.IsUnknown()
	case "timeout":
		return !m.Timeout.IsUnknown()
	case "environment":
		return environmentKnown(m.Environment)
	case "secrets":
		return !m.Secrets.IsUnknown() && !m.Name.IsUnknown() && !m.Environment.IsUnknown()
	case "concurrency":
		return !m.Concurrency.IsUnknown() && !m.Runtime.IsUnknown()
	case "min_instances", "max_instances":
		return !m.MinInstances.IsUnknown() && !m.MaxInstances.IsUnknown()
	case "idle_timeout":
		return !m.IdleTimeout.IsUnknown()
	case "billing_granularity":
		return !m.BillingGranularity.IsUnknown()
	case "egress":
		return !m.Egress.IsUnknown()
	}
	return true
}

// spec builds the function specification; unknown and null values take
// their defaults. Duration syntax errors are diagnostics on the attribute.
func (m functionModel) spec(ctx context.Context) (model.Function, diag.Diagnostics) {
	var diags diag.Diagnostics
	f := model.Function{
		Name:         m.Name.ValueString(),
		Description:  m.Description.ValueString(),
		Runtime:      m.Runtime.ValueString(),
		Handler:      m.Handler.ValueString(),
		MemoryMB:     int(m.MemoryMB.ValueInt64()),
		CPUMHz:       int(m.CPUMHz.ValueInt64()),
		Concurrency:  int(m.Concurrency.ValueInt64()),
		MinInstances: int(m.MinInstances.ValueInt64()),
		MaxInstances: int(m.MaxInstances.ValueInt64()),
		Egress:       m.Egress.ValueString(),
	}
	if m.MaxInstances.IsNull() || m.MaxInstances.IsUnknown() {
		f.MaxInstances = 0 // default
	}
	f.Timeout = parseDuration(&diags, "timeout", m.Timeout)
	f.IdleTimeout = parseDuration(&diags, "idle_timeout", m.IdleTimeout)
	if !m.BillingGranularity.IsNull() && !m.BillingGranularity.IsUnknown() {
		g, err := model.ParseBillingGranularity(m.BillingGranularity.ValueString())
		if err != nil {
			diags.AddAttributeError(path.Root("billing_granularity"), "Invalid billing_granularity", err.Error())
		}
		f.BillingGranularity = g
	}
	if !m.Environment.IsNull() && !m.Environment.IsUnknown() {
		// A value from a variable or another resource may be unknown while
		// Terraform validates: its name is still checked, its value later.
		env := map[string]string{}
		for name, v := range m.Environment.Elements() {
			if s, ok := v.(types.String); ok {
				env[name] = s.ValueString()
			}
		}
		f.Environment = env
	}
	if !m.Secrets.IsNull() && !m.Secrets.IsUnknown() {
		refs := map[string]secretModel{}
		diags.Append(m.Secrets.ElementsAs(ctx, &refs, false)...)
		f.Secrets = make(map[string]protocol.SecretRef, len(refs))
		for name, ref := range refs {
			f.Secrets[name] = protocol.SecretRef{Path: ref.Path.ValueString(), Key: ref.Key.ValueString()}
		}
	}
	return f.WithDefaults(), diags
}

// secretModel is one element of nimbus_function.secrets.
type secretModel struct {
	Path types.String `tfsdk:"path"`
	Key  types.String `tfsdk:"key"`
}

var secretType = types.ObjectType{AttrTypes: map[string]attr.Type{"path": types.StringType, "key": types.StringType}}

// secretsValue turns references read back from the job into state, null
// when there are none and the configuration had none.
func secretsValue(refs map[string]protocol.SecretRef, wasNull bool) types.Map {
	if len(refs) == 0 && wasNull {
		return types.MapNull(secretType)
	}
	elems := make(map[string]attr.Value, len(refs))
	for name, ref := range refs {
		elems[name] = types.ObjectValueMust(secretType.AttrTypes, map[string]attr.Value{
			"path": types.StringValue(ref.Path), "key": types.StringValue(ref.Key),
		})
	}
	return types.MapValueMust(secretType, elems)
}

func parseDuration(diags *diag.Diagnostics, attr string, v types.String) time.Duration {
	if v.IsNull() || v.IsUnknown() {
		return 0
	}
	d, err := time.ParseDuration(v.ValueString())
	if err != nil {
		diags.AddAttributeError(path.Root(attr), "Invalid "+attr, fmt.Sprintf("%q is not a duration: write it like \"30s\" or \"5m\"", v.ValueString()))
	}
	return d
}

// environmentValue turns a map into a Terraform map, null when empty and
// the configuration had none.
func environmentValue(env map[string]string, wasNull bool) types.Map {
	if len(env) == 0 && wasNull {
		return types.MapNull(types.StringType)
	}
	elems := make(map[string]attr.Value, len(env))
	for k, v := range env {
		elems[k] = types.StringValue(v)
	}
	return types.MapValueMust(types.StringType, elems)
}

// sameDuration keeps the user's spelling ("1m") when the value read back
// ("1m0s") means the same.
func sameDuration(current types.String, read time.Duration) types.String {
	if !current.IsNull() && !current.IsUnknown() {
		if d, err := time.ParseDuration(current.ValueString()); err == nil && d == read {
			return current
		}
	}
	return types.StringValue(shortDuration(read))
}
