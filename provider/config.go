package provider

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/clients"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/packaging"
)

type providerModel struct {
	GatewayURL   types.String `tfsdk:"gateway_url"`
	GatewayToken types.String `tfsdk:"gateway_token"`
	HostNetwork  types.Bool   `tfsdk:"host_network"`
	Nomad        *nomadModel  `tfsdk:"nomad"`
	Consul       *consulModel `tfsdk:"consul"`
}

type nomadModel struct {
	Address       types.String `tfsdk:"address"`
	Token         types.String `tfsdk:"token"`
	Region        types.String `tfsdk:"region"`
	Namespace     types.String `tfsdk:"namespace"`
	CAFile        types.String `tfsdk:"ca_file"`
	CertFile      types.String `tfsdk:"cert_file"`
	KeyFile       types.String `tfsdk:"key_file"`
	TLSServerName types.String `tfsdk:"tls_server_name"`
	SkipVerify    types.Bool   `tfsdk:"skip_verify"`
}

type consulModel struct {
	Address       types.String `tfsdk:"address"`
	Token         types.String `tfsdk:"token"`
	Datacenter    types.String `tfsdk:"datacenter"`
	CAFile        types.String `tfsdk:"ca_file"`
	CertFile      types.String `tfsdk:"cert_file"`
	KeyFile       types.String `tfsdk:"key_file"`
	TLSServerName types.String `tfsdk:"tls_server_name"`
	SkipVerify    types.Bool   `tfsdk:"skip_verify"`
}

func configSchema() schema.Schema {
	str := func(desc string) schema.StringAttribute {
		return schema.StringAttribute{
			Optional:            true,
			MarkdownDescription: desc,
		}
	}
	secret := func(desc string) schema.StringAttribute {
		return schema.StringAttribute{
			Optional:            true,
			Sensitive:           true,
			MarkdownDescription: desc,
		}
	}
	tlsAttrs := func(product, env string) map[string]schema.Attribute {
		return map[string]schema.Attribute{
			"ca_file":         str(fmt.Sprintf("Path to a PEM CA certificate that verifies %s's TLS certificate. Defaults to `%s_CACERT`.", product, env)),
			"cert_file":       str(fmt.Sprintf("Path to a PEM client certificate for mutual TLS with %s. Set with `key_file`. Defaults to `%s_CLIENT_CERT`.", product, env)),
			"key_file":        str(fmt.Sprintf("Path to the PEM key of `cert_file`. Defaults to `%s_CLIENT_KEY`.", env)),
			"tls_server_name": str(fmt.Sprintf("Server name to verify %s's certificate against. Defaults to `%s_TLS_SERVER_NAME`.", product, env)),
		}
	}
	nomad := tlsAttrs("Nomad", "NOMAD")
	nomad["address"] = str("URL of the Nomad HTTP API. Defaults to `NOMAD_ADDR`, then `" + clients.DefaultNomadAddress + "`.")
	nomad["token"] = secret("Nomad ACL token. Defaults to `NOMAD_TOKEN`.")
	nomad["region"] = str("Nomad region to deploy to. Defaults to `NOMAD_REGION`, then the agent's region.")
	nomad["namespace"] = str("Nomad namespace to deploy to. Defaults to `NOMAD_NAMESPACE`, then `default`.")
	nomad["skip_verify"] = schema.BoolAttribute{
		Optional:            true,
		MarkdownDescription: "Skip verification of Nomad's TLS certificate. Insecure; for testing only. Defaults to `NOMAD_SKIP_VERIFY`.",
	}

	consul := tlsAttrs("Consul", "CONSUL")
	consul["address"] = str("Address of the Consul HTTP API, as a URL or as `host:port` (then `CONSUL_HTTP_SSL` chooses https). Defaults to `CONSUL_HTTP_ADDR`, then `" + clients.DefaultConsulAddress + "`.")
	consul["token"] = secret("Consul ACL token. Defaults to `CONSUL_HTTP_TOKEN`.")
	consul["datacenter"] = str("Consul datacenter. Defaults to the agent's datacenter.")
	consul["skip_verify"] = schema.BoolAttribute{
		Optional:            true,
		MarkdownDescription: "Skip verification of Consul's TLS certificate. Insecure; for testing only. Defaults to the inverse of `CONSUL_HTTP_SSL_VERIFY`.",
	}

	return schema.Schema{
		MarkdownDescription: "Nimbus deploys serverless functions onto your own Nomad and Consul. " +
			"Every setting falls back to the environment variable that the Nomad and Consul CLIs already read, so an empty provider block works wherever `nomad` and `consul` do.",
		Attributes: map[string]schema.Attribute{
			"gateway_url": str("URL of the Nimbus gateway, which stores function artifacts and serves invocations. Defaults to `NIMBUS_GATEWAY_URL`."),
			"gateway_token": secret("The provider's key at the gateway, for uploading function code: the `bearer_token` of a `nimbus_access_key` with `upload_artifacts = true`, " +
				"or the operator key configured on the gateway (`NIMBUS_GATEWAY_OPERATOR_KEY`), which exists before any access key does. Defaults to `NIMBUS_GATEWAY_TOKEN`. " +
				"Not needed when the gateway runs with `-auth=off` (local development only)."),
			"host_network": schema.BoolAttribute{
				Optional: true,
				MarkdownDescription: "Run function instances with host networking, for clusters whose Nomad clients have no CNI plugins. " +
					"**Instances then share the host's network**: they can reach the agents' ports, the gateway and each other, and `egress` is not enforced. " +
					"By default (`false`) every instance gets its own network namespace on the client's Nimbus CNI networks (see the platform guide). Defaults to `NIMBUS_HOST_NETWORK`.",
			},
		},
		Blocks: map[string]schema.Block{
			"nomad": schema.SingleNestedBlock{
				MarkdownDescription: "How to reach Nomad.",
				Attributes:          nomad,
			},
			"consul": schema.SingleNestedBlock{
				MarkdownDescription: "How to reach Consul.",
				Attributes:          consul,
			},
		},
	}
}

// settings is the resolved configuration: explicit values, then the
// environment, then defaults.
type settings struct {
	Nomad   clients.NomadConfig
	Consul  clients.ConsulConfig
	Gateway clients.GatewayConfig
	// HostNetwork runs instances without network isolation.
	HostNetwork bool
}

// resolve merges the configuration with the environment and validates it.
// Diagnostics point at the attribute and name the environment variable.
func (m providerModel) resolve(getenv clients.Getenv) (settings, diag.Diagnostics) {
	var diags diag.Diagnostics
	var in settings
	if m.Nomad != nil {
		n := m.Nomad
		in.Nomad = clients.NomadConfig{
			Address: n.Address.ValueString(), Token: n.Token.ValueString(),
			Region: n.Region.ValueString(), Namespace: n.Namespace.ValueString(),
			TLS: clients.TLSFiles{
				CACert: n.CAFile.ValueString(), ClientCert: n.CertFile.ValueString(), ClientKey: n.KeyFile.ValueString(),
				ServerName: n.TLSServerName.ValueString(), SkipVerify: n.SkipVerify.ValueBool(),
			},
			SkipVerifySet: !n.SkipVerify.IsNull(),
		}
		diags.Append(unknowns("nomad", map[string]bool{
			"address": n.Address.IsUnknown(), "token": n.Token.IsUnknown(), "region": n.Region.IsUnknown(),
			"namespace": n.Namespace.IsUnknown(), "ca_file": n.CAFile.IsUnknown(), "cert_file": n.CertFile.IsUnknown(),
			"key_file": n.KeyFile.IsUnknown(), "tls_server_name": n.TLSServerName.IsUnknown(), "skip_verify": n.SkipVerify.IsUnknown(),
		})...)
	}
	if m.Consul != nil {
		c := m.Consul
		in.Consul = clients.ConsulConfig{
			Address: c.Address.ValueString(), Token: c.Token.ValueString(), Datacenter: c.Datacenter.ValueString(),
			TLS: clients.TLSFiles{
				CACert: c.CAFile.ValueString(), ClientCert: c.CertFile.ValueString(), ClientKey: c.KeyFile.ValueString(),
				ServerName: c.TLSServerName.ValueString(), SkipVerify: c.SkipVerify.ValueBool(),
			},
			SkipVerifySet: !c.SkipVerify.IsNull(),
		}
		diags.Append(unknowns("consul", map[string]bool{
			"address": c.Address.IsUnknown(), "token": c.Token.IsUnknown(), "datacenter": c.Datacenter.IsUnknown(),
			"ca_file": c.CAFile.IsUnknown(), "cert_file": c.CertFile.IsUnknown(), "key_file": c.KeyFile.IsUnknown(),
			"tls_server_name": c.TLSServerName.IsUnknown(), "skip_verify": c.SkipVerify.IsUnknown(),
		})...)
	}
	in.Gateway.URL, in.Gateway.Token = m.GatewayURL.ValueString(), m.GatewayToken.ValueString()
	diags.Append(unknowns("", map[string]bool{"gateway_url": m.GatewayURL.IsUnknown(), "gateway_token": m.GatewayToken.IsUnknown(), "host_network": m.HostNetwork.IsUnknown()})...)
	if diags.HasError() {
		return in, diags
	}

	var out settings
	var err error
	if out.Nomad, err = in.Nomad.Resolve(getenv); err != nil {
		diags.Append(configDiag(err))
	}
	if out.Consul, err = in.Consul.Resolve(getenv); err != nil {
		diags.Append(configDiag(err))
	}
	if out.Gateway, err = in.Gateway.Resolve(getenv); err != nil {
		diags.Append(configDiag(err))
	}
	out.HostNetwork = m.HostNetwork.ValueBool()
	if m.HostNetwork.IsNull() {
		if v := getenv("NIMBUS_HOST_NETWORK"); v != "" {
			if out.HostNetwork, err = strconv.ParseBool(v); err != nil {
				diags.AddAttributeError(path.Root("host_network"), "Invalid NIMBUS_HOST_NETWORK",
					fmt.Sprintf("NIMBUS_HOST_NETWORK is %q; set it to true or false, or set host_network in the provider block.", v))
			}
		}
	}
	return out, diags
}

// unknowns reports settings whose values are not known until apply: the
// provider has to connect during plan.
func unknowns(block string, unknown map[string]bool) diag.Diagnostics {
	var diags diag.Diagnostics
	for name, isUnknown := range unknown {
		if !isUnknown {
			continue
		}
		p, full := path.Root(name), name
		if block != "" {
			p, full = path.Root(block).AtName(name), block+"."+name
		}
		diags.AddAttributeError(p, "Provider setting not known until apply",
			fmt.Sprintf("%s depends on a value that is only known after apply, but Nimbus must reach Nomad and Consul during plan. Use a literal, a variable or an environment variable instead.", full))
	}
	return diags
}

// configDiag turns a *clients.ConfigError into a diagnostic on its attribute.
func configDiag(err error) diag.Diagnostic {
	var ce *clients.ConfigError
	if !errors.As(err, &ce) {
		return diag.NewErrorDiagnostic("Invalid provider configuration", err.Error())
	}
	p := path.Empty()
	for _, step := range strings.Split(ce.Attribute, ".") {
		if p.Equal(path.Empty()) {
			p = path.Root(step)
		} else {
			p = p.AtName(step)
		}
	}
	return diag.NewAttributeErrorDiagnostic(p, "Invalid provider configuration: "+ce.Attribute, ce.Error())
}

// providerData is what resources and data sources receive.
type providerData struct {
	Settings settings
	Nomad    *nomadapi.Client
	Consul   *consulapi.Client
	// Artifacts is nil when no gateway_url is configured.
	Artifacts *clients.Artifacts
	// Packages packages function sources, once per unchanged tree.
	Packages *packaging.Cache
	// killTimeouts are the clients' max_kill_timeout, read once.
	killTimeouts killTimeoutCache
}

// packageCacheDir is where plans keep the digests of unchanged sources:
// NIMBUS_PACKAGE_CACHE_DIR, else the user's cache directory; "" (memory
// only) when there is none.
func packageCacheDir(getenv clients.Getenv) string {
	if dir := getenv("NIMBUS_PACKAGE_CACHE_DIR"); dir != "" {
		return dir
	}
	if dir, err := os.UserCacheDir(); err == nil {
		return filepath.Join(dir, "nimbus", "package-digests")
	}
	return ""
}

func (s settings) connect(logger *slog.Logger) (*providerData, diag.Diagnostics) {
	var diags diag.Diagnostics
	// The provider acts as the deployer: refusals name its policies.
	s.Nomad.Principal, s.Consul.Principal = clients.DeployerNomad, clients.DeployerConsul
	nomad, err := clients.NewNomad(s.Nomad, clients.DefaultRetryPolicy, logger)
	if err != nil {
		diags.Append(configDiag(err))
	}
	consul, err := clients.NewConsul(s.Consul, clients.DefaultRetryPolicy, logger)
	if err != nil {
		diags.Append(configDiag(err))
	}
	data := &providerData{Settings: s, Nomad: nomad, Consul: consul, Packages: packaging.NewCache(packageCacheDir(os.Getenv))}
	if s.Gateway.URL != "" {
		data.Artifacts = &clients.Artifacts{BaseURL: s.Gateway.URL, Token: s.Gateway.Token, HTTP: clients.NewHTTPClient(clients.DefaultRetryPolicy, nil, logger)}
	}
	return data, diags
}

// providerDataFrom unpacks what Configure hands to resources and data
// sources; nil before the provider is configured.
func providerDataFrom(raw any, diags *diag.Diagnostics) *providerData {
	if raw == nil {
		return nil
	}
	data, ok := raw.(*providerData)
	if !ok {
		diags.AddError("Unexpected provider data", fmt.Sprintf("got %T; this is a bug in the provider", raw))
	}
	return data
}
