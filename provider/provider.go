// Package provider implements the Nimbus Terraform provider: functions,
// triggers and limits declared as resources, deployed onto Nomad and Consul.
package provider

import (
	"context"
	"log/slog"
	"os"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/resource"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/clients"
)

// Address is the provider's registry address. Configurations use the source
// "nimbus-faas/nimbus", which OpenTofu resolves on its own registry host.
const Address = "registry.terraform.io/nimbus-faas/nimbus"

// New returns a constructor for the provider at the given version.
func New(version string) func() provider.Provider {
	return func() provider.Provider { return &nimbusProvider{version: version, getenv: os.Getenv} }
}

type nimbusProvider struct {
	version string
	getenv  clients.Getenv
}

func (p *nimbusProvider) Metadata(_ context.Context, _ provider.MetadataRequest, resp *provider.MetadataResponse) {
	resp.TypeName = "nimbus"
	resp.Version = p.version
}

func (p *nimbusProvider) Schema(_ context.Context, _ provider.SchemaRequest, resp *provider.SchemaResponse) {
	resp.Schema = configSchema()
}

func (p *nimbusProvider) Configure(ctx context.Context, req provider.ConfigureRequest, resp *provider.ConfigureResponse) {
	var model providerModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &model)...)
	if resp.Diagnostics.HasError() {
		return
	}
	settings, diags := model.resolve(p.getenv)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	data, diags := settings.connect(slog.Default())
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	resp.DataSourceData = data
	resp.ResourceData = data
}

func (p *nimbusProvider) Resources(context.Context) []func() resource.Resource {
	return []func() resource.Resource{newFunctionResource, newHTTPRouteResource, newScheduleResource, newLimitsResource, newKVTriggerResource, newAccessKeyResource, newWarmPoolResource, newEventInvokeConfigResource, newEventSourceResource, newAliasResource}
}

func (p *nimbusProvider) DataSources(context.Context) []func() datasource.DataSource {
	return []func() datasource.DataSource{newClusterDataSource}
}
