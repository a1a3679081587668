// Package cninet defines the Nomad client's Nimbus networks: the CNI
// configurations that give each function instance its own network
// namespace, and the firewall ruleset that keeps instances away from the
// host, from each other and from link-local addresses.
//
// Why the networks look as they do (each choice removes work from every
// cold start; see docs/guides/platform.md):
//
//   - Two networks, "nimbus" (egress to the outside allowed) and
//     "nimbus-none" (no egress at all). Nomad 1.6 cannot pass per-job
//     arguments to CNI, so a function chooses its egress by the network it
//     joins, and each network's policy is fixed per client.
//   - The chain is loopback, bridge (with port isolation, which keeps
//     instances apart at layer 2 without any rule) and nimbus-cni. The
//     bridge plugin does not masquerade: that would be iptables work per
//     allocation.
//   - nimbus-cni installs two nftables tables per network, the first time
//     an instance joins it after boot or after a configuration change: the
//     policy (which matches the bridge and the subnet, never one instance)
//     and the port mappings. Per allocation it adds or removes one element
//     of the mappings' map over netlink, where the portmap plugin would
//     start the nft command several times (measured: 36 ms per ADD, 75 ms
//     per DEL; nimbus-cni's whole ADD takes about 4 ms).
package cninet

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
)

// Network names, as jobs name them in network { mode = "cni/<name>" }.
const (
	NetworkPublic = "nimbus"
	NetworkNone   = "nimbus-none"
)

// Egress choices of a function, as the model defines them.
const (
	EgressPublic = model.EgressPublic
	EgressNone   = model.EgressNone
)

// PluginType is the CNI plugin binary that installs the Nimbus ruleset.
const PluginType = "nimbus-cni"

// LinkLocal holds cloud metadata services and their credentials; no
// instance may reach it.
var LinkLocal = netip.MustParsePrefix("169.254.0.0/16")

// PrivateRanges are the IPv4 ranges that are not the public internet:
// private networks (RFC 1918), shared address space (CGNAT), this network
// and loopback, IETF protocol assignments, multicast and reserved space.
// Like Lambda's functions, an instance with public egress reaches the
// internet and none of these, unless the network's allow list names a
// destination in them (a database, say). Link-local addresses are denied
// with them and can never be allowed.
var PrivateRanges = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("240.0.0.0/4"),
}

// Mode is the Nomad network mode of a function with the given egress.
func Mode(egress string) string {
	if egress == EgressNone {
		return "cni/" + NetworkNone
	}
	return "cni/" + NetworkPublic
}

// Network is one Nimbus network on a client.
type Network struct {
	Name   string
	Egress string
	Bridge string
	Subnet netip.Prefix
}

// Gateway is the address of the bridge, which instances use as their
// default route and at which they reach the host.
func (n Network) Gateway() netip.Addr { return n.Subnet.Addr().Next() }

// Client is a client's Nimbus networking.
type Client struct {
	Public, None Network
	// GatewayPorts are the host ports that instances with public egress
	// may reach on the host's own addresses: the gateway's function
	// listener. Every other host port is closed to them.
	GatewayPorts []int
	// Deny lists further destinations no instance may reach. Link-local
	// addresses, every Nimbus subnet and PrivateRanges are always denied.
	Deny []netip.Prefix
	// Allow names private destinations that instances with public egress
	// may reach all the same, such as a database on the cluster's network.
	// Never a link-local address or a Nimbus subnet (Validate).
	Allow []netip.Prefix
	// IPAMDataDir, when set, keeps host-local's address leases apart from
	// other Nomad agents' on the same machine.
	IPAMDataDir string
}

// DefaultClient is the configuration examples/platform/cni ships.
func DefaultClient() Client {
	return Client{
		Public:       Network{Name: NetworkPublic, Egress: EgressPublic, Bridge: "nimbus0", Subnet: netip.MustParsePrefix("172.30.0.0/20")},
		None:         Network{Name: NetworkNone, Egress: EgressNone, Bridge: "nimbus1", Subnet: netip.MustParsePrefix("172.30.16.0/20")},
		GatewayPorts: []int{DefaultGatewayPort},
	}
}

// DefaultGatewayPort is where the gateway's function listener listens in
// the shipped configuration.
const DefaultGatewayPort = 9650

// PolicyConf is nimbus-cni's entry in a network's plugin chain: the one
// definition of what the plugin reads.
type PolicyConf struct {
	Type         string   `json:"type"`
	Egress       string   `json:"egress"`
	Bridge       string   `json:"bridge"`
	Subnet       string   `json:"subnet"`
	GatewayPorts []int    `json:"gatewayPorts,omitempty"`
	Deny         []string `json:"deny"`
	// Allow names destinations within Deny that instances may reach all
	// the same (public egress only).
	Allow []string `json:"allow,omitempty"`
	// Resolvers are the host's DNS servers (its resolv.conf, which the
	// instances' chroot shares), which instances with public egress may
	// ask on port 53 even at a private address. nimbus-cni reads them
	// when it installs the rules; no configuration names them.
	Resolvers []string `json:"-"`
	// Capabilities asks Nomad for the allocation's port mappings.
	Capabilities map[string]bool `json:"capabilities,omitempty"`
}

// Networks returns the client's networks.
func (c Client) Networks() []Network { return []Network{c.Public, c.None} }

// Policy returns the plugin configuration of network n.
func (c Client) Policy(n Network) PolicyConf {
	deny := []string{LinkLocal.String()}
	for _, other := range c.Networks() {
		deny = append(deny, other.Subnet.String())
	}
	for _, p := range PrivateRanges {
		deny = append(deny, p.String())
	}
	for _, p := range c.Deny {
		deny = append(deny, p.String())
	}
	p := PolicyConf{Type: PluginType, Egress: n.Egress, Bridge: n.Bridge, Subnet: n.Subnet.String(), Deny: deny,
		Capabilities: map[string]bool{"portMappings": true}}
	if n.Egress == EgressPublic {
		p.GatewayPorts = slices.Clone(c.GatewayPorts)
		for _, a := range c.Allow {
			p.Allow = append(p.Allow, a.String())
		}
	}
	return p
}

// Validate refuses an allow list that would open what must stay closed:
// link-local addresses (cloud metadata and its credentials) and the
// Nimbus subnets (other instances).
func (c Client) Validate() error {
	closed := []netip.Prefix{LinkLocal}
	for _, n := range c.Networks() {
		closed = append(closed, n.Subnet)
	}
	for _, a := range c.Allow {
		for _, never := range closed {
			if a.Overlaps(never) {
				return fmt.Errorf("the allow list's %s overlaps %s, which no instance may reach: allow only the private destinations functions need, such as a database's address", a, never)
			}
		}
	}
	return nil
}

// Conflists returns each network's CNI configuration list by file name,
// for the client's cni_config_dir.
func (c Client) Conflists() map[string][]byte {
	out := map[string][]byte{}
	for _, n := range c.Networks() {
		ipam := map[string]any{
			"type":   "host-local",
			"ranges": [][]map[string]string{{{"subnet": n.Subnet.String()}}},
		}
		if c.IPAMDataDir != "" {
			ipam["dataDir"] = c.IPAMDataDir
		}
		list := map[string]any{
			"cniVersion": "1.0.0",
			"name":       n.Name,
			"plugins": []any{
				map[string]any{"type": "loopback"},
				map[string]any{
					"type":             "bridge",
					"bridge":           n.Bridge,
					"isDefaultGateway": true,
					"ipMasq":           false,
					"hairpinMode":      false,
					"portIsolation":    true,
					"ipam":             ipam,
				},
				c.Policy(n),
			},
		}
		b, _ := json.MarshalIndent(list, "", "  ")
		out[n.Name+".conflist"] = append(b, '\n')
	}
	return out
}

// NftCommand finds the nft command, which installs the rulesets: on PATH,
// else where Debian and others put it (a CNI plugin runs with whatever
// PATH the Nomad agent has).
func NftCommand() (string, error) {
	if p, err := exec.LookPath("nft"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/nft", "/sbin/nft"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("the nft command is missing: install nftables (Debian: apt-get install nftables); Nimbus networks install their firewall and port mappings with it")
}

// TableName is the nftables table (family inet) holding a network's rules.
func TableName(p PolicyConf) string { return "nimbus-" + p.Bridge }

// Ruleset renders the nftables ruleset of a network, for `nft -f`. It
// replaces the table atomically. Its generation chain names a hash of the
// rules, so the plugin sees with one netlink query whether the installed
// table is current.
func Ruleset(p PolicyConf) string {
	table := TableName(p)
	return fmt.Sprintf("add table inet %s\ndelete table inet %s\ntable inet %s {\n  chain %s {\n  }\n%s}\n",
		table, table, table, GenerationChain(p), rules(p))
}

// PortsTable is the nftables table (family ip) of a network's port
// mappings. It is apart from the policy so that replacing the policy keeps
// the running instances' mappings; its name carries the version of its
// rules.
func PortsTable(p PolicyConf) string { return "nimbus-" + p.Bridge + "-ports-v1" }

// PortsMap is the map in PortsTable from a host port to the address of the
// instance it leads to (on the same port inside the instance's namespace).
const PortsMap = "ports"

// PortsRuleset renders the port mappings' table, created once and never
// replaced. It rewrites TCP connections to a local address and a mapped
// port, arriving (prerouting) or opened on the host (output), to the
// instance; connections from the host's loopback leave with the bridge's
// address (the bridge gets route_localnet), as the portmap plugin's snat
// does.
func PortsRuleset(p PolicyConf) string {
	t := PortsTable(p)
	return fmt.Sprintf(`table ip %s {
  map %s {
    type inet_service : ipv4_addr
  }
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    fib daddr type local dnat ip to tcp dport map @%s
  }
  chain output {
    type nat hook output priority -100; policy accept;
    fib daddr type local dnat ip to tcp dport map @%s
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr 127.0.0.0/8 oifname %q masquerade
  }
}
`, t, PortsMap, PortsMap, PortsMap, p.Bridge)
}

// GenerationChain names the empty chain that marks the ruleset's version.
func GenerationChain(p PolicyConf) string {
	sum := sha256.Sum256([]byte(rules(p)))
	return "generation-" + hex.EncodeToString(sum[:6])
}

func rules(p PolicyConf) string {
	br := fmt.Sprintf("%q", p.Bridge)
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	// auto-merge: the Nimbus subnets and the operator's entries may lie
	// within the private ranges.
	w("  set denied {")
	w("    type ipv4_addr")
	w("    flags interval")
	w("    auto-merge")
	w("    elements = { %s }", strings.Join(p.Deny, ", "))
	w("  }")
	if len(p.Resolvers) > 0 && p.Egress == EgressPublic {
		w("  set resolvers {")
		w("    type ipv4_addr")
		w("    elements = { %s }", strings.Join(p.Resolvers, ", "))
		w("  }")
	}
	if len(p.Allow) > 0 {
		w("  set allowed {")
		w("    type ipv4_addr")
		w("    flags interval")
		w("    auto-merge")
		w("    elements = { %s }", strings.Join(p.Allow, ", "))
		w("  }")
	}
	// Connections to the host itself: replies, and the gateway's function
	// listener for instances that may have egress. Nothing else: not the
	// agents' ports, not the gateway's admin and artifact paths.
	w("  chain input {")
	w("    type filter hook input priority filter - 5; policy accept;")
	w("    iifname %s ct state established,related accept", br)
	if len(p.GatewayPorts) > 0 {
		ports := make([]string, len(p.GatewayPorts))
		for i, port := range p.GatewayPorts {
			ports[i] = fmt.Sprint(port)
		}
		w("    iifname %s meta nfproto ipv4 tcp dport { %s } accept", br, strings.Join(ports, ", "))
	}
	w("    iifname %s meta l4proto tcp reject with tcp reset", br)
	w("    iifname %s reject with icmpx admin-prohibited", br)
	w("  }")
	// Connections through the host: other instances (also through their
	// mapped ports, which the ports table rewrites to an instance address before
	// this hook), denied destinations, and IPv6, which Nimbus networks do
	// not route.
	w("  chain forward {")
	w("    type filter hook forward priority filter - 5; policy accept;")
	w("    iifname %s ct state established,related accept", br)
	if p.Egress == EgressPublic {
		if len(p.Resolvers) > 0 {
			w("    iifname %s meta nfproto ipv4 ip daddr @resolvers meta l4proto { tcp, udp } th dport 53 accept", br)
		}
		if len(p.Allow) > 0 {
			w("    iifname %s meta nfproto ipv4 ip daddr @allowed accept", br)
		}
		w("    iifname %s meta nfproto ipv4 ip daddr != @denied accept", br)
	}
	w("    iifname %s meta l4proto tcp reject with tcp reset", br)
	w("    iifname %s reject with icmpx admin-prohibited", br)
	w("  }")
	if p.Egress == EgressPublic {
		// Egress leaves with the host's address, as the bridge plugin's
		// ipMasq would do with iptables rules per allocation.
		w("  chain postrouting {")
		w("    type nat hook postrouting priority srcnat; policy accept;")
		w("    ip saddr %s oifname != %s masquerade", p.Subnet, br)
		w("  }")
	}
	return b.String()
}

// HostResolvers reads the IPv4 nameservers of a resolv.conf.
func HostResolvers(resolvConf []byte) []string {
	var out []string
	for _, line := range strings.Split(string(resolvConf), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		if a, err := netip.ParseAddr(fields[1]); err == nil && a.Is4() && !a.IsLoopback() && !slices.Contains(out, a.String()) {
			out = append(out, a.String())
		}
	}
	return out
}
