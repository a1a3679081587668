package clients

import (
	"errors"
	"strings"
	"testing"
)

func envMap(m map[string]string) Getenv { return func(k string) string { return m[k] } }

func TestNomadResolve(t *testing.T) {
	tests := []struct {
		name    string
		in      NomadConfig
		env     map[string]string
		want    NomadConfig
		wantErr string // substring; also the attribute and env var must be named
	}{
		{name: "defaults", want: NomadConfig{Address: DefaultNomadAddress}},
		{
			name: "environment fills unset fields",
			env:  map[string]string{"NOMAD_ADDR": "https://nomad.example:4646/", "NOMAD_TOKEN": "secret", "NOMAD_REGION": "eu", "NOMAD_NAMESPACE": "team-a", "NOMAD_SKIP_VERIFY": "true"},
			want: NomadConfig{Address: "https://nomad.example:4646", Token: "secret", Region: "eu", Namespace: "team-a", TLS: TLSFiles{SkipVerify: true}, SkipVerifySet: true},
		},
		{
			name: "configuration wins over environment",
			in:   NomadConfig{Address: "http://10.0.0.1:4646", Region: "us", SkipVerifySet: true},
			env:  map[string]string{"NOMAD_ADDR": "http://other:4646", "NOMAD_REGION": "eu", "NOMAD_SKIP_VERIFY": "true"},
			want: NomadConfig{Address: "http://10.0.0.1:4646", Region: "us", SkipVerifySet: true},
		},
		{name: "address without scheme", in: NomadConfig{Address: "127.0.0.1:4646"}, wantErr: "nomad.address"},
		{name: "address with wrong scheme", env: map[string]string{"NOMAD_ADDR": "ftp://x"}, wantErr: "NOMAD_ADDR"},
		{name: "skip verify not a bool", env: map[string]string{"NOMAD_SKIP_VERIFY": "yes please"}, wantErr: "nomad.skip_verify"},
		{name: "token with newline", in: NomadConfig{Token: "abc\n"}, wantErr: "nomad.token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.in.Resolve(envMap(tc.env))
			checkResolve(t, got, tc.want, err, tc.wantErr)
		})
	}
}

func TestConsulResolve(t *testing.T) {
	tests := []struct {
		name    string
		in      ConsulConfig
		env     map[string]string
		want    ConsulConfig
		wantErr string
	}{
		{name: "defaults", want: ConsulConfig{Address: DefaultConsulAddress}},
		{
			name: "bare host:port as the Consul CLI accepts",
			env:  map[string]string{"CONSUL_HTTP_ADDR": "127.0.0.1:8501", "CONSUL_HTTP_SSL": "true", "CONSUL_HTTP_TOKEN": "t"},
			want: ConsulConfig{Address: "https://127.0.0.1:8501", Token: "t"},
		},
		{
			name: "ssl verify false means skip verify",
			in:   ConsulConfig{Address: "https://c:8501", Datacenter: "dc2"},
			env:  map[string]string{"CONSUL_HTTP_SSL_VERIFY": "false"},
			want: ConsulConfig{Address: "https://c:8501", Datacenter: "dc2", TLS: TLSFiles{SkipVerify: true}, SkipVerifySet: true},
		},
		{name: "bad scheme", in: ConsulConfig{Address: "tcp://c:8500"}, wantErr: "consul.address"},
		{name: "bad ssl flag", env: map[string]string{"CONSUL_HTTP_ADDR": "c:8500", "CONSUL_HTTP_SSL": "maybe"}, wantErr: "CONSUL_HTTP_SSL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.in.Resolve(envMap(tc.env))
			checkResolve(t, got, tc.want, err, tc.wantErr)
		})
	}
}

func TestGatewayResolve(t *testing.T) {
	got, err := GatewayConfig{}.Resolve(envMap(map[string]string{"NIMBUS_GATEWAY_URL": "http://127.0.0.1:8080/"}))
	if err != nil || got.URL != "http://127.0.0.1:8080" {
		t.Fatalf("got %+v, %v", got, err)
	}
	_, err = GatewayConfig{URL: "localhost:8080"}.Resolve(envMap(nil))
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Attribute != "gateway_url" || ce.EnvVar != "NIMBUS_GATEWAY_URL" {
		t.Fatalf("want a ConfigError naming gateway_url and NIMBUS_GATEWAY_URL, got %v", err)
	}
}

func checkResolve[T comparable](t *testing.T, got, want T, err error, wantErr string) {
	t.Helper()
	if wantErr == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		if got != want {
			t.Fatalf("got %+v, want %+v", got, want)
		}
		return
	}
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("want a *ConfigError mentioning %q, got %v", wantErr, err)
	}
	msg := err.Error()
	if !strings.Contains(msg, wantErr) || !strings.Contains(msg, ce.Attribute) || (ce.EnvVar != "" && !strings.Contains(msg, ce.EnvVar)) {
		t.Fatalf("error %q should name %q, the attribute and the environment variable", msg, wantErr)
	}
}
