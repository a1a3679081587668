package provider

import (
	"fmt"
	"os"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/agents"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/testenv"
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
	testenv.Main(m)
}

// providerConfig points the provider at the test environment's agents.
func providerConfig(env *testenv.Env) string {
	return fmt.Sprintf(`
provider "nimbus" {
  nomad {
    address = %q
  }
  consul {
    address = %q
  }
}
`, env.NomadAddr, env.ConsulAddr)
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
