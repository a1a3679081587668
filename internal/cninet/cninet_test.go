package cninet_test

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/cninet"
)

var update = flag.Bool("update", false, "rewrite examples/platform/cni")

// The configurations operators install are exactly what the harness runs.
func TestShippedConflistsAreTheDefault(t *testing.T) {
	dir := filepath.Join("..", "..", "examples", "platform", "cni")
	for name, want := range cninet.DefaultClient().Conflists() {
		path := filepath.Join(dir, name)
		if *update {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test ./internal/cninet -update to write it)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from cninet.DefaultClient(); rerun with -update if the change is intended", path)
		}
	}
}

func TestPolicies(t *testing.T) {
	c := cninet.DefaultClient()
	pub, none := c.Policy(c.Public), c.Policy(c.None)
	for _, p := range []cninet.PolicyConf{pub, none} {
		for _, want := range []string{"169.254.0.0/16", c.Public.Subnet.String(), c.None.Subnet.String(),
			"10.0.0.0/8", "100.64.0.0/10", "172.16.0.0/12", "192.168.0.0/16"} {
			if !slices.Contains(p.Deny, want) {
				t.Errorf("%s denies %v, not %s", p.Bridge, p.Deny, want)
			}
		}
	}
	if len(none.GatewayPorts) != 0 {
		t.Errorf("egress none lets instances reach host ports %v", none.GatewayPorts)
	}
	if !slices.Equal(pub.GatewayPorts, []int{cninet.DefaultGatewayPort}) {
		t.Errorf("public egress reaches host ports %v, want the function listener's", pub.GatewayPorts)
	}
	noneRules := cninet.Ruleset(none)
	if strings.Contains(noneRules, "@denied accept") || strings.Contains(noneRules, "masquerade") || strings.Contains(noneRules, "dport") {
		t.Errorf("egress none lets something out:\n%s", noneRules)
	}
	if cninet.GenerationChain(pub) == cninet.GenerationChain(none) {
		t.Error("two different rulesets share a generation")
	}
	if cninet.Mode(cninet.EgressNone) != "cni/nimbus-none" || cninet.Mode(cninet.EgressPublic) != "cni/nimbus" {
		t.Error("network modes do not name the shipped networks")
	}
}

// A private destination the operator allows is reached before the deny
// list is consulted, on the public network only; an allow list that would
// open link-local addresses or another instance is refused.
func TestAllowList(t *testing.T) {
	c := cninet.DefaultClient()
	c.Allow = []netip.Prefix{netip.MustParsePrefix("10.0.5.10/32")}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	pub := cninet.Ruleset(c.Policy(c.Public))
	allow, deny := strings.Index(pub, "ip daddr @allowed accept"), strings.Index(pub, "ip daddr != @denied accept")
	if allow < 0 || deny < 0 || allow > deny || !strings.Contains(pub, "10.0.5.10/32") {
		t.Errorf("the public ruleset does not accept the allowed destination before the deny list:\n%s", pub)
	}
	if none := cninet.Ruleset(c.Policy(c.None)); strings.Contains(none, "@allowed") {
		t.Errorf("egress none allows something:\n%s", none)
	}
	for _, bad := range []string{"169.254.169.254/32", "172.30.0.0/24", "172.30.16.5/32", "172.16.0.0/12"} {
		c.Allow = []netip.Prefix{netip.MustParsePrefix(bad)}
		if err := c.Validate(); err == nil {
			t.Errorf("an allow list of %s was accepted; it opens what no instance may reach", bad)
		}
	}
	c.Allow = nil
	if strings.Contains(cninet.Ruleset(c.Policy(c.Public)), "@allowed") {
		t.Error("without an allow list, the ruleset has an allowed set")
	}
}

// The kernel accepts the rulesets (nft -c checks without applying).
func TestRulesetsAreValidNftables(t *testing.T) {
	nft, err := cninet.NftCommand()
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		t.Skip("nft -c needs root to ask the kernel; the integration tests install these rules for real")
	}
	c := cninet.DefaultClient()
	c.Allow = []netip.Prefix{netip.MustParsePrefix("10.0.5.10/32"), netip.MustParsePrefix("192.168.7.0/24")}
	c.Deny = []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")} // within a private range: merged
	for _, n := range c.Networks() {
		p := c.Policy(n)
		p.Resolvers = []string{"10.255.255.53", "169.254.169.253"}
		cmd := exec.Command(nft, "-c", "-f", "-")
		cmd.Stdin = strings.NewReader(cninet.Ruleset(p))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("nft rejects the ruleset of %s: %v: %s\n%s", n.Name, err, out, cninet.Ruleset(p))
		}
	}
}

// The host's DNS servers stay reachable on port 53 from a public network,
// even at a private or link-local address (a VPC's resolver), and only
// there; a network without egress asks no one.
func TestResolvers(t *testing.T) {
	got := cninet.HostResolvers([]byte("# generated\nnameserver 10.255.255.53\nnameserver 127.0.0.53\nnameserver fd00::53\nsearch example.com\nnameserver 169.254.169.253\nnameserver 10.255.255.53\n"))
	if !slices.Equal(got, []string{"10.255.255.53", "169.254.169.253"}) {
		t.Errorf("HostResolvers = %v, want the IPv4 nameservers off loopback, once each", got)
	}
	c := cninet.DefaultClient()
	pub, none := c.Policy(c.Public), c.Policy(c.None)
	pub.Resolvers, none.Resolvers = got, got
	rules := cninet.Ruleset(pub)
	dns, deny := strings.Index(rules, "ip daddr @resolvers meta l4proto { tcp, udp } th dport 53 accept"), strings.Index(rules, "ip daddr != @denied accept")
	if dns < 0 || dns > deny || !strings.Contains(rules, "10.255.255.53, 169.254.169.253") {
		t.Errorf("the public ruleset does not let DNS to the host's resolvers through before the deny list:\n%s", rules)
	}
	if strings.Contains(cninet.Ruleset(none), "resolvers") {
		t.Error("a network without egress asks resolvers")
	}
	if cninet.GenerationChain(pub) == cninet.GenerationChain(c.Policy(c.Public)) {
		t.Error("a change of the host's resolvers does not change the generation, so no installed ruleset would follow it")
	}
}
