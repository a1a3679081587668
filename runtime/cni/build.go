package cni

import (
	"encoding/binary"
	"fmt"
	"net"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/google/nftables"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/cninet"
)

// The pure half of the plugin: what to install, isolate, map and unmap,
// from the configuration, the previous plugin's result and what nf_tables
// holds. apply.go does it.

// portsChain is the chain whose presence marks the ports table as
// installed (cninet.PortsRuleset never replaces that table).
const portsChain = "prerouting"

// tablesPresent reports, from the chains nf_tables lists, whether the
// network's policy table is there at its current generation and whether
// its ports table is there.
func tablesPresent(p cninet.PolicyConf, chains []*nftables.Chain) (policy, ports bool) {
	for _, c := range chains {
		switch {
		case c.Table.Family == nftables.TableFamilyINet && c.Table.Name == cninet.TableName(p) && c.Name == cninet.GenerationChain(p):
			policy = true
		case c.Table.Family == nftables.TableFamilyIPv4 && c.Table.Name == cninet.PortsTable(p) && c.Name == portsChain:
			ports = true
		}
	}
	return policy, ports
}

// missingRuleset is the input of `nft -f` that installs whichever of the
// network's tables is missing (ports first) or, for the policy, outdated;
// empty when both are in place.
func missingRuleset(p cninet.PolicyConf, policy, ports bool) string {
	var rules string
	if !ports {
		rules += cninet.PortsRuleset(p)
	}
	if !policy {
		rules += cninet.Ruleset(p)
	}
	return rules
}

// bridgePorts names the instance's ends on the bridge in the bridge
// plugin's result: the host-side interfaces, not the bridge itself nor
// the interface inside the namespace. Each becomes an isolated port.
func bridgePorts(r *current.Result, bridge string) []string {
	var names []string
	for _, iface := range r.Interfaces {
		if iface.Sandbox != "" || iface.Name == bridge {
			continue
		}
		names = append(names, iface.Name)
	}
	return names
}

// instanceIP is the instance's IPv4 address in the bridge plugin's result.
func instanceIP(r *current.Result) net.IP {
	for _, ip := range r.IPs {
		if v4 := ip.Address.IP.To4(); v4 != nil {
			return v4
		}
	}
	return nil
}

// tcpMappings are the mappings nimbus-cni serves: TCP, to the same port
// inside the namespace (function instances speak HTTP on the port Nomad
// gave them; the UDP twin Nomad also passes is not mapped).
func tcpMappings(conf *Conf) ([]PortMapping, error) {
	var out []PortMapping
	for _, m := range conf.RuntimeConfig.PortMappings {
		if m.Protocol != "" && m.Protocol != "tcp" {
			continue
		}
		if m.ContainerPort != m.HostPort {
			return nil, fmt.Errorf("nimbus-cni: port %d maps to port %d inside the namespace; Nimbus networks map a port to the same port (leave the port's \"to\" unset)", m.HostPort, m.ContainerPort)
		}
		out = append(out, m)
	}
	return out, nil
}

// portsSet is the map of cninet.PortsRuleset, as netlink names it: in
// table ip nimbus-<bridge>-ports-v1, from a host port (inet_service) to
// the instance's address (ipv4_addr).
func portsSet(p cninet.PolicyConf) *nftables.Set {
	return &nftables.Set{
		Table:    &nftables.Table{Name: cninet.PortsTable(p), Family: nftables.TableFamilyIPv4},
		Name:     cninet.PortsMap,
		IsMap:    true,
		KeyType:  nftables.TypeInetService,
		DataType: nftables.TypeIPAddr,
	}
}

// portKey is a host port as the map's key: two bytes, network order.
func portKey(port int) []byte { return binary.BigEndian.AppendUint16(nil, uint16(port)) }

// mapElements are the changes to the map (mapped: key bytes → address)
// that lead each mapping's host port to ip: one element per port to add,
// and the ports the map already holds to delete first. A host port is
// Nomad's to one allocation at a time, so a mapping left by an allocation
// that never got its DEL is replaced.
func mapElements(mappings []PortMapping, ip net.IP, mapped map[string][]byte) (stale, elems []nftables.SetElement) {
	for _, m := range mappings {
		k := portKey(m.HostPort)
		if _, ok := mapped[string(k)]; ok {
			stale = append(stale, nftables.SetElement{Key: k})
		}
		elems = append(elems, nftables.SetElement{Key: k, Val: ip})
	}
	return stale, elems
}

// unmapElements are the allocation's mappings to delete from the map: those
// that still lead to its address ip (any address when ip is unknown),
// leaving a port that another allocation has taken since.
func unmapElements(mappings []PortMapping, ip net.IP, mapped map[string][]byte) []nftables.SetElement {
	var gone []nftables.SetElement
	for _, m := range mappings {
		k := portKey(m.HostPort)
		if to, ok := mapped[string(k)]; ok && (ip == nil || net.IP(to).Equal(ip)) {
			gone = append(gone, nftables.SetElement{Key: k})
		}
	}
	return gone
}
