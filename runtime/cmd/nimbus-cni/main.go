// Command nimbus-cni is the last plugin of the Nimbus CNI networks. It
// installs the network's firewall and port-mapping tables (internal/cninet)
// the first time an instance joins the network after boot or after the
// configuration changed, maps the allocation's ports, and passes the
// previous plugin's result on. Per allocation it costs two netlink
// exchanges and starts no process: the policy matches the bridge and the
// subnet, never one instance, and a port mapping is one element of a map.
package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/google/nftables"
	"github.com/vishvananda/netlink"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/cninet"
)

// lockFile serialises ruleset installs between plugins that Nomad runs at
// once for several allocations.
const lockFile = "/run/nimbus-cni.lock"

// netConf is the plugin's configuration: CNI's common fields and the
// Nimbus policy, both read from the same JSON.
type netConf struct {
	types.NetConf
	Policy        cninet.PolicyConf
	RuntimeConfig struct {
		PortMappings []portMapping `json:"portMappings"`
	} `json:"runtimeConfig"`
}

// portMapping is one entry of the portMappings capability, as Nomad passes
// it.
type portMapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
}

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{Add: add, Check: check, Del: del},
		version.PluginSupports("0.4.0", "1.0.0", "1.1.0"), "nimbus-cni: the Nimbus network policy")
}

func parse(stdin []byte) (*netConf, error) {
	conf := &netConf{}
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

func add(args *skel.CmdArgs) error {
	conf, err := parse(args.StdinData)
	if err != nil {
		return err
	}
	if conf.PrevResult == nil {
		return fmt.Errorf("nimbus-cni: network %q must list nimbus-cni after the bridge plugin", conf.Name)
	}
	if err := ensure(conf.Policy); err != nil {
		return err
	}
	result, err := current.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return fmt.Errorf("nimbus-cni: %w", err)
	}
	if err := isolatePorts(result, conf.Policy.Bridge); err != nil {
		return err
	}
	if err := mapPorts(conf, instanceIP(result)); err != nil {
		return err
	}
	return types.PrintResult(result, conf.CNIVersion)
}

// isolatePorts makes the instance's end on the bridge an isolated port, so
// that it exchanges no frame with another instance. The bridge plugin does
// the same with portIsolation from v1.7; older ones ignore the setting
// without a word, and this does not depend on them.
func isolatePorts(r *current.Result, bridge string) error {
	for _, iface := range r.Interfaces {
		if iface.Sandbox != "" || iface.Name == bridge {
			continue
		}
		link, err := netlink.LinkByName(iface.Name)
		if err != nil {
			return fmt.Errorf("nimbus-cni: the instance's interface %s on bridge %s: %w", iface.Name, bridge, err)
		}
		if err := netlink.LinkSetIsolated(link, true); err != nil {
			return fmt.Errorf("nimbus-cni: isolating %s on bridge %s: %w", iface.Name, bridge, err)
		}
	}
	return nil
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
func tcpMappings(conf *netConf) ([]portMapping, error) {
	var out []portMapping
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

func portsSet(p cninet.PolicyConf) *nftables.Set {
	return &nftables.Set{
		Table:    &nftables.Table{Name: cninet.PortsTable(p), Family: nftables.TableFamilyIPv4},
		Name:     cninet.PortsMap,
		IsMap:    true,
		KeyType:  nftables.TypeInetService,
		DataType: nftables.TypeIPAddr,
	}
}

func portKey(port int) []byte { return binary.BigEndian.AppendUint16(nil, uint16(port)) }

// mapPorts adds the allocation's mappings to the network's map, in one
// netlink transaction. A host port is Nomad's to one allocation at a time,
// so a mapping left by an allocation that never got its DEL is replaced.
func mapPorts(conf *netConf, ip net.IP) error {
	mappings, err := tcpMappings(conf)
	if err != nil || len(mappings) == 0 {
		return err
	}
	if ip == nil {
		return fmt.Errorf("nimbus-cni: network %q gave the instance no IPv4 address to map ports to", conf.Name)
	}
	// Connections from the host's loopback reach the instance only if the
	// bridge routes 127.0.0.0/8 (the ports table then masquerades them).
	_ = os.WriteFile(filepath.Join("/proc/sys/net/ipv4/conf", conf.Policy.Bridge, "route_localnet"), []byte("1"), 0o644)
	conn, err := newConn()
	if err != nil {
		return err
	}
	set := portsSet(conf.Policy)
	mapped, err := mappedPorts(conn, set)
	if err != nil {
		return err
	}
	var stale, elems []nftables.SetElement
	for _, m := range mappings {
		k := portKey(m.HostPort)
		if _, ok := mapped[string(k)]; ok {
			stale = append(stale, nftables.SetElement{Key: k})
		}
		elems = append(elems, nftables.SetElement{Key: k, Val: ip})
	}
	// One transaction: each commit costs the kernel a grace period.
	if len(stale) > 0 {
		if err := conn.SetDeleteElements(set, stale); err != nil {
			return fmt.Errorf("nimbus-cni: %w", err)
		}
	}
	if err := conn.SetAddElements(set, elems); err != nil {
		return fmt.Errorf("nimbus-cni: %w", err)
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("nimbus-cni: mapping ports %v to %s: %w", mappings, ip, err)
	}
	return nil
}

// mappedPorts reads the network's map: host port (key bytes) → address.
func mappedPorts(conn *nftables.Conn, set *nftables.Set) (map[string][]byte, error) {
	elems, err := conn.GetSetElements(set)
	if err != nil {
		return nil, fmt.Errorf("nimbus-cni: reading the port map of table ip %s: %w", set.Table.Name, err)
	}
	mapped := make(map[string][]byte, len(elems))
	for _, e := range elems {
		mapped[string(e.Key)] = e.Val
	}
	return mapped, nil
}

// unmapPorts removes the allocation's mappings that still lead to its
// address (ip, when the cached result gives it), leaving a port that
// another allocation has taken since.
func unmapPorts(conf *netConf, ip net.IP) error {
	mappings, err := tcpMappings(conf)
	if err != nil || len(mappings) == 0 {
		return nil
	}
	conn, err := newConn()
	if err != nil {
		return err
	}
	set := portsSet(conf.Policy)
	mapped, err := mappedPorts(conn, set)
	if err != nil {
		return nil // no table: nothing was mapped
	}
	var gone []nftables.SetElement
	for _, m := range mappings {
		k := portKey(m.HostPort)
		if to, ok := mapped[string(k)]; ok && (ip == nil || net.IP(to).Equal(ip)) {
			gone = append(gone, nftables.SetElement{Key: k})
		}
	}
	if len(gone) == 0 {
		return nil
	}
	if err := conn.SetDeleteElements(set, gone); err != nil {
		return fmt.Errorf("nimbus-cni: %w", err)
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("nimbus-cni: unmapping ports: %w", err)
	}
	return nil
}

func check(args *skel.CmdArgs) error {
	conf, err := parse(args.StdinData)
	if err != nil {
		return err
	}
	ok, err := installed(conf.Policy)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("nimbus-cni: the ruleset of network %q (table inet %s) is missing or outdated", conf.Name, cninet.TableName(conf.Policy))
	}
	return nil
}

// del removes the allocation's port mappings; no rule belongs to one
// instance.
func del(args *skel.CmdArgs) error {
	conf, err := parse(args.StdinData)
	if err != nil {
		return err
	}
	var ip net.IP
	if conf.PrevResult != nil {
		if r, err := current.NewResultFromResult(conf.PrevResult); err == nil {
			ip = instanceIP(r)
		}
	}
	return unmapPorts(conf, ip)
}

func ensure(p cninet.PolicyConf) error {
	if ok, err := installed(p); err != nil || ok {
		return err
	}
	return install(p)
}

// install writes whichever of the network's two tables is missing or, for
// the policy, outdated, under a lock that serialises concurrent ADDs.
func install(p cninet.PolicyConf) error {
	lock, err := os.OpenFile(lockFile, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("nimbus-cni: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("nimbus-cni: lock %s: %w", lockFile, err)
	}
	policy, ports, err := tables(p)
	if err != nil || (policy && ports) {
		return err
	}
	var rules string
	if !ports {
		rules += cninet.PortsRuleset(p)
	}
	if !policy {
		rules += cninet.Ruleset(p)
	}
	nft, err := cninet.NftCommand()
	if err != nil {
		return fmt.Errorf("nimbus-cni: %w", err)
	}
	cmd := exec.Command(nft, "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nimbus-cni: installing the ruleset of bridge %s failed: %w: %s (the client needs nftables: the nft command and the kernel's nf_tables)", p.Bridge, err, out)
	}
	return nil
}

// installed reports whether both of the network's tables are in place,
// the policy at its current generation.
func installed(p cninet.PolicyConf) (bool, error) {
	policy, ports, err := tables(p)
	return policy && ports, err
}

func tables(p cninet.PolicyConf) (policy, ports bool, err error) {
	conn, err := newConn()
	if err != nil {
		return false, false, err
	}
	chains, err := conn.ListChains()
	if err != nil {
		return false, false, fmt.Errorf("nimbus-cni: list nftables chains: %w", err)
	}
	for _, c := range chains {
		switch {
		case c.Table.Family == nftables.TableFamilyINet && c.Table.Name == cninet.TableName(p) && c.Name == cninet.GenerationChain(p):
			policy = true
		case c.Table.Family == nftables.TableFamilyIPv4 && c.Table.Name == cninet.PortsTable(p) && c.Name == "prerouting":
			ports = true
		}
	}
	return policy, ports, nil
}

// newConn opens a netlink connection to nf_tables.
func newConn() (*nftables.Conn, error) {
	conn, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nimbus-cni: netlink: %w", err)
	}
	return conn, nil
}
