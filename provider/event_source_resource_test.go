package provider

import (
	"context"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
)

// ordersStream creates, as the stream's owner would, the stream that the
// environment lets the gateways read as an event source.
func ordersStream(t *testing.T, env *testenv.Env) jetstream.JetStream {
	t.Helper()
	js := adminJetStream(t, env)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: testenv.SourceStream, Subjects: []string{"orders.>"}}); err != nil {
		t.Fatal(err)
	}
	return js
}

// consumerPending checks the source's JetStream consumer: it exists, with
// maximum_concurrency × batch_size messages at most unacknowledged.
func consumerPending(js jetstream.JetStream, want int) resource.TestCheckFunc {
	return func(*terraform.State) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := js.Consumer(ctx, testenv.SourceStream, "nimbus-source-acc-orders")
		if err != nil {
			return fmt.Errorf("the source's consumer: %w", err)
		}
		if got := c.CachedInfo().Config.MaxAckPending; got != want {
			return fmt.Errorf("the consumer allows %d unacknowledged messages, want %d (maximum_concurrency × batch_size)", got, want)
		}
		return nil
	}
}

// messageRuns publishes a message on the source's subjects and waits until
// a gateway settled it: the function (testdata/lambdago) consumed it.
func messageRuns(env *testenv.Env, js jetstream.JetStream) resource.TestCheckFunc {
	return func(*terraform.State) error {
		const settled = `nimbus_event_source_records_total{outcome="succeeded",source="acc-orders"}`
		before, err := gatewayMetric(env, settled)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := js.Publish(ctx, "orders.acc.new", []byte(`{"order":1}`)); err != nil {
			return err
		}
		for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(500 * time.Millisecond) {
			v, err := gatewayMetric(env, settled)
			if err != nil {
				return err
			}
			if v > before {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("a message published on orders.acc.new was not consumed within 90s")
			}
		}
	}
}

// A NATS event source declared in Terraform: the consumer exists once the
// apply is done, and a message published invokes the function. A new
// concurrency updates the consumer in place; a new starting position
// replaces the source. It imports by name, and destroy removes both its
// record and its consumer.
func TestAccEventSource(t *testing.T) {
	requireAcceptance(t)
	env := testenv.Get(t)
	js := ordersStream(t, env)
	config := func(concurrency int, position string) string {
		return providerConfig(env) + fmt.Sprintf(`
resource "nimbus_function" "orders" {
  name    = "acc-orders"
  runtime = "provided"
  source  = %q
}

resource "nimbus_event_source" "orders" {
  name                = "acc-orders"
  function            = nimbus_function.orders.name
  batch_size          = 5
  maximum_concurrency = %d
  nats = {
    stream            = %q
    filter_subject    = "orders.acc.>"
    starting_position = %q
  }
}
`, fixtures.goSource, concurrency, testenv.SourceStream, position)
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testProviders,
		CheckDestroy: func(*terraform.State) error {
			if pair, _, err := env.Consul.KV().Get(kvstore.EventSourceKey("acc-orders"), nil); err != nil || pair != nil {
				return fmt.Errorf("the source's record is left in KV (err %v)", err)
			}
			if _, err := js.Consumer(context.Background(), testenv.SourceStream, "nimbus-source-acc-orders"); err == nil {
				return fmt.Errorf("the source's consumer is left on stream %s", testenv.SourceStream)
			}
			return nil
		},
		Steps: []resource.TestStep{
			{
				Config: config(2, "LATEST"),
				Check: resource.ComposeTestCheckFunc(
					resource.TestCheckResourceAttr("nimbus_event_source.orders", "enabled", "true"),
					resource.TestCheckResourceAttr("nimbus_event_source.orders", "maximum_retry_attempts", "2"),
					consumerPending(js, 10), messageRuns(env, js)),
			},
			{
				Config: config(4, "LATEST"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("nimbus_event_source.orders", plancheck.ResourceActionUpdate),
				}},
				Check: consumerPending(js, 20),
			},
			{
				Config: config(4, "TRIM_HORIZON"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("nimbus_event_source.orders", plancheck.ResourceActionReplace),
				}},
				Check: resource.ComposeTestCheckFunc(consumerPending(js, 20), messageRuns(env, js)),
			},
			{
				ResourceName:      "nimbus_event_source.orders",
				ImportState:       true,
				ImportStateId:     "acc-orders",
				ImportStateVerify: true,
			},
		},
	})
}

// Bad settings are refused at plan, each saying what to do.
func TestAccEventSourceRefusedAtPlan(t *testing.T) {
	requireAcceptance(t)
	env := testenv.Get(t)
	nats := func(extra string) string {
		return "nats = {\n    stream = \"ORDERS\"\n    " + extra + "\n  }"
	}
	for name, c := range map[string]struct{ body, want string }{
		"a batch of 0":            {"batch_size = 0\n  " + nats(""), `(?s)batch_size.*between 1 and 10000`},
		"a concurrency of 1":      {"maximum_concurrency = 1\n  " + nats(""), `(?s)maximum_concurrency.*between 2 and 1000`},
		"a concurrency of 1001":   {"maximum_concurrency = 1001\n  " + nats(""), `(?s)maximum_concurrency.*between 2 and 1000`},
		"a window of 301 s":       {"maximum_batching_window_in_seconds = 301\n  " + nats(""), `(?s)maximum_batching_window_in_seconds.*between 0 and 300`},
		"no broker":               {"", `(?s)exactly one of the blocks nats and rabbitmq`},
		"both brokers":            {nats("") + "\n  rabbitmq = {\n    url = \"amqp://mq:5672/\"\n    queue = \"q\"\n  }", `(?s)exactly one of the blocks nats and rabbitmq`},
		"a stream with a dot":     {"nats = { stream = \"orders.eu\" }", `(?s)stream.*no dots, wildcards or spaces`},
		"an empty filter token":   {nats(`filter_subject = "orders..eu"`), `(?s)filter_subject.*must be a NATS subject`},
		"a timestamp missing":     {nats(`starting_position = "AT_TIMESTAMP"`), `(?s)AT_TIMESTAMP needs a time`},
		"a stray timestamp":       {nats(`starting_position_timestamp = "2026-11-27T08:00:00Z"`), `(?s)only goes with AT_TIMESTAMP`},
		"a bad timestamp":         {nats("starting_position = \"AT_TIMESTAMP\"\n    starting_position_timestamp = \"yesterday\""), `(?s)Not an RFC 3339 time`},
		"a bad position":          {nats(`starting_position = "OLDEST"`), `(?s)starting_position.*TRIM_HORIZON`},
		"credentials in the URL":  {"rabbitmq = {\n    url = \"amqp://user:secret@mq:5672/\"\n    queue = \"q\"\n  }", `(?s)Credentials do not belong in the URL.*nomad var put`},
		"an HTTP URL":             {"rabbitmq = {\n    url = \"http://mq:15672/\"\n    queue = \"q\"\n  }", `(?s)Not a RabbitMQ URL`},
		"a reserved queue":        {"rabbitmq = {\n    url = \"amqp://mq:5672/\"\n    queue = \"amq.orders\"\n  }", `(?s)queue.*amq\.`},
		"a destination and a bad": {"on_failure = { nats_subject = \"orders.failed\" }\n  " + nats(""), `(?s)nats_subject.*under\s+nimbus\.destinations\.`},
	} {
		t.Run(name, func(t *testing.T) {
			resource.Test(t, resource.TestCase{
				ProtoV6ProviderFactories: testProviders,
				Steps: []resource.TestStep{{
					Config:      providerConfig(env) + "resource \"nimbus_event_source\" \"bad\" {\n  name = \"bad\"\n  function = \"f\"\n  " + c.body + "\n}\n",
					PlanOnly:    true,
					ExpectError: regexp.MustCompile(c.want),
				}},
			})
		})
	}
}

// A source the broker refuses fails the apply with JetStream's own
// message, and leaves nothing behind: no record, no consumer.
func TestAccEventSourceRefusedAtApply(t *testing.T) {
	requireAcceptance(t)
	env := testenv.Get(t)
	js := ordersStream(t, env)
	config := providerConfig(env) + fmt.Sprintf(`
resource "nimbus_function" "orphan" {
  name    = "acc-source-refused"
  runtime = "provided"
  source  = %q
}

resource "nimbus_event_source" "missing" {
  name     = "acc-missing-stream"
  function = nimbus_function.orphan.name
  nats = { stream = %q }
}

resource "nimbus_event_source" "outside" {
  name     = "acc-outside"
  function = nimbus_function.orphan.name
  nats = {
    stream         = %q
    filter_subject = "invoices.>"
  }
}
`, fixtures.goSource, testenv.UncreatedStream, testenv.SourceStream)
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testProviders,
		CheckDestroy: func(*terraform.State) error {
			for _, name := range []string{"acc-missing-stream", "acc-outside"} {
				if pair, _, err := env.Consul.KV().Get(kvstore.EventSourceKey(name), nil); err != nil || pair != nil {
					return fmt.Errorf("a refused source's record is in KV (err %v)", err)
				}
			}
			if _, err := js.Consumer(context.Background(), testenv.SourceStream, "nimbus-source-acc-outside"); err == nil {
				return fmt.Errorf("a refused source left its consumer")
			}
			return nil
		},
		Steps: []resource.TestStep{{
			Config:      config,
			ExpectError: regexp.MustCompile(`(?s)(stream not found.*matches none of stream ORDERS's subjects|matches none of stream ORDERS's subjects.*stream not found)`),
		}},
	})
}
