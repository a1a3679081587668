package provider

import (
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/clients"
)

func env(m map[string]string) clients.Getenv { return func(k string) string { return m[k] } }

func TestResolveUsesEnvironmentWhenBlocksAreAbsent(t *testing.T) {
	got, diags := providerModel{GatewayURL: types.StringNull()}.resolve(env(map[string]string{
		"NOMAD_ADDR": "http://nomad.internal:4646", "NOMAD_TOKEN": "s3cret", "NOMAD_NAMESPACE": "fns",
		"CONSUL_HTTP_ADDR": "consul.internal:8500", "NIMBUS_GATEWAY_URL": "http://gw:8080",
	}))
	if diags.HasError() {
		t.Fatalf("unexpected diagnostics: %v", diags)
	}
	if got.Nomad.Address != "http://nomad.internal:4646" || got.Nomad.Token != "s3cret" || got.Nomad.Namespace != "fns" {
		t.Errorf("nomad settings = %+v", got.Nomad)
	}
	if got.Consul.Address != "http://consul.internal:8500" {
		t.Errorf("consul address = %q", got.Consul.Address)
	}
	if got.Gateway.URL != "http://gw:8080" {
		t.Errorf("gateway url = %q", got.Gateway.URL)
	}
}

func TestResolvePrefersConfigurationOverEnvironment(t *testing.T) {
	m := providerModel{
		GatewayURL: types.StringNull(),
		Nomad:      &nomadModel{Address: types.StringValue("https://n:4646"), Region: types.StringValue("eu"), SkipVerify: types.BoolValue(false)},
		Consul:     &consulModel{Address: types.StringValue("http://c:8500"), Datacenter: types.StringValue("dc9")},
	}
	got, diags := m.resolve(env(map[string]string{"NOMAD_ADDR": "http://other:1", "NOMAD_REGION": "us", "NOMAD_SKIP_VERIFY": "true", "CONSUL_HTTP_ADDR": "x:1"}))
	if diags.HasError() {
		t.Fatalf("unexpected diagnostics: %v", diags)
	}
	if got.Nomad.Address != "https://n:4646" || got.Nomad.Region != "eu" || got.Nomad.TLS.SkipVerify {
		t.Errorf("nomad settings = %+v; configured values must win, including an explicit skip_verify = false", got.Nomad)
	}
	if got.Consul.Address != "http://c:8500" || got.Consul.Datacenter != "dc9" {
		t.Errorf("consul settings = %+v", got.Consul)
	}
}

func TestResolveErrorsPointAtTheAttributeAndVariable(t *testing.T) {
	tests := []struct {
		name     string
		model    providerModel
		env      map[string]string
		wantPath path.Path
		wantText []string
	}{
		{
			name:     "bad nomad address in configuration",
			model:    providerModel{GatewayURL: types.StringNull(), Nomad: &nomadModel{Address: types.StringValue("nomad:4646")}},
			wantPath: path.Root("nomad").AtName("address"),
			wantText: []string{"nomad.address", "NOMAD_ADDR", "http://"},
		},
		{
			name:     "bad consul address from the environment",
			model:    providerModel{GatewayURL: types.StringNull()},
			env:      map[string]string{"CONSUL_HTTP_ADDR": "ftp://c"},
			wantPath: path.Root("consul").AtName("address"),
			wantText: []string{"consul.address", "CONSUL_HTTP_ADDR"},
		},
		{
			name:     "bad gateway url",
			model:    providerModel{GatewayURL: types.StringValue("gateway")},
			wantPath: path.Root("gateway_url"),
			wantText: []string{"gateway_url", "NIMBUS_GATEWAY_URL"},
		},
		{
			name:     "unparsable boolean",
			model:    providerModel{GatewayURL: types.StringNull()},
			env:      map[string]string{"NOMAD_SKIP_VERIFY": "sometimes"},
			wantPath: path.Root("nomad").AtName("skip_verify"),
			wantText: []string{"NOMAD_SKIP_VERIFY", "true or false"},
		},
		{
			name:     "value unknown at plan",
			model:    providerModel{GatewayURL: types.StringNull(), Nomad: &nomadModel{Address: types.StringUnknown()}},
			wantPath: path.Root("nomad").AtName("address"),
			wantText: []string{"only known after apply"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, diags := tc.model.resolve(env(tc.env))
			d := onlyError(t, diags)
			withPath, ok := d.(diag.DiagnosticWithPath)
			if !ok || !withPath.Path().Equal(tc.wantPath) {
				t.Errorf("diagnostic is not on %s: %v", tc.wantPath, d)
			}
			text := d.Summary() + " " + d.Detail()
			for _, w := range tc.wantText {
				if !strings.Contains(text, w) {
					t.Errorf("diagnostic %q should mention %q", text, w)
				}
			}
		})
	}
}

func TestConnectReportsUnreadableTLSFiles(t *testing.T) {
	s, diags := providerModel{GatewayURL: types.StringNull(), Consul: &consulModel{CAFile: types.StringValue("/does/not/exist.pem")}}.resolve(env(nil))
	if diags.HasError() {
		t.Fatal(diags)
	}
	_, diags = s.connect(nil)
	d := onlyError(t, diags)
	if !strings.Contains(d.Detail(), "consul.ca_file") || !strings.Contains(d.Detail(), "CONSUL_CACERT") {
		t.Errorf("diagnostic should name consul.ca_file and CONSUL_CACERT: %s", d.Detail())
	}
}

func onlyError(t *testing.T, diags diag.Diagnostics) diag.Diagnostic {
	t.Helper()
	errs := diags.Errors()
	if len(errs) != 1 {
		t.Fatalf("want exactly one error, got %d: %v", len(errs), diags)
	}
	return errs[0]
}
