package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
)

// A function's asynchronous invocation config, declared in Terraform and
// honoured by the gateway: with no retry, a failing event runs once and
// its record goes to the on_failure function; a succeeding one's record
// lands on the on_success subject, in a stream of the user's. Changing
// the config updates it in place; it imports by the function's name, and
// destroy removes its record.
func TestAccFunctionEventInvokeConfig(t *testing.T) {
	requireAcceptance(t)
	env := testenv.Get(t)
	records := destinationStream(t, env, "nimbus.destinations.acc.>")
	config := func(retries int) string {
		return providerConfig(env) + fmt.Sprintf(`
resource "nimbus_function" "src" {
  name    = "async-src"
  runtime = "provided"
  source  = %[1]q
}

resource "nimbus_function" "sink" {
  name    = "async-sink"
  runtime = "provided"
  source  = %[1]q
}

resource "nimbus_function_event_invoke_config" "src" {
  function                     = nimbus_function.src.name
  maximum_retry_attempts       = %[2]d
  maximum_event_age_in_seconds = 600
  on_failure = {
    function = nimbus_function.sink.name
  }
  on_success = {
    nats_subject = "nimbus.destinations.acc.ok"
  }
}
`, fixtures.goSource, retries)
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testProviders,
		CheckDestroy: func(*terraform.State) error {
			if pair, _, err := env.Consul.KV().Get(kvstore.AsyncKey("async-src"), nil); err != nil || pair != nil {
				return fmt.Errorf("the config's record is left in KV (err %v)", err)
			}
			return nil
		},
		Steps: []resource.TestStep{
			{
				Config: config(0),
				Check:  resource.ComposeTestCheckFunc(failureReachesSink(env), successReachesSubject(env, records)),
			},
			{
				Config: config(1),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("nimbus_function_event_invoke_config.src", plancheck.ResourceActionUpdate),
				}},
			},
			{
				ResourceName:      "nimbus_function_event_invoke_config.src",
				ImportState:       true,
				ImportStateId:     "async-src",
				ImportStateVerify: true,
			},
		},
	})
}

// Bad settings are refused at plan, each saying what is allowed.
func TestAccFunctionEventInvokeConfigRefusedAtPlan(t *testing.T) {
	requireAcceptance(t)
	env := testenv.Get(t)
	for name, c := range map[string]struct{ body, want string }{
		"three retries":        {"maximum_retry_attempts = 3", `(?s)maximum_retry_attempts.*between 0 and 2`},
		"a 30 s age":           {"maximum_event_age_in_seconds = 30", `(?s)maximum_event_age_in_seconds.*between 60 and 21600`},
		"a subject outside":    {"on_success = { nats_subject = \"orders.done\" }", `(?s)nats_subject.*under\s+nimbus\.destinations\.`},
		"a wildcard subject":   {"on_success = { nats_subject = \"nimbus.destinations.>\" }", `(?s)nats_subject.*under\s+nimbus\.destinations\.`},
		"both destinations":    {"on_failure = {\n    function = \"x\"\n    nats_subject = \"nimbus.destinations.x\"\n  }", `(?s)on_failure.*exactly one of on_failure.function and on_failure.nats_subject`},
		"an empty destination": {"on_failure = {}", `(?s)on_failure.*exactly one of`},
		"a bad function name":  {"on_failure = { function = \"Not_A_Name\" }", `(?s)function.*must be a function name`},
	} {
		t.Run(name, func(t *testing.T) {
			resource.Test(t, resource.TestCase{
				ProtoV6ProviderFactories: testProviders,
				Steps: []resource.TestStep{{
					Config:      providerConfig(env) + "resource \"nimbus_function_event_invoke_config\" \"bad\" {\n  function = \"f\"\n  " + c.body + "\n}\n",
					PlanOnly:    true,
					ExpectError: regexp.MustCompile(c.want),
				}},
			})
		})
	}
}

// A config for a function that does not exist fails at apply, saying so.
func TestAccFunctionEventInvokeConfigNeedsItsFunction(t *testing.T) {
	requireAcceptance(t)
	env := testenv.Get(t)
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testProviders,
		Steps: []resource.TestStep{{
			Config:      providerConfig(env) + "resource \"nimbus_function_event_invoke_config\" \"orphan\" {\n  function = \"no-such-function\"\n}\n",
			ExpectError: regexp.MustCompile(`(?s)Function no-such-function does not exist.*nimbus_function`),
		}},
	})
}

// destinationStream is a JetStream stream of the test's, as a user's,
// capturing the destination subjects it names.
func destinationStream(t *testing.T, env *testenv.Env, subjects string) jetstream.Stream {
	t.Helper()
	js := adminJetStream(t, env)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "ACC_DESTINATIONS", Subjects: []string{subjects}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = js.DeleteStream(context.Background(), "ACC_DESTINATIONS") })
	return s
}

// adminJetStream is JetStream as the NATS operator sees it.
func adminJetStream(t *testing.T, env *testenv.Env) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(env.NATS.URL, env.NATS.Admin.Options()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// sendEvent sends one Event invocation through the gateway.
func sendEvent(env *testenv.Env, function, body string) error {
	req, err := gateway(env).Request(http.MethodPost, "/2015-03-31/functions/"+function+"/invocations", strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("X-Amz-Invocation-Type", "Event")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusAccepted {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("an Event invocation of %s: %s %s", function, resp.Status, b)
	}
	return nil
}

// gatewayMetric reads one series from the gateway's /metrics (0 when absent).
func gatewayMetric(env *testenv.Env, series string) (float64, error) {
	return gateway(env).Metric(series)
}

func failureReachesSink(env *testenv.Env) resource.TestCheckFunc {
	return func(*terraform.State) error {
		if err := sendEvent(env, "async-src", `{"action":"error","value":"to the sink"}`); err != nil {
			return err
		}
		// The sink runs once, with the record; the source ran once (no
		// retry) and left no dead letter.
		const sinkRuns = `nimbus_invocations_total{function="async-sink",status="200"}`
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			v, err := gatewayMetric(env, sinkRuns)
			if err != nil {
				return err
			}
			if v >= 1 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("the on_failure function never ran within 60s")
			}
		}
		if v, _ := gatewayMetric(env, `nimbus_invocations_total{function="async-src",status="200"}`); v != 1 {
			return fmt.Errorf("the failing source ran %v times; with maximum_retry_attempts = 0, once", v)
		}
		if v, _ := gatewayMetric(env, `nimbus_async_dead_letters_total{condition="RetriesExhausted",function="async-src"}`); v != 0 {
			return fmt.Errorf("%v dead letters for a failure that its on_failure destination took", v)
		}
		return nil
	}
}

func successReachesSubject(env *testenv.Env, records jetstream.Stream) resource.TestCheckFunc {
	return func(*terraform.State) error {
		if err := sendEvent(env, "async-src", `{"action":"echo","value":"to the subject"}`); err != nil {
			return err
		}
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			m, err := records.GetLastMsgForSubject(ctx, "nimbus.destinations.acc.ok")
			cancel()
			if err == nil {
				var rec struct {
					RequestContext struct {
						Condition string `json:"condition"`
					} `json:"requestContext"`
					RequestPayload  map[string]any `json:"requestPayload"`
					ResponsePayload map[string]any `json:"responsePayload"`
				}
				if err := json.Unmarshal(m.Data, &rec); err != nil {
					return fmt.Errorf("the success record %s: %w", m.Data, err)
				}
				if rec.RequestContext.Condition != "Success" || rec.RequestPayload["value"] != "to the subject" || rec.ResponsePayload["echo"] != "to the subject" {
					return fmt.Errorf("the success record: %s", m.Data)
				}
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("no success record on nimbus.destinations.acc.ok within 60s: %w", err)
			}
		}
	}
}
