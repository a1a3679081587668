package provider

import (
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/agents"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
)

func TestAccClusterDataSource(t *testing.T) {
	requireAcceptance(t)
	env := testenv.Get(t)
	leader, err := env.Nomad.Status().Leader()
	if err != nil {
		t.Fatal(err)
	}
	// The suite runs against whatever Nomad and Consul NIMBUS_NOMAD_BIN and
	// NIMBUS_CONSUL_BIN name: expect the versions those binaries report.
	nomadVersion, err := agents.Nomad.Version()
	if err != nil {
		t.Fatal(err)
	}
	consulVersion, err := agents.Consul.Version()
	if err != nil {
		t.Fatal(err)
	}
	const ds = "data.nimbus_cluster.this"
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testProviders,
		Steps: []resource.TestStep{{
			Config: providerConfig(env) + `data "nimbus_cluster" "this" {}`,
			ConfigStateChecks: []statecheck.StateCheck{
				statecheck.ExpectKnownValue(ds, tfjsonpath.New("nomad_address"), knownvalue.StringExact(env.NomadAddr)),
				statecheck.ExpectKnownValue(ds, tfjsonpath.New("nomad_region"), knownvalue.StringExact("global")),
				statecheck.ExpectKnownValue(ds, tfjsonpath.New("nomad_leader"), knownvalue.StringExact(leader)),
				statecheck.ExpectKnownValue(ds, tfjsonpath.New("nomad_version"), knownvalue.StringExact(nomadVersion)),
				statecheck.ExpectKnownValue(ds, tfjsonpath.New("nomad_ready_nodes"), knownvalue.Int64Exact(1)),
				statecheck.ExpectKnownValue(ds, tfjsonpath.New("exec_nodes"), knownvalue.Int64Exact(1)),
				statecheck.ExpectKnownValue(ds, tfjsonpath.New("exec_driver_healthy"), knownvalue.Bool(true)),
				statecheck.ExpectKnownValue(ds, tfjsonpath.New("consul_address"), knownvalue.StringExact(env.ConsulAddr)),
				statecheck.ExpectKnownValue(ds, tfjsonpath.New("consul_datacenter"), knownvalue.StringExact("dc1")),
				statecheck.ExpectKnownValue(ds, tfjsonpath.New("consul_version"), knownvalue.StringExact(consulVersion)),
				statecheck.ExpectKnownValue(ds, tfjsonpath.New("consul_leader"), knownvalue.StringRegexp(regexp.MustCompile(`^127\.0\.0\.1:\d+$`))),
				statecheck.ExpectKnownValue(ds, tfjsonpath.New("id"), knownvalue.StringExact("global/dc1")),
				// The test client offers the Nimbus CNI networks.
				statecheck.ExpectKnownValue(ds, tfjsonpath.New("isolated_nodes"), knownvalue.Int64Exact(1)),
				statecheck.ExpectKnownValue(ds, tfjsonpath.New("isolated_network"), knownvalue.Bool(true)),
				// As the client's agent runs with it: the harness sets the
				// platform guide's value.
				statecheck.ExpectKnownValue(ds, tfjsonpath.New("max_kill_timeout"), knownvalue.StringExact(nomadjob.ClientMaxKillTimeout.String())),
			},
		}, {
			// A provider that chose host networking is not isolated, on
			// any cluster.
			Config: strings.Replace(providerConfig(env), `provider "nimbus" {`, "provider \"nimbus\" {\n  host_network = true", 1) +
				`data "nimbus_cluster" "this" {}`,
			ConfigStateChecks: []statecheck.StateCheck{
				statecheck.ExpectKnownValue(ds, tfjsonpath.New("isolated_nodes"), knownvalue.Int64Exact(1)),
				statecheck.ExpectKnownValue(ds, tfjsonpath.New("isolated_network"), knownvalue.Bool(false)),
			},
		}},
	})
}

// A client that sets no max_kill_timeout runs with Nomad's default, and
// nimbus_cluster reports it; a function whose timeout needs longer to
// drain gets a warning at plan (killTimeoutWarning, TestKillTimeoutWarning).
func TestAccClusterReportsNomadsDefaultKillTimeout(t *testing.T) {
	requireAcceptance(t)
	env, err := testenv.Start(testenv.Options{MaxKillTimeout: testenv.KeepNomadDefault})
	if err != nil {
		t.Fatal(err)
	}
	defer env.StopChecked(t)
	const ds = "data.nimbus_cluster.this"
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testProviders,
		Steps: []resource.TestStep{{
			Config: providerConfigWith(env, env.Principals.Deployer, "") + `data "nimbus_cluster" "this" {}`,
			ConfigStateChecks: []statecheck.StateCheck{
				statecheck.ExpectKnownValue(ds, tfjsonpath.New("max_kill_timeout"), knownvalue.StringExact("30s")),
			},
		}},
	})
}

func TestKillTimeoutWarning(t *testing.T) {
	kt := killTimeouts{Min: 30 * time.Second, MinNode: "client-1"}
	if msg := killTimeoutWarning(kt, "short", 3*time.Second, 8*time.Second); msg != "" {
		t.Errorf("a function that drains within max_kill_timeout got a warning: %s", msg)
	}
	msg := killTimeoutWarning(kt, "report", 5*time.Minute, 5*time.Minute+5*time.Second)
	for _, want := range []string{"client-1", "30s", "report", "5m5s", "5m0s", `max_kill_timeout = "17m"`, "platform guide"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the warning does not say %q: %s", want, msg)
		}
	}
	if msg := killTimeoutWarning(killTimeouts{}, "unread", time.Hour, time.Hour); msg != "" {
		t.Errorf("with no client read there is nothing to compare, yet: %s", msg)
	}
}

func TestAccClusterDataSourceUnreachable(t *testing.T) {
	requireAcceptance(t)
	env := testenv.Get(t)
	closed := closedPort(t)
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testProviders,
		Steps: []resource.TestStep{
			{
				Config: fmt.Sprintf(`
provider "nimbus" {
  nomad {
    address = "http://%s"
  }
  consul {
    address = %q
  }
}
data "nimbus_cluster" "this" {}`, closed, env.ConsulAddr),
				ExpectError: regexp.MustCompile(`(?s)Cannot reach Nomad.*` + regexp.QuoteMeta(closed) + `.*NOMAD_ADDR`),
			},
			{
				Config: fmt.Sprintf(`
provider "nimbus" {
  nomad {
    address = %q
  }
  consul {
    address = "%s"
  }
}
data "nimbus_cluster" "this" {}`, env.NomadAddr, closed),
				ExpectError: regexp.MustCompile(`(?s)Cannot reach Consul.*CONSUL_HTTP_ADDR`),
			},
		},
	})
}

func TestAccProviderRejectsInvalidAddress(t *testing.T) {
	requireAcceptance(t)
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testProviders,
		Steps: []resource.TestStep{{
			Config: `
provider "nimbus" {
  nomad {
    address = "nomad.example:4646"
  }
}
data "nimbus_cluster" "this" {}`,
			ExpectError: regexp.MustCompile(`(?s)invalid nomad.address.*NOMAD_ADDR`),
		}},
	})
}

// closedPort returns a loopback address on which nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}
