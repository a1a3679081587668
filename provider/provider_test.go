package provider

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/agents"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/principals"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
)

// testProviders serves the provider in-process to the Terraform CLI that
// terraform-plugin-testing drives (the pinned OpenTofu).
var testProviders = map[string]func() (tfprotov6.ProviderServer, error){
	"nimbus": providerserver.NewProtocol6WithError(New("test")()),
}

func TestMain(m *testing.M) {
	// Acceptance tests run under the pinned OpenTofu unless told otherwise.
	if os.Getenv("TF_ACC_TERRAFORM_PATH") == "" {
		if tofu, err := agents.Tofu.Path(); err == nil {
			_ = os.Setenv("TF_ACC_TERRAFORM_PATH", tofu)
			_ = os.Setenv("TF_ACC_PROVIDER_HOST", "registry.opentofu.org")
			_ = os.Setenv("TF_ACC_PROVIDER_NAMESPACE", "nimbus-faas")
		}
	}
	cleanup := buildFixtures()
	defer cleanup()
	testenv.Main(m, testenv.Options{
		HostVolumes: map[string]string{
			nomadjob.HostVolumeRuntime: fixtures.runtimeDir,
			nomadjob.HostVolumeUsr:     "/usr",
		},
		TriggerPrefixes: []string{"acc-orders/"},
	})
}

// fixtures are built once per test run: nimbus-host for the instances, the
// real nimbus-gateway (its artifact store), and function code.
var fixtures struct {
	runtimeDir string
	gatewayBin string
	goSource   string // an aws-lambda-go bootstrap
	goSourceV2 string // the same with one more file: another version
}

// gateway starts the real nimbus-gateway against env's agents, once.
func gateway(env *testenv.Env) *testenv.Gateway {
	g, err := env.SharedGateway(fixtures.gatewayBin)
	if err != nil {
		panic(err)
	}
	return g
}

func buildFixtures() func() {
	dir, err := os.MkdirTemp("", "nimbus-provider-test-")
	if err != nil {
		panic(err)
	}
	fixtures.runtimeDir = filepath.Join(dir, "runtime")
	fixtures.goSource = filepath.Join(dir, "go-v1")
	fixtures.goSourceV2 = filepath.Join(dir, "go-v2")
	// The gateway binary also serves schedules' runs from the runtime volume.
	fixtures.gatewayBin = filepath.Join(fixtures.runtimeDir, "bin", "nimbus-gateway")
	if err := testenv.BuildStatic(map[string]string{
		filepath.Join(fixtures.runtimeDir, "bin", "nimbus-host"): "./runtime/cmd/nimbus-host",
		fixtures.gatewayBin:                           "./runtime/cmd/nimbus-gateway",
		filepath.Join(fixtures.goSource, "bootstrap"): "./runtime/host/testdata/lambdago",
	}); err != nil {
		panic(err)
	}
	if err := os.MkdirAll(fixtures.goSourceV2, 0o755); err != nil {
		panic(err)
	}
	if err := goSourceWith(fixtures.goSourceV2, "VERSION", "2\n"); err != nil {
		panic(err)
	}

	return func() {
		_ = os.RemoveAll(dir)
	}
}

// goSourceWith writes into dir the fixture's aws-lambda-go bootstrap plus
// one more file, which makes it another version of the code.
func goSourceWith(dir, file, content string) error {
	boot, err := os.ReadFile(filepath.Join(fixtures.goSource, "bootstrap"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bootstrap"), boot, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644)
}

// providerConfig points the provider at the test environment's agents,
// as the deployer: its tokens carry only the shipped deployer policies.
func providerConfig(env *testenv.Env) string {
	return providerConfigAs(env, env.Principals.Deployer)
}

// providerConfigAs is providerConfig with other credentials.
func providerConfigAs(env *testenv.Env, creds principals.Credentials) string {
	return providerConfigWith(env, creds, gateway(env).URL)
}

// providerConfigWith is providerConfigAs with another gateway.
func providerConfigWith(env *testenv.Env, creds principals.Credentials, gatewayURL string) string {
	return env.ProviderConfig(creds, gatewayURL)
}

// requireAcceptance fails, rather than skips, when the acceptance harness is
// not set up: CI must never skip these.
func requireAcceptance(t *testing.T) {
	t.Helper()
	if os.Getenv("TF_ACC") == "" {
		t.Skip("acceptance test: set TF_ACC=1 (make test does) to run it against real Nomad, Consul and OpenTofu")
	}
	if os.Getenv("TF_ACC_TERRAFORM_PATH") == "" {
		_, err := agents.Tofu.Path()
		t.Fatalf("no Terraform CLI for acceptance tests: %v", err)
	}
}
