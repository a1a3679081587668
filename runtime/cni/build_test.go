package cni

import (
	"bytes"
	"encoding/json"
	"net"
	"slices"
	"strings"
	"testing"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/google/nftables"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/cninet"
)

// nftTable is one table of an `nft -f` input: its blocks ("chain input",
// "set denied", "map ports"), each as its lines without indentation.
type nftTable struct {
	family, name string
	blocks       map[string][]string
}

// parseNft splits an `nft -f` input into its top-level statements and its
// tables. It knows the shape cninet renders, no more.
func parseNft(t *testing.T, text string) (statements []string, tables []nftTable) {
	t.Helper()
	var table *nftTable
	var block string
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		l := strings.TrimSpace(line)
		switch {
		case table == nil && strings.HasPrefix(l, "table ") && strings.HasSuffix(l, " {"):
			f := strings.Fields(l)
			table = &nftTable{family: f[1], name: f[2], blocks: map[string][]string{}}
		case table == nil:
			statements = append(statements, l)
		case block == "" && l == "}":
			tables = append(tables, *table)
			table = nil
		case block == "" && strings.HasSuffix(l, " {"):
			block = strings.TrimSuffix(l, " {")
			if _, dup := table.blocks[block]; dup {
				t.Fatalf("table %s has two %s", table.name, block)
			}
			table.blocks[block] = []string{}
		case block == "":
			t.Fatalf("table %s: line outside a block: %q", table.name, line)
		case l == "}":
			block = ""
		default:
			table.blocks[block] = append(table.blocks[block], l)
		}
	}
	if table != nil {
		t.Fatalf("table %s is not closed:\n%s", table.name, text)
	}
	return statements, tables
}

func onlyTable(t *testing.T, text string) ([]string, nftTable) {
	t.Helper()
	stmts, tables := parseNft(t, text)
	if len(tables) != 1 {
		t.Fatalf("%d tables, want 1:\n%s", len(tables), text)
	}
	return stmts, tables[0]
}

// The policy a network's first instance installs, from the shipped
// configuration: every rule matches the bridge, never an instance; the
// input chain lets instances reach the host only on gatewayPorts (and only
// on the public network); the forward chain lets them out only on the
// public network and never to a denied prefix; only the public network
// masquerades.
func TestPolicyOfShippedNetworks(t *testing.T) {
	c := cninet.DefaultClient()
	for _, n := range c.Networks() {
		t.Run(n.Name, func(t *testing.T) {
			p := parseShipped(t, n, nil, nil).Policy
			public := n.Egress == cninet.EgressPublic
			text := missingRuleset(p, false, true)
			stmts, table := onlyTable(t, text)
			name := "nimbus-" + n.Bridge
			if table.family != "inet" || table.name != name || table.name != cninet.TableName(p) {
				t.Fatalf("table %s %s, want inet %s", table.family, table.name, name)
			}
			// The table is replaced whole, in the same transaction.
			if want := []string{"add table inet " + name, "delete table inet " + name}; !slices.Equal(stmts, want) {
				t.Errorf("statements %q, want %q", stmts, want)
			}
			if gen, ok := table.blocks["chain "+cninet.GenerationChain(p)]; !ok || len(gen) != 0 {
				t.Errorf("no empty generation chain %s: %v", cninet.GenerationChain(p), table.blocks)
			}

			wantBlocks := []string{"chain " + cninet.GenerationChain(p), "set denied", "chain input", "chain forward"}
			if public {
				wantBlocks = append(wantBlocks, "chain postrouting")
			}
			if got := sortedKeys(table.blocks); !slices.Equal(got, sorted(wantBlocks)) {
				t.Errorf("blocks %q, want %q", got, sorted(wantBlocks))
			}

			denied := table.blocks["set denied"]
			wantElems := "elements = { " + strings.Join(p.Deny, ", ") + " }"
			if !slices.Equal(denied, []string{"type ipv4_addr", "flags interval", "auto-merge", wantElems}) {
				t.Errorf("set denied %q, want every denied prefix: %s", denied, wantElems)
			}
			for _, must := range []string{cninet.LinkLocal.String(), c.Public.Subnet.String(), c.None.Subnet.String()} {
				if !slices.Contains(p.Deny, must) {
					t.Errorf("%s is not denied: %v", must, p.Deny)
				}
			}

			br := `iifname "` + n.Bridge + `" `
			filter := "type filter hook %s priority filter - 5; policy accept;"
			tail := []string{br + "meta l4proto tcp reject with tcp reset", br + "reject with icmpx admin-prohibited"}
			established := br + "ct state established,related accept"

			input := []string{strings.Replace(filter, "%s", "input", 1), established}
			if public {
				input = append(input, br+"meta nfproto ipv4 tcp dport { 9650 } accept")
			}
			input = append(input, tail...)
			if got := table.blocks["chain input"]; !slices.Equal(got, input) {
				t.Errorf("chain input:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(input, "\n"))
			}

			forward := []string{strings.Replace(filter, "%s", "forward", 1), established}
			if public {
				forward = append(forward, br+"meta nfproto ipv4 ip daddr != @denied accept")
			}
			forward = append(forward, tail...)
			if got := table.blocks["chain forward"]; !slices.Equal(got, forward) {
				t.Errorf("chain forward:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(forward, "\n"))
			}

			if public {
				post := []string{"type nat hook postrouting priority srcnat; policy accept;",
					"ip saddr " + n.Subnet.String() + ` oifname != "` + n.Bridge + `" masquerade`}
				if got := table.blocks["chain postrouting"]; !slices.Equal(got, post) {
					t.Errorf("chain postrouting %q, want %q", got, post)
				}
			}

			// No rule names an instance: none carries an address of the
			// subnet but the masquerade's match of the whole subnet.
			for block, lines := range table.blocks {
				if block == "set denied" {
					continue
				}
				for _, l := range lines {
					if strings.Contains(l, "172.30.") && !strings.Contains(l, "ip saddr "+n.Subnet.String()+" ") {
						t.Errorf("%s names an address: %s", block, l)
					}
				}
			}
		})
	}
}

// The input chain accepts exactly the configured gateway ports, and the
// denied set exactly the configured destinations.
func TestPolicyFollowsItsConfiguration(t *testing.T) {
	p := parseShipped(t, cninet.DefaultClient().Public, nil, func(c map[string]any) {
		c["gatewayPorts"] = []int{9650, 9651}
		c["deny"] = []string{"169.254.0.0/16", "10.0.0.0/8", "192.168.1.10"}
	}).Policy
	_, table := onlyTable(t, missingRuleset(p, false, true))
	if got := table.blocks["chain input"]; !slices.Contains(got, `iifname "nimbus0" meta nfproto ipv4 tcp dport { 9650, 9651 } accept`) {
		t.Errorf("chain input does not accept exactly 9650 and 9651: %q", got)
	}
	if got := table.blocks["set denied"]; !slices.Contains(got, "elements = { 169.254.0.0/16, 10.0.0.0/8, 192.168.1.10 }") {
		t.Errorf("set denied %q", got)
	}
	// A public network without gateway ports reaches no host port.
	p.GatewayPorts = nil
	_, table = onlyTable(t, missingRuleset(p, false, true))
	for _, l := range table.blocks["chain input"] {
		if strings.Contains(l, "dport") {
			t.Errorf("chain input opens a port: %s", l)
		}
	}
}

// The ports table and the map that ADD and DEL change over netlink are the
// same: table ip nimbus-<bridge>-ports-v1, map ports, host port to IPv4
// address, and its prerouting chain is what marks it installed.
func TestPortsTableMatchesItsNetlinkMap(t *testing.T) {
	for _, n := range cninet.DefaultClient().Networks() {
		p := parseShipped(t, n, nil, nil).Policy
		stmts, table := onlyTable(t, missingRuleset(p, true, false))
		name := "nimbus-" + n.Bridge + "-ports-v1"
		if len(stmts) != 0 || table.family != "ip" || table.name != name {
			t.Errorf("%s: statements %q, table %s %s; want only table ip %s, never replaced", n.Name, stmts, table.family, table.name, name)
		}
		if got := table.blocks["map ports"]; !slices.Equal(got, []string{"type inet_service : ipv4_addr"}) {
			t.Errorf("%s: map ports %q", n.Name, got)
		}
		for _, chain := range []string{"chain " + portsChain, "chain output"} {
			if got := table.blocks[chain]; !slices.Contains(got, "fib daddr type local dnat ip to tcp dport map @ports") {
				t.Errorf("%s: %s does not map local ports through @ports: %q", n.Name, chain, got)
			}
		}
		set := portsSet(p)
		if set.Table.Name != name || set.Table.Family != nftables.TableFamilyIPv4 || set.Name != "ports" ||
			!set.IsMap || set.KeyType != nftables.TypeInetService || set.DataType != nftables.TypeIPAddr {
			t.Errorf("%s: the netlink map %+v (table %+v) is not the ruleset's", n.Name, set, set.Table)
		}
	}
}

func TestMissingRulesetInstallsOnlyWhatIsMissing(t *testing.T) {
	p := cninet.DefaultClient().Policy(cninet.DefaultClient().Public)
	ports, policy := cninet.PortsRuleset(p), cninet.Ruleset(p)
	for _, tc := range []struct {
		policy, ports bool
		want          string
	}{
		{false, false, ports + policy},
		{true, false, ports},
		{false, true, policy},
		{true, true, ""},
	} {
		if got := missingRuleset(p, tc.policy, tc.ports); got != tc.want {
			t.Errorf("policy installed %v, ports installed %v: installs\n%s\nwant\n%s", tc.policy, tc.ports, got, tc.want)
		}
	}
}

func TestTablesPresent(t *testing.T) {
	c := cninet.DefaultClient()
	p, other := c.Policy(c.Public), c.Policy(c.None)
	inet := func(table, chain string) *nftables.Chain {
		return &nftables.Chain{Name: chain, Table: &nftables.Table{Name: table, Family: nftables.TableFamilyINet}}
	}
	ip := func(table, chain string) *nftables.Chain {
		return &nftables.Chain{Name: chain, Table: &nftables.Table{Name: table, Family: nftables.TableFamilyIPv4}}
	}
	current, ports := inet("nimbus-nimbus0", cninet.GenerationChain(p)), ip("nimbus-nimbus0-ports-v1", "prerouting")
	for _, tc := range []struct {
		name          string
		chains        []*nftables.Chain
		policy, ports bool
	}{
		{"nothing", nil, false, false},
		{"both", []*nftables.Chain{inet("nimbus-nimbus0", "input"), current, ip("nimbus-nimbus0-ports-v1", "output"), ports}, true, true},
		{"policy only", []*nftables.Chain{current}, true, false},
		{"ports only", []*nftables.Chain{ports}, false, true},
		{"an older policy", []*nftables.Chain{inet("nimbus-nimbus0", "generation-000000000000"), inet("nimbus-nimbus0", "input"), ports}, false, true},
		{"another network's tables", []*nftables.Chain{inet("nimbus-nimbus1", cninet.GenerationChain(other)), ip("nimbus-nimbus1-ports-v1", "prerouting")}, false, false},
		{"the generation in family ip", []*nftables.Chain{ip("nimbus-nimbus0", cninet.GenerationChain(p))}, false, false},
		{"the ports table without prerouting", []*nftables.Chain{ip("nimbus-nimbus0-ports-v1", "output")}, false, false},
		{"the ports table in family inet", []*nftables.Chain{inet("nimbus-nimbus0-ports-v1", "prerouting")}, false, false},
	} {
		if policy, ports := tablesPresent(p, tc.chains); policy != tc.policy || ports != tc.ports {
			t.Errorf("%s: policy %v, ports %v; want %v, %v", tc.name, policy, ports, tc.policy, tc.ports)
		}
	}
}

// A mapping is one element: the host port, two bytes in network order, to
// the instance's IPv4 address (the port inside is the same).
func TestMapElements(t *testing.T) {
	ip := net.IPv4(172, 30, 0, 7).To4()
	mappings := []PortMapping{{HostPort: 24000, ContainerPort: 24000}, {HostPort: 443, ContainerPort: 443}}

	stale, elems := mapElements(mappings, ip, map[string][]byte{})
	if len(stale) != 0 {
		t.Errorf("an empty map has stale elements: %v", stale)
	}
	want := []nftables.SetElement{{Key: []byte{0x5d, 0xc0}, Val: []byte{172, 30, 0, 7}}, {Key: []byte{0x01, 0xbb}, Val: []byte{172, 30, 0, 7}}}
	if !equalElements(elems, want) {
		t.Errorf("elements %v, want %v", elems, want)
	}

	// A port still mapped (to a gone allocation, or this one) is deleted
	// first, in the same transaction; other ports are left alone.
	mapped := map[string][]byte{string(portKey(24000)): {172, 30, 0, 99}, string(portKey(8080)): {172, 30, 0, 5}}
	stale, elems = mapElements(mappings, ip, mapped)
	if !equalElements(stale, []nftables.SetElement{{Key: []byte{0x5d, 0xc0}}}) {
		t.Errorf("stale %v, want port 24000 only", stale)
	}
	if !equalElements(elems, want) {
		t.Errorf("elements %v, want %v", elems, want)
	}

	if k := portKey(65535); !bytes.Equal(k, []byte{0xff, 0xff}) {
		t.Errorf("portKey(65535) = %x", k)
	}
}

// DEL removes the allocation's ports that still lead to it, and leaves a
// port another allocation has taken since.
func TestUnmapElements(t *testing.T) {
	mine, theirs := []byte{172, 30, 0, 7}, []byte{172, 30, 0, 8}
	mapped := map[string][]byte{string(portKey(24000)): mine, string(portKey(24001)): theirs, string(portKey(8080)): mine}
	mappings := []PortMapping{{HostPort: 24000, ContainerPort: 24000}, {HostPort: 24001, ContainerPort: 24001}, {HostPort: 24002, ContainerPort: 24002}}

	if got, want := unmapElements(mappings, net.IP(mine), mapped), []nftables.SetElement{{Key: portKey(24000)}}; !equalElements(got, want) {
		t.Errorf("known address: removes %v, want %v", got, want)
	}
	// Without the cached result the address is unknown: every mapped port
	// of the allocation goes.
	if got, want := unmapElements(mappings, nil, mapped), []nftables.SetElement{{Key: portKey(24000)}, {Key: portKey(24001)}}; !equalElements(got, want) {
		t.Errorf("unknown address: removes %v, want %v", got, want)
	}
	if got := unmapElements(mappings, net.IP(mine), map[string][]byte{}); len(got) != 0 {
		t.Errorf("an empty map: removes %v", got)
	}
}

func TestTCPMappings(t *testing.T) {
	conf := &Conf{}
	conf.RuntimeConfig.PortMappings = []PortMapping{
		{HostPort: 24000, ContainerPort: 24000, Protocol: "tcp"},
		{HostPort: 24000, ContainerPort: 24000, Protocol: "udp"},
		{HostPort: 24001, ContainerPort: 24001},
	}
	got, err := tcpMappings(conf)
	if err != nil {
		t.Fatal(err)
	}
	if want := []PortMapping{conf.RuntimeConfig.PortMappings[0], conf.RuntimeConfig.PortMappings[2]}; !slices.Equal(got, want) {
		t.Errorf("mappings %v, want the TCP ones %v", got, want)
	}

	conf.RuntimeConfig.PortMappings = append(conf.RuntimeConfig.PortMappings, PortMapping{HostPort: 24002, ContainerPort: 8080, Protocol: "tcp"})
	_, err = tcpMappings(conf)
	want := `nimbus-cni: port 24002 maps to port 8080 inside the namespace; Nimbus networks map a port to the same port (leave the port's "to" unset)`
	if err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
	// A UDP mapping to another port is not nimbus-cni's and no error.
	conf.RuntimeConfig.PortMappings = []PortMapping{{HostPort: 24002, ContainerPort: 53, Protocol: "udp"}}
	if got, err := tcpMappings(conf); err != nil || len(got) != 0 {
		t.Errorf("UDP only: %v, %v", got, err)
	}
}

// The interfaces made isolated ports and the address mapped come from the
// bridge plugin's result.
func TestFromTheBridgeResult(t *testing.T) {
	var r current.Result
	if err := json.Unmarshal([]byte(prevResult), &r); err != nil {
		t.Fatal(err)
	}
	if got := bridgePorts(&r, "nimbus0"); !slices.Equal(got, []string{"veth0a1b2c3d"}) {
		t.Errorf("isolates %q, want only the instance's end on the bridge", got)
	}
	if got := instanceIP(&r); !got.Equal(net.IPv4(172, 30, 0, 7)) || len(got) != net.IPv4len {
		t.Errorf("instance address %v (%d bytes), want 172.30.0.7 in 4 bytes", got, len(got))
	}

	var v6first current.Result
	if err := json.Unmarshal([]byte(`{"cniVersion":"1.0.0","ips":[{"address":"fd00::7/64"},{"address":"172.30.0.8/20"}]}`), &v6first); err != nil {
		t.Fatal(err)
	}
	if got := instanceIP(&v6first); !got.Equal(net.IPv4(172, 30, 0, 8)) {
		t.Errorf("instance address %v, want the IPv4 one", got)
	}
	var v6only current.Result
	if err := json.Unmarshal([]byte(`{"cniVersion":"1.0.0","ips":[{"address":"fd00::7/64"}]}`), &v6only); err != nil {
		t.Fatal(err)
	}
	if got := instanceIP(&v6only); got != nil {
		t.Errorf("instance address %v from an IPv6 result", got)
	}
}

func equalElements(a, b []nftables.SetElement) bool {
	return slices.EqualFunc(a, b, func(x, y nftables.SetElement) bool {
		return bytes.Equal(x.Key, y.Key) && bytes.Equal(x.Val, y.Val)
	})
}

func sortedKeys(m map[string][]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return sorted(keys)
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }
