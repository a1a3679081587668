package provider

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"

	nomadapi "github.com/hashicorp/nomad/api"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/agents"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
)

// A function's secret comes from a Nomad Variable: the handler reads it,
// while the plan, the state and the Nomad job hold only its reference. A
// path the function cannot read is refused at plan time, and a variable
// that does not exist is refused before anything is deployed.
func TestAccFunctionSecrets(t *testing.T) {
	requireAcceptance(t)
	env := testenv.Get(t)
	path := model.SecretsRoot("secretive")
	value := "s3cret-" + agents.NewSecretID()
	body := func(secretPath string) string {
		return functionConfig(env, fmt.Sprintf(`
  name          = "secretive"
  runtime       = "provided"
  source        = %q
  min_instances = 1
  secrets = {
    USER_SETTING = { path = %q, key = "user_setting" }
  }`, fixtures.goSource, secretPath))
	}
	t.Cleanup(func() { _, _ = env.Nomad.Variables().Delete(path, nil) })

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testProviders,
		Steps: []resource.TestStep{
			{
				Config:      body(model.SecretsRoot("other-function")),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`(?s)USER_SETTING: path\s+"nomad/jobs/nimbus-fn-other-function" is not readable.*nomad var put`),
			},
			{
				Config:      body(path),
				ExpectError: regexp.MustCompile(`(?s)does not exist.*nomad\s+var\s+put\s+` + regexp.QuoteMeta(path) + `\s+user_setting=`),
			},
			{
				PreConfig: func() {
					v := &nomadapi.Variable{Path: path, Items: nomadapi.VariableItems{"user_setting": value}}
					if _, _, err := env.Nomad.Variables().Update(v, nil); err != nil {
						t.Fatal(err)
					}
				},
				Config: body(path),
				Check: resource.ComposeTestCheckFunc(
					resource.TestCheckResourceAttr("nimbus_function.fn", "secrets.USER_SETTING.path", path),
					resource.TestCheckResourceAttr("nimbus_function.fn", "secrets.USER_SETTING.key", "user_setting"),
					checkInvokes(env, "nimbus-fn-secretive", `{"action":"env"}`, "USER_SETTING", value),
					func(s *terraform.State) error {
						for k, v := range s.RootModule().Resources["nimbus_function.fn"].Primary.Attributes {
							if strings.Contains(v, value) {
								return fmt.Errorf("the state holds the secret's value in %s", k)
							}
						}
						job, _, err := env.Nomad.Jobs().Info("nimbus-fn-secretive", nil)
						if err != nil {
							return err
						}
						spec, _ := json.Marshal(job)
						if strings.Contains(string(spec), value) {
							return fmt.Errorf("nomad job inspect shows the secret's value")
						}
						return nil
					},
				),
			},
			// Read back from the job, the references make an empty plan.
			{Config: body(path), PlanOnly: true},
		},
	})
}
