package provider

import (
	"context"
	"fmt"
	"strings"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/clients"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
)

var _ datasource.DataSourceWithConfigure = (*clusterDataSource)(nil)

func newClusterDataSource() datasource.DataSource { return &clusterDataSource{} }

// clusterDataSource reports what Nimbus can see of Nomad and Consul, so users
// can check connectivity before they deploy functions.
type clusterDataSource struct {
	data *providerData
}

type clusterModel struct {
	ID                types.String `tfsdk:"id"`
	NomadAddress      types.String `tfsdk:"nomad_address"`
	NomadRegion       types.String `tfsdk:"nomad_region"`
	NomadLeader       types.String `tfsdk:"nomad_leader"`
	NomadVersion      types.String `tfsdk:"nomad_version"`
	NomadReadyNodes   types.Int64  `tfsdk:"nomad_ready_nodes"`
	ExecNodes         types.Int64  `tfsdk:"exec_nodes"`
	ExecDriverHealthy types.Bool   `tfsdk:"exec_driver_healthy"`
	IsolatedNetwork   types.Bool   `tfsdk:"isolated_network"`
	IsolatedNodes     types.Int64  `tfsdk:"isolated_nodes"`
	ConsulAddress     types.String `tfsdk:"consul_address"`
	ConsulDatacenter  types.String `tfsdk:"consul_datacenter"`
	ConsulLeader      types.String `tfsdk:"consul_leader"`
	ConsulVersion     types.String `tfsdk:"consul_version"`
	MaxKillTimeout    types.String `tfsdk:"max_kill_timeout"`
}

func (d *clusterDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_cluster"
}

func (d *clusterDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	computed := func(desc string) schema.StringAttribute {
		return schema.StringAttribute{
			Computed:            true,
			MarkdownDescription: desc,
		}
	}
	resp.Schema = schema.Schema{
		MarkdownDescription: "Checks that Nimbus can reach Nomad and Consul and reports what it finds. " +
			"Read it before deploying functions: it fails with a clear error when either agent is unreachable, " +
			"and `exec_driver_healthy` says whether any Nomad node can run function instances.",
		Attributes: map[string]schema.Attribute{
			"id":            computed("`<nomad_region>/<consul_datacenter>`."),
			"nomad_address": computed("The Nomad address that was checked."),
			"nomad_region":  computed("The Nomad region that functions deploy to."),
			"nomad_leader":  computed("RPC address of the Nomad region's leader."),
			"nomad_version": computed("Version of the Nomad agent answering the API."),
			"nomad_ready_nodes": schema.Int64Attribute{
				Computed:            true,
				MarkdownDescription: "Number of Nomad client nodes that are ready.",
			},
			"exec_nodes": schema.Int64Attribute{
				Computed:            true,
				MarkdownDescription: "Number of ready nodes whose `exec` driver is detected and healthy.",
			},
			"exec_driver_healthy": schema.BoolAttribute{
				Computed: true,
				MarkdownDescription: "Whether at least one ready node has a healthy `exec` driver, " +
					"which Nimbus needs to run function instances (it requires Linux and a client running as root).",
			},
			"isolated_network": schema.BoolAttribute{
				Computed: true,
				MarkdownDescription: "Whether function instances run in their own network namespaces: the provider does not use `host_network`, " +
					"and at least one ready node with a healthy `exec` driver offers both Nimbus CNI networks (`cni/nimbus` and `cni/nimbus-none`). " +
					"`false` means instances can reach the host's ports and each other; the platform guide says how to set the networks up.",
			},
			"isolated_nodes": schema.Int64Attribute{
				Computed:            true,
				MarkdownDescription: "Number of ready nodes with a healthy `exec` driver that offer both Nimbus CNI networks, where instances can be placed.",
			},
			"max_kill_timeout": computed("The shortest `max_kill_timeout` among the ready nodes with a healthy `exec` driver, as each client's own agent reports it " +
				"(for example `30s`, Nomad's default). Nomad gives a stopping task at most this long to finish, whatever its `kill_timeout`: " +
				"a function instance that a deploy or a scale-down stops is killed with the invocations it still runs after it. " +
				"The platform guide asks for `17m`, above the longest function timeout and the gateway's drain. " +
				"Empty when no client's agent answered; a warning says why."),
			"consul_address":    computed("The Consul address that was checked."),
			"consul_datacenter": computed("The Consul datacenter."),
			"consul_leader":     computed("RPC address of the Consul datacenter's leader."),
			"consul_version":    computed("Version of the Consul agent answering the API."),
		},
	}
}

func (d *clusterDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.data = providerDataFrom(req.ProviderData, &resp.Diagnostics)
}

func (d *clusterDataSource) Read(ctx context.Context, _ datasource.ReadRequest, resp *datasource.ReadResponse) {
	s := d.data.Settings
	state := clusterModel{
		NomadAddress:  types.StringValue(s.Nomad.Address),
		ConsulAddress: types.StringValue(s.Consul.Address),
	}
	if err := readNomad(ctx, d.data.Nomad, s.Nomad.Region, s.HostNetwork, &state); clients.Denied(err) {
		resp.Diagnostics.AddError("Nomad refused the provider's token", err.Error())
	} else if err != nil {
		resp.Diagnostics.AddError("Cannot reach Nomad",
			fmt.Sprintf("Nomad at %s did not answer: %v\n\nCheck nomad.address (or NOMAD_ADDR) and nomad.token (or NOMAD_TOKEN), and that the agent is running. `make dev` starts a local one.", s.Nomad.Address, err))
	}
	if err := readConsul(ctx, d.data.Consul, &state); clients.Denied(err) {
		resp.Diagnostics.AddError("Consul refused the provider's token", err.Error())
	} else if err != nil {
		resp.Diagnostics.AddError("Cannot reach Consul",
			fmt.Sprintf("Consul at %s did not answer: %v\n\nCheck consul.address (or CONSUL_HTTP_ADDR) and consul.token (or CONSUL_HTTP_TOKEN), and that the agent is running. `make dev` starts a local one.", s.Consul.Address, err))
	}
	if resp.Diagnostics.HasError() {
		return
	}
	kt, err := d.data.clientKillTimeouts(ctx)
	switch {
	case err != nil:
		resp.Diagnostics.AddWarning("Cannot read the clients' max_kill_timeout", err.Error())
	case len(kt.Unread) > 0:
		resp.Diagnostics.AddWarning("Cannot read some clients' max_kill_timeout",
			"max_kill_timeout is the client's own configuration, which the provider reads from each client's agent (/v1/agent/self, with agent:read) at the address it advertises. These did not answer:\n  "+
				strings.Join(kt.Unread, "\n  ")+"\nmax_kill_timeout covers the other clients only.")
	}
	state.MaxKillTimeout = types.StringValue("")
	if kt.Min > 0 {
		state.MaxKillTimeout = types.StringValue(kt.Min.String())
	}
	state.ID = types.StringValue(state.NomadRegion.ValueString() + "/" + state.ConsulDatacenter.ValueString())
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

func readNomad(ctx context.Context, c *nomadapi.Client, region string, hostNetwork bool, state *clusterModel) error {
	// resources=true adds each node's fingerprinted networks.
	q := (&nomadapi.QueryOptions{Params: map[string]string{"resources": "true"}}).WithContext(ctx)
	self, err := c.Agent().Self()
	if err != nil {
		return err
	}
	if region == "" {
		region = self.Member.Tags["region"]
	}
	leader, err := c.Status().Leader()
	if err != nil {
		return err
	}
	nodes, _, err := c.Nodes().List(q)
	if err != nil {
		return err
	}
	var ready, exec, isolated int64
	for _, n := range nodes {
		if n.Status != nomadapi.NodeStatusReady {
			continue
		}
		ready++
		if nomadjob.ExecDriverHealthy(n) {
			exec++
			if nomadjob.HasNimbusNetworks(n) {
				isolated++
			}
		}
	}
	state.IsolatedNodes = types.Int64Value(isolated)
	state.IsolatedNetwork = types.BoolValue(!hostNetwork && isolated > 0)
	state.NomadRegion = types.StringValue(region)
	state.NomadLeader = types.StringValue(leader)
	state.NomadVersion = types.StringValue(self.Member.Tags["build"])
	state.NomadReadyNodes = types.Int64Value(ready)
	state.ExecNodes = types.Int64Value(exec)
	state.ExecDriverHealthy = types.BoolValue(exec > 0)
	return nil
}

func readConsul(ctx context.Context, c *consulapi.Client, state *clusterModel) error {
	self, err := c.Agent().Self()
	if err != nil {
		return err
	}
	leader, err := c.Status().LeaderWithQueryOptions((&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return err
	}
	cfg := self["Config"]
	state.ConsulDatacenter = types.StringValue(stringField(cfg, "Datacenter"))
	state.ConsulVersion = types.StringValue(stringField(cfg, "Version"))
	state.ConsulLeader = types.StringValue(leader)
	return nil
}

func stringField(m map[string]interface{}, key string) string {
	s, _ := m[key].(string)
	return s
}
