package provider

import (
	"context"
	"fmt"
	"regexp"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/principals"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
)

// A deployer token without the right it needs fails the apply with a
// message naming the missing right and the shipped policy that grants it,
// for Nomad and for Consul alike.
func TestAccDeployerWithoutRightsSaysWhichPolicy(t *testing.T) {
	requireAcceptance(t)
	env := testenv.Get(t)
	if !env.ACL {
		t.Fatal("this test needs the ACL-enabled environment")
	}
	ctx := context.Background()
	// Nomad: may read jobs but not submit them.
	readOnly, err := principals.NomadToken(ctx, env.Nomad, "test-deployer-read-only", `namespace "default" { capabilities = ["read-job", "list-jobs"] }`)
	if err != nil {
		t.Fatal(err)
	}
	// Consul: the deployer's health reads, but no function records.
	noRecords, err := principals.ConsulToken(ctx, env.Consul, "test-deployer-no-records",
		`key_prefix "nimbus/routes/" { policy = "write" }
service_prefix "nimbus-" { policy = "read" }
node_prefix "" { policy = "read" }`)
	if err != nil {
		t.Fatal(err)
	}
	config := func(creds principals.Credentials, name string) string {
		return providerConfigAs(env, creds) + fmt.Sprintf(`
resource "nimbus_function" "fn" {
  name    = %q
  runtime = "provided"
  source  = %q
}`, name, fixtures.goSource)
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testProviders,
		Steps: []resource.TestStep{{
			Config: config(principals.Credentials{NomadToken: readOnly, ConsulToken: env.Principals.Deployer.ConsulToken}, "denied-nomad"),
			ExpectError: regexp.MustCompile(`(?s)Permission denied: Nomad refused\s+\S+\s+/v1/job.*capability\s+"submit-job"\s+in\s+namespace\s+"default".*nimbus-deployer\s+policy` +
				`.*examples/platform/policies/nomad/deployer.hcl`),
		}},
	})
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testProviders,
		Steps: []resource.TestStep{{
			Config: config(principals.Credentials{NomadToken: env.Principals.Deployer.NomadToken, ConsulToken: noRecords}, "denied-consul"),
			ExpectError: regexp.MustCompile(`(?s)Permission denied: Consul refused PUT\s+/v1/kv/nimbus/functions/denied-consul.*key_prefix\s+"nimbus/functions/denied-consul".*"write".*nimbus-deployer` +
				`.*examples/platform/policies/consul/deployer.hcl`),
		}},
	})
}
