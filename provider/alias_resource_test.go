package provider

import (
	"fmt"
	"net/http"
	"regexp"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
)

// aliasConfig is a published function "split" of src and its alias "live"
// naming version, with routing (the routing_config block's body, or "").
func aliasConfig(env *testenv.Env, src, version, routing string) string {
	cfg := functionConfig(env, fmt.Sprintf(`
  name    = "split"
  runtime = "provided"
  source  = %q
  publish = true
  timeout = "10s"`, src))
	block := ""
	if routing != "" {
		block = "\n  routing_config {\n    " + routing + "\n  }"
	}
	return cfg + fmt.Sprintf(`
resource "nimbus_alias" "live" {
  name             = "live"
  function         = nimbus_function.fn.name
  function_version = %s
  description      = "what callers use"%s
}
`, version, block)
}

// checkSplit invokes the alias n times, as callers would, and checks that
// the share that version ran is want ± tolerance, and that each answer
// came from the code of the version that X-Amz-Executed-Version names.
func checkSplit(env *testenv.Env, target string, n int, version string, want, tolerance float64) resource.TestCheckFunc {
	return func(*terraform.State) error {
		ran := map[string]int{}
		for range n {
			a, err := invokeTarget(env, target, `{"action":"file","value":"VERSION"}`)
			if err != nil {
				return err
			}
			executed := a.header.Get("X-Amz-Executed-Version")
			if a.status != http.StatusOK {
				return fmt.Errorf("invoking %s: %d %s", target, a.status, a.raw)
			}
			// Version 1 is the code without a VERSION file, 2 the one with.
			if code := map[string]string{"1": "", "2": "2\n"}[executed]; a.body["file"] != code {
				return fmt.Errorf("invoking %s: version %q ran, but the code that answered has VERSION %q", target, executed, a.body["file"])
			}
			ran[executed]++
		}
		share := float64(ran[version]) / float64(n)
		if share < want-tolerance || share > want+tolerance {
			return fmt.Errorf("of %d invocations of %s, version %s ran %d (%.1f%%); want %.0f%% ± %.0f%% (all: %v)",
				n, target, version, ran[version], 100*share, 100*want, 100*tolerance, ran)
		}
		fmt.Printf("%s: of %d invocations, by version %v: %.1f%% to version %s\n", target, n, ran, 100*share, version)
		return nil
	}
}

// An alias names a version; with a weight it sends that share of the
// invocations to another version, which callers see in
// X-Amz-Executed-Version. Bad weights fail the plan, a version that is not
// published fails the apply and leaves the alias as it was, and the alias
// imports by <function>/<name>.
func TestAccAliasWeightedSplit(t *testing.T) {
	requireAcceptance(t)
	env := testenv.Get(t)
	const alias = "nimbus_alias.live"
	weighted := `additional_version_weights = { "2" = 0.1 }`
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testProviders,
		CheckDestroy: func(*terraform.State) error {
			if pair, _, err := env.Consul.KV().Get(kvstore.AliasKey("split", "live"), nil); err != nil || pair != nil {
				return fmt.Errorf("the alias is still in KV after destroy (err %v)", err)
			}
			return nil
		},
		Steps: []resource.TestStep{
			{
				Config: aliasConfig(env, fixtures.goSource, "nimbus_function.fn.version", ""),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(alias, tfjsonpath.New("id"), knownvalue.StringExact("split/live")),
					statecheck.ExpectKnownValue(alias, tfjsonpath.New("function_version"), knownvalue.StringExact("1")),
					statecheck.ExpectKnownValue(alias, tfjsonpath.New("invoke_url"), knownvalue.StringExact(gateway(env).URL+"/v1/functions/split:live/invoke")),
				},
				Check: checkVersionAnswers(env, "split:live", "", "1"),
			},
			// Bad weights fail the plan, with what to do.
			{
				Config:      aliasConfig(env, fixtures.goSource, `"1"`, `additional_version_weights = { "1" = 0.5 }`),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`(?s)A\s+weight\s+for\s+the\s+alias's\s+own\s+version.*weight\s+only\s+other\s+versions`),
			},
			{
				Config:      aliasConfig(env, fixtures.goSource, `"1"`, `additional_version_weights = { "2" = 0.7, "3" = 0.6 }`),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`(?s)The\s+weights\s+add\s+up\s+to\s+more\s+than\s+1.*Lower\s+them`),
			},
			{
				Config:      aliasConfig(env, fixtures.goSource, `"1"`, `additional_version_weights = { "next" = 0.1 }`),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`(?s)Weights\s+are\s+keyed\s+by\s+version\s+number`),
			},
			{
				Config:      aliasConfig(env, fixtures.goSource, `"$LATEST"`, weighted),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`(?s)An\s+alias\s+with\s+weights\s+names\s+a\s+published\s+version.*Set\s+publish`),
			},
			{
				Config:      aliasConfig(env, fixtures.goSource, `"live"`, ""),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`(?s)must\s+be\s+a\s+published\s+version's\s+number,\s+or\s+\$LATEST`),
			},
			// A weight for a version that is not published fails the apply;
			// the alias still names version 1 alone.
			{
				Config:      aliasConfig(env, fixtures.goSource, `"1"`, `additional_version_weights = { "9" = 0.1 }`),
				ExpectError: regexp.MustCompile(`(?s)Version\s+9\s+of\s+function\s+split\s+is\s+not\s+published`),
			},
			{
				Config: aliasConfig(env, fixtures.goSource, `"1"`, ""),
				Check:  checkSplit(env, "split:live", 50, "1", 1, 0),
			},
			// A code change publishes version 2, and the alias sends it a
			// tenth of 2,000 invocations.
			{
				Config: aliasConfig(env, fixtures.goSourceV2, `"1"`, weighted),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("nimbus_function.fn", tfjsonpath.New("version"), knownvalue.StringExact("2")),
				},
				Check: checkSplit(env, "split:live", 2000, "2", 0.10, 0.03),
			},
			{
				ResourceName:      alias,
				ImportState:       true,
				ImportStateId:     "split/live",
				ImportStateVerify: true,
			},
			// Promoting version 2 sends it everything.
			{
				Config: aliasConfig(env, fixtures.goSourceV2, "nimbus_function.fn.version", ""),
				Check:  checkSplit(env, "split:live", 50, "2", 1, 0),
			},
		},
	})
}
