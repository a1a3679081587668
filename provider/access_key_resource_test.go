package provider

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/accesskey"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
)

// keyInState is what the state holds of an access key.
type keyInState struct {
	id, secret, token string
}

func accessKeyFromState(s *terraform.State, res string) (keyInState, error) {
	rs, ok := s.RootModule().Resources[res]
	if !ok {
		return keyInState{}, fmt.Errorf("%s is not in the state", res)
	}
	a := rs.Primary.Attributes
	return keyInState{id: a["id"], secret: a["secret"], token: a["bearer_token"]}, nil
}

// invokeAnswer is the gateway's answer to an invocation.
type invokeAnswer struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

// invokeWithToken calls the gateway's native invoke API as a client with
// a bearer token would.
func invokeWithToken(gw *testenv.Gateway, function, token, event string) (invokeAnswer, error) {
	req, err := http.NewRequest(http.MethodPost, gw.URL+"/v1/functions/"+function+"/invoke", strings.NewReader(event))
	if err != nil {
		return invokeAnswer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	// A first invocation waits for a cold start.
	resp, err := (&http.Client{Timeout: 90 * time.Second}).Do(req)
	if err != nil {
		return invokeAnswer{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	ans := invokeAnswer{status: resp.StatusCode, raw: string(b)}
	_ = json.Unmarshal(b, &ans.body)
	return ans, nil
}

// expectInvoke polls, for up to 5 s (the gateway learns of key changes
// through a Consul blocking query), until invoking function with token
// answers status; for a refusal, the body must name errorType.
func expectInvoke(gw *testenv.Gateway, function string, token func() string, status int, errorType string) resource.TestCheckFunc {
	return func(*terraform.State) error {
		var last invokeAnswer
		deadline := time.Now().Add(5 * time.Second)
		for {
			ans, err := invokeWithToken(gw, function, token(), `{"action":"echo","value":"with a key"}`)
			if err != nil {
				return fmt.Errorf("invoke %s: %w", function, err)
			}
			last = ans
			if ans.status == status {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("invoke %s: %d %s, want %d %s", function, last.status, last.raw, status, errorType)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if status == http.StatusOK {
			if last.body["echo"] != "with a key" {
				return fmt.Errorf("invoke %s: 200 but the function's answer is %s, want its echo of \"with a key\"", function, last.raw)
			}
			return nil
		}
		if last.body["errorType"] != errorType || last.body["errorMessage"] == "" {
			return fmt.Errorf("invoke %s: %d %s, want errorType %s and a message", function, last.status, last.raw, errorType)
		}
		return nil
	}
}

// kvAccessKey reads a key's record with the operator's Consul client.
func kvAccessKey(env *testenv.Env, id string) (kvstore.AccessKey, bool, error) {
	pair, _, err := env.Consul.KV().Get(kvstore.AccessKeyKey(id), nil)
	if err != nil || pair == nil {
		return kvstore.AccessKey{}, false, err
	}
	k, err := kvstore.DecodeAccessKey(pair.Value)
	return k, err == nil, err
}

func TestAccAccessKeyLifecycle(t *testing.T) {
	requireAcceptance(t)
	env := testenv.Get(t)
	gw := gateway(env)
	const res = "nimbus_access_key.client"
	const fn = "ak-echo"
	config := func(enabled bool, generation string) string {
		return providerConfig(env) + fmt.Sprintf(`
resource "nimbus_function" "echo" {
  name    = %q
  runtime = "provided"
  source  = %q
}

resource "nimbus_access_key" "client" {
  description = "acceptance test client"
  enabled     = %t
  invoke      = [nimbus_function.echo.name]
  keepers = {
    generation = %q
  }
  lifecycle {
    create_before_destroy = true
  }
}
`, fn, fixtures.goSource, enabled, generation)
	}
	// first is the key as created; rotated, the key that replaced it.
	var first, rotated keyInState
	capture := func(into *keyInState) resource.TestCheckFunc {
		return func(s *terraform.State) (err error) {
			*into, err = accessKeyFromState(s, res)
			return err
		}
	}
	firstToken := func() string { return first.token }
	rotatedToken := func() string { return rotated.token }
	record := func(id func() string, check func(kvstore.AccessKey) error) resource.TestCheckFunc {
		return func(*terraform.State) error {
			k, found, err := kvAccessKey(env, id())
			if !found {
				return fmt.Errorf("no access key %s in Consul KV (err %v)", id(), err)
			}
			return check(k)
		}
	}
	firstID := func() string { return first.id }
	idPattern := regexp.MustCompile(`^NIMB[A-Z2-7]{16}$`)

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testProviders,
		CheckDestroy: func(*terraform.State) error {
			for _, k := range []keyInState{first, rotated} {
				if _, found, err := kvAccessKey(env, k.id); found || err != nil {
					return fmt.Errorf("access key %s left in Consul KV after destroy (err %v)", k.id, err)
				}
			}
			return nil
		},
		Steps: []resource.TestStep{
			{
				Config: config(true, "1"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectSensitiveValue(res, tfjsonpath.New("secret")),
					plancheck.ExpectSensitiveValue(res, tfjsonpath.New("bearer_token")),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(res, tfjsonpath.New("id"), knownvalue.StringRegexp(idPattern)),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("enabled"), knownvalue.Bool(true)),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("upload_artifacts"), knownvalue.Bool(false)),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("read_operations"), knownvalue.Bool(false)),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("invoke"), knownvalue.SetExact([]knownvalue.Check{knownvalue.StringExact(fn)})),
				},
				Check: resource.ComposeTestCheckFunc(
					capture(&first),
					func(*terraform.State) error {
						if !accesskey.ValidSecret(first.secret) || first.token != first.id+"."+first.secret {
							return fmt.Errorf("state: secret %q is not a secret, or bearer_token %q is not <id>.<secret>", first.secret, first.token)
						}
						return nil
					},
					record(firstID, func(k kvstore.AccessKey) error {
						want := kvstore.AccessKey{ID: first.id, Secret: first.secret, Description: "acceptance test client", Enabled: true, Invoke: []string{fn}}
						if !reflect.DeepEqual(k, want) {
							return fmt.Errorf("access key in Consul KV: %+v, want %+v", k, want)
						}
						return nil
					}),
					// The key invokes the function it names, and nothing else.
					expectInvoke(gw, fn, firstToken, http.StatusOK, ""),
					expectInvoke(gw, "ak-not-allowed", firstToken, http.StatusForbidden, "AccessDeniedException"),
				),
			},
			{
				// Disabling is in place: same id and secret, refused within seconds.
				Config: config(false, "1"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(res, plancheck.ResourceActionUpdate),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(res, tfjsonpath.New("enabled"), knownvalue.Bool(false)),
				},
				Check: resource.ComposeTestCheckFunc(
					func(s *terraform.State) error {
						now, err := accessKeyFromState(s, res)
						if err != nil || now != first {
							return fmt.Errorf("disabling changed the key in the state: %s, was %s (err %v)", now.id, first.id, err)
						}
						return nil
					},
					record(firstID, func(k kvstore.AccessKey) error {
						if k.Enabled || k.Secret != first.secret {
							return fmt.Errorf("disabled access key in Consul KV: enabled %t, secret kept %t", k.Enabled, k.Secret == first.secret)
						}
						return nil
					}),
					expectInvoke(gw, fn, firstToken, http.StatusUnauthorized, "UnrecognizedClientException"),
				),
			},
			{
				// An import id that is no key's says what ids look like.
				ResourceName:  res,
				ImportState:   true,
				ImportStateId: "AKIAIOSFODNN7EXAMPLE",
				ExpectError:   regexp.MustCompile(`(?s)Invalid access key id.*"AKIAIOSFODNN7EXAMPLE"\s+is\s+not\s+an\s+access\s+key\s+id.*consul\s+kv\s+get\s+-keys\s+nimbus/access-keys/`),
			},
			{
				// Keepers live only in the state, and the secret is never read back.
				ResourceName:            res,
				ImportState:             true,
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"secret", "bearer_token", "keepers"},
				ImportStateCheck: func(states []*terraform.InstanceState) error {
					if len(states) != 1 {
						return fmt.Errorf("import gave %d resources, want 1", len(states))
					}
					if a := states[0].Attributes; a["secret"] != "" || a["bearer_token"] != "" {
						return fmt.Errorf("an import read the secret back from Consul: secret %q, bearer_token %q", a["secret"], a["bearer_token"])
					}
					return nil
				},
			},
			{
				// Enabling again restores the same key: the old token works again.
				Config: config(true, "1"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(res, plancheck.ResourceActionUpdate),
				}},
				Check: resource.ComposeTestCheckFunc(
					func(s *terraform.State) error {
						now, err := accessKeyFromState(s, res)
						if err != nil || now != first {
							return fmt.Errorf("enabling changed the key in the state: %s, was %s (err %v)", now.id, first.id, err)
						}
						return nil
					},
					record(firstID, func(k kvstore.AccessKey) error {
						if !k.Enabled || k.Secret != first.secret {
							return fmt.Errorf("re-enabled access key in Consul KV: enabled %t, secret kept %t", k.Enabled, k.Secret == first.secret)
						}
						return nil
					}),
					expectInvoke(gw, fn, firstToken, http.StatusOK, ""),
				),
			},
			{
				// Rotation: a new key before the old one goes.
				Config: config(true, "2"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(res, plancheck.ResourceActionCreateBeforeDestroy),
				}},
				Check: resource.ComposeTestCheckFunc(
					capture(&rotated),
					func(*terraform.State) error {
						if !idPattern.MatchString(rotated.id) || rotated.id == first.id || !accesskey.ValidSecret(rotated.secret) ||
							rotated.token != rotated.id+"."+rotated.secret {
							return fmt.Errorf("rotated key: id %s (was %s), a secret %t, bearer_token <id>.<secret> %t",
								rotated.id, first.id, accesskey.ValidSecret(rotated.secret), rotated.token == rotated.id+"."+rotated.secret)
						}
						if _, found, err := kvAccessKey(env, first.id); found || err != nil {
							return fmt.Errorf("the rotated-out key %s is still in Consul KV (err %v)", first.id, err)
						}
						return nil
					},
					expectInvoke(gw, fn, rotatedToken, http.StatusOK, ""),
					expectInvoke(gw, fn, firstToken, http.StatusUnauthorized, "UnrecognizedClientException"),
				),
			},
		},
	})
}

// TestAccAccessKeyInvalidPattern: bad invoke patterns are refused at plan
// time, before anything is written.
func TestAccAccessKeyInvalidPattern(t *testing.T) {
	requireAcceptance(t)
	env := testenv.Get(t)
	keys := func() []string {
		k, _, err := env.Consul.KV().Keys(kvstore.AccessKeysPrefix, "", nil)
		if err != nil {
			t.Fatalf("listing %s: %v", kvstore.AccessKeysPrefix, err)
		}
		return k
	}
	before := keys()
	key := func(invoke string) string {
		return providerConfig(env) + fmt.Sprintf(`
resource "nimbus_access_key" "bad" {
  invoke = [%s]
}
`, invoke)
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testProviders,
		Steps: []resource.TestStep{
			{
				// An apply, not only a plan: the refusal must come first.
				Config:      key(`"orders-*", "orders[0]"`),
				ExpectError: regexp.MustCompile(`(?s)Invalid function pattern.*"orders\[0\]":\s+only\s+\*\s+is\s+a\s+wildcard.*Patterns\s+match\s+function\s+names.*"orders-\*"`),
			},
			{
				Config:      key(`""`),
				ExpectError: regexp.MustCompile(`(?s)Invalid function pattern.*cannot\s+be\s+empty;\s+use\s+"\*"\s+for\s+every\s+function`),
			},
		},
	})
	if after := keys(); !reflect.DeepEqual(after, before) {
		t.Errorf("refused configurations wrote access keys: %v, before %v", after, before)
	}
}

// TestAccAccessKeyImportExisting adopts a key made outside Terraform with an
// import block: its clients keep working, setting keepers the first time
// does not rotate it, and changing them then does.
func TestAccAccessKeyImportExisting(t *testing.T) {
	requireAcceptance(t)
	env := testenv.Get(t)
	gw := gateway(env)
	const res = "nimbus_access_key.adopted"
	id, secret, err := accesskey.New()
	if err != nil {
		t.Fatal(err)
	}
	existing := kvstore.AccessKey{ID: id, Secret: secret, Description: "made outside Terraform", Enabled: true, Invoke: []string{"ak-adopted-*"}}
	if _, err := env.Consul.KV().Put(&consulapi.KVPair{Key: kvstore.AccessKeyKey(id), Value: existing.Encode()}, nil); err != nil {
		t.Fatal(err)
	}
	// Should the test fail before its destroy, the key would outlive it.
	t.Cleanup(func() { _, _ = env.Consul.KV().Delete(kvstore.AccessKeyKey(id), nil) })
	oldToken := func() string { return accesskey.Token(id, secret) }
	var rotated keyInState
	// The gateway knows a key that may not invoke a function: 403, not 401.
	recognized := func(token func() string) resource.TestCheckFunc {
		return expectInvoke(gw, "ak-not-allowed", token, http.StatusForbidden, "AccessDeniedException")
	}
	config := func(importBlock, generation string) string {
		return providerConfig(env) + importBlock + fmt.Sprintf(`
resource "nimbus_access_key" "adopted" {
  description = "made outside Terraform"
  invoke      = ["ak-adopted-*"]
  keepers = {
    generation = %q
  }
  lifecycle {
    create_before_destroy = true
  }
}
`, generation)
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testProviders,
		CheckDestroy: func(*terraform.State) error {
			for _, k := range []string{id, rotated.id} {
				if _, found, err := kvAccessKey(env, k); found || err != nil {
					return fmt.Errorf("access key %s left in Consul KV after destroy (err %v)", k, err)
				}
			}
			return nil
		},
		Steps: []resource.TestStep{
			{
				Config: config(fmt.Sprintf("\nimport {\n  to = %s\n  id = %q\n}\n", res, id), "1"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(res, plancheck.ResourceActionUpdate),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(res, tfjsonpath.New("id"), knownvalue.StringExact(id)),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("secret"), knownvalue.Null()),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("bearer_token"), knownvalue.Null()),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("enabled"), knownvalue.Bool(true)),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("keepers"), knownvalue.MapExact(map[string]knownvalue.Check{"generation": knownvalue.StringExact("1")})),
				},
				Check: resource.ComposeTestCheckFunc(
					func(*terraform.State) error {
						k, found, err := kvAccessKey(env, id)
						if !found || !reflect.DeepEqual(k, existing) {
							return fmt.Errorf("adopting changed the key in Consul KV: %+v, was %+v (err %v)", k, existing, err)
						}
						return nil
					},
					recognized(oldToken),
				),
			},
			{
				Config: config("", "2"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(res, plancheck.ResourceActionCreateBeforeDestroy),
				}},
				Check: resource.ComposeTestCheckFunc(
					func(s *terraform.State) (err error) {
						if rotated, err = accessKeyFromState(s, res); err != nil {
							return err
						}
						if rotated.id == id || rotated.token != accesskey.Token(rotated.id, rotated.secret) || !accesskey.ValidSecret(rotated.secret) {
							return fmt.Errorf("rotated key: id %s (was %s), token <id>.<secret> %t", rotated.id, id, rotated.token == accesskey.Token(rotated.id, rotated.secret))
						}
						return nil
					},
					recognized(func() string { return rotated.token }),
					expectInvoke(gw, "ak-not-allowed", oldToken, http.StatusUnauthorized, "UnrecognizedClientException"),
				),
			},
		},
	})
}
