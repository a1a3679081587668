package provider

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/accesskey"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
)

// expectHTTP polls the gateway until a request gets the wanted status (the
// gateway follows KV within moments) and checks the body.
func expectHTTP(env *testenv.Env, method, path string, status int, bodyPart string) resource.TestCheckFunc {
	return expectHTTPAs(env, nil, method, path, status, bodyPart)
}

// expectHTTPAs is expectHTTP with credentials: as adds them to each
// request (nil: none).
func expectHTTPAs(env *testenv.Env, as func(*http.Request), method, path string, status int, bodyPart string) resource.TestCheckFunc {
	return func(*terraform.State) error {
		url := gateway(env).URL + path
		var last string
		for i := 0; i < 100; i++ {
			const body = `{"name":"route"}`
			req, _ := http.NewRequest(method, url, strings.NewReader(body))
			if as != nil {
				as(req)
			}
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				last = fmt.Sprintf("%d %s", resp.StatusCode, b)
				if resp.StatusCode == status && strings.Contains(string(b), bodyPart) {
					return nil
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		return fmt.Errorf("%s %s: want %d with %q, last got %s", method, path, status, bodyPart, last)
	}
}

func TestAccHTTPRoute(t *testing.T) {
	requireAcceptance(t)
	env := testenv.Get(t)
	src, _ := filepath.Abs("testdata/pyfn")
	fn := fmt.Sprintf(`
resource "nimbus_function" "greeter" {
  name    = "route-greeter"
  runtime = "python3"
  handler = "app.handler"
  source  = %q
}
`, src)
	routeAs := func(path, authorization string) string {
		return fmt.Sprintf(`
resource "nimbus_http_route" "hello" {
  function      = nimbus_function.greeter.name
  path          = %q
  methods       = ["GET"]
  authorization = %q
}
`, path, authorization)
	}
	route := func(path string) string { return routeAs(path, "NONE") }
	sum := sha256.Sum256([]byte(`{"name":"route"}`))
	bodyHash := hex.EncodeToString(sum[:])
	// The route's function may be invoked by the operator's key.
	id, secret, err := accesskey.ParseToken(env.GatewayToken)
	if err != nil {
		t.Fatal(err)
	}
	signed := func(service string) func(*http.Request) {
		return func(r *http.Request) {
			creds := aws.Credentials{AccessKeyID: id, SecretAccessKey: secret}
			_ = v4.NewSigner().SignHTTP(context.Background(), creds, r, bodyHash, service, "eu-central-1", time.Now())
		}
	}
	bearer := func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+env.GatewayToken) }
	apiKey := func(r *http.Request) { r.Header.Set("X-Api-Key", env.GatewayToken) }
	otherSecret := func(r *http.Request) {
		creds := aws.Credentials{AccessKeyID: id, SecretAccessKey: strings.Repeat("x", 40)}
		_ = v4.NewSigner().SignHTTP(context.Background(), creds, r, bodyHash, "execute-api", "eu-central-1", time.Now())
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testProviders,
		CheckDestroy: func(*terraform.State) error {
			keys, _, err := env.Consul.KV().Keys(kvstore.RoutesPrefix, "", nil)
			if err != nil || len(keys) != 0 {
				return fmt.Errorf("routes left in KV after destroy: %v (err %v)", keys, err)
			}
			return nil
		},
		Steps: []resource.TestStep{
			{
				// By default a route wants a SigV4 signature for execute-api.
				Config: providerConfig(env) + fn + `
resource "nimbus_http_route" "hello" {
  function = nimbus_function.greeter.name
  path     = "/hello"
  methods  = ["GET"]
}
`,
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("nimbus_http_route.hello", tfjsonpath.New("authorization"), knownvalue.StringExact("AWS_IAM")),
				},
				Check: resource.ComposeTestCheckFunc(
					expectHTTPAs(env, signed("execute-api"), http.MethodGet, "/hello/there", http.StatusOK, `"greeting": "hello world"`),
					expectHTTP(env, http.MethodGet, "/hello/there", http.StatusUnauthorized, "UnrecognizedClientException"),
					expectHTTPAs(env, otherSecret, http.MethodGet, "/hello/there", http.StatusUnauthorized, "InvalidSignatureException"),
					expectHTTPAs(env, signed("lambda"), http.MethodGet, "/hello/there", http.StatusUnauthorized, "execute-api"),
					expectHTTPAs(env, bearer, http.MethodGet, "/hello/there", http.StatusUnauthorized, "SigV4"),
				),
			},
			{
				// API_KEY: the key's token, as x-api-key or a bearer token.
				Config: providerConfig(env) + fn + routeAs("/hello", "API_KEY"),
				Check: resource.ComposeTestCheckFunc(
					expectHTTPAs(env, apiKey, http.MethodGet, "/hello/there", http.StatusOK, `"greeting": "hello world"`),
					expectHTTPAs(env, bearer, http.MethodGet, "/hello/there", http.StatusOK, `"greeting": "hello world"`),
					expectHTTP(env, http.MethodGet, "/hello/there", http.StatusUnauthorized, "x-api-key"),
					expectHTTPAs(env, signed("execute-api"), http.MethodGet, "/hello/there", http.StatusUnauthorized, "x-api-key"),
				),
			},
			{
				// NONE, written out: anyone.
				Config: providerConfig(env) + fn + route("/hello"),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("nimbus_http_route.hello", tfjsonpath.New("id"), knownvalue.StringExact("/hello* GET")),
					statecheck.ExpectKnownValue("nimbus_http_route.hello", tfjsonpath.New("match"), knownvalue.StringExact("prefix")),
				},
				Check: resource.ComposeTestCheckFunc(
					expectHTTP(env, http.MethodGet, "/hello/there?x=1", http.StatusOK, `"greeting": "hello world"`),
					expectHTTP(env, http.MethodPost, "/hello", http.StatusMethodNotAllowed, "GET"),
					expectHTTP(env, http.MethodGet, "/hellothere", http.StatusNotFound, "no route"),
				),
			},
			{
				// Moving the route is picked up live: the old path goes away.
				Config: providerConfig(env) + fn + route("/hi"),
				Check: resource.ComposeTestCheckFunc(
					expectHTTP(env, http.MethodGet, "/hi", http.StatusOK, "hello world"),
					expectHTTP(env, http.MethodGet, "/hello", http.StatusNotFound, "no route"),
				),
			},
			{
				ResourceName:      "nimbus_http_route.hello",
				ImportState:       true,
				ImportStateId:     "/hi* GET",
				ImportStateVerify: true,
			},
			{
				// A second route on the same requests is refused, naming the first.
				Config: providerConfig(env) + fn + route("/hi") + `
resource "nimbus_http_route" "clash" {
  function = nimbus_function.greeter.name
  path     = "/hi"
}
`,
				ExpectError: regexp.MustCompile(`(?s)Conflicting route.*existing\s+route\s+"/hi\*\s+GET"`),
			},
			{
				Config:      providerConfig(env) + fn + route("/v1/functions"),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`(?s)Reserved path.*gateway's own API`),
			},
		},
	})
}
