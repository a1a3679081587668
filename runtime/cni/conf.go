package cni

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/cninet"
)

// Conf is the plugin's configuration: CNI's common fields and the Nimbus
// policy, both read from the same JSON.
type Conf struct {
	types.NetConf
	Policy        cninet.PolicyConf
	RuntimeConfig struct {
		PortMappings []PortMapping `json:"portMappings"`
	} `json:"runtimeConfig"`
}

// PortMapping is one entry of the portMappings capability, as Nomad
// passes it.
type PortMapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
}

// Parse reads the configuration the runtime passes on stdin, with what
// every command needs: the bridge, the subnet, a known egress and a
// previous result that parses.
func Parse(stdin []byte) (*Conf, error) {
	conf := &Conf{}
	// CNI's common fields and the runtime config, then the policy: the
	// two share "type", so they cannot be one struct.
	if err := json.Unmarshal(stdin, conf); err != nil {
		return nil, fmt.Errorf("nimbus-cni: cannot parse the network configuration: %w", err)
	}
	if err := json.Unmarshal(stdin, &conf.Policy); err != nil {
		return nil, fmt.Errorf("nimbus-cni: cannot parse the network configuration: %w", err)
	}
	p := conf.Policy
	if p.Bridge == "" || p.Subnet == "" {
		return nil, fmt.Errorf("nimbus-cni: network %q needs \"bridge\" and \"subnet\" (see examples/platform/cni)", conf.Name)
	}
	if p.Egress != cninet.EgressPublic && p.Egress != cninet.EgressNone {
		return nil, fmt.Errorf("nimbus-cni: network %q has egress %q; use %q or %q", conf.Name, p.Egress, cninet.EgressPublic, cninet.EgressNone)
	}
	if err := version.ParsePrevResult(&conf.NetConf); err != nil {
		return nil, fmt.Errorf("nimbus-cni: %w", err)
	}
	return conf, nil
}

// validate checks the addresses and ports that the ruleset renders, so
// that a mistake is reported as such rather than as nft's refusal of the
// ruleset. ADD and CHECK validate; DEL does not, so that an allocation
// whose ADD failed is still torn down (a failing DEL would stop the
// runtime before the bridge plugin releases the instance's address).
func validate(conf *Conf) error {
	p := conf.Policy
	if s, err := netip.ParsePrefix(p.Subnet); err != nil || !s.Addr().Is4() {
		return fmt.Errorf("nimbus-cni: network %q has subnet %q; it must be an IPv4 prefix such as 172.30.0.0/20", conf.Name, p.Subnet)
	}
	for _, d := range p.Deny {
		if !ipv4Destination(d) {
			return fmt.Errorf("nimbus-cni: network %q denies %q; \"deny\" lists IPv4 prefixes (10.0.0.0/8), addresses or ranges (10.0.0.1-10.0.0.9)", conf.Name, d)
		}
	}
	subnet, _ := netip.ParsePrefix(p.Subnet)
	for _, a := range p.Allow {
		pfx, err := netip.ParsePrefix(a)
		if err != nil {
			if addr, errAddr := netip.ParseAddr(a); errAddr == nil {
				pfx, err = addr.Prefix(addr.BitLen())
			}
		}
		switch {
		case err != nil || !pfx.Addr().Is4():
			return fmt.Errorf("nimbus-cni: network %q allows %q; \"allow\" lists IPv4 prefixes (10.0.5.0/24) or addresses (10.0.5.10)", conf.Name, a)
		case pfx.Overlaps(cninet.LinkLocal) || pfx.Overlaps(subnet):
			return fmt.Errorf("nimbus-cni: network %q allows %s, which overlaps link-local addresses or the network's own subnet; no instance may reach those", conf.Name, a)
		case p.Egress != cninet.EgressPublic:
			return fmt.Errorf("nimbus-cni: network %q has egress %q and an allow list; only a network with public egress may allow destinations", conf.Name, p.Egress)
		}
	}
	for _, port := range p.GatewayPorts {
		if port < 0 || port > 65535 {
			return fmt.Errorf("nimbus-cni: network %q lists gateway port %d; a port is at most 65535", conf.Name, port)
		}
	}
	return nil
}

// ipv4Destination reports whether s is an element that the ruleset's
// denied set (type ipv4_addr, flags interval) holds: a prefix, an address
// or a range.
func ipv4Destination(s string) bool {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr().Is4()
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Is4()
	}
	from, to, ok := strings.Cut(s, "-")
	if !ok {
		return false
	}
	a, errA := netip.ParseAddr(strings.TrimSpace(from))
	b, errB := netip.ParseAddr(strings.TrimSpace(to))
	return errA == nil && errB == nil && a.Is4() && b.Is4() && !b.Less(a)
}
