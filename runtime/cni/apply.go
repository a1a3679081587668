package cni

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/google/nftables"
	"github.com/vishvananda/netlink"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/cninet"
)

// The applying half of the plugin: the lock, nft and netlink. What it
// applies comes from build.go.

// lockFile serialises ruleset installs between plugins that Nomad runs at
// once for several allocations.
const lockFile = "/run/nimbus-cni.lock"

// Add is CNI's ADD: it installs the network's tables if they are missing
// or outdated, isolates the instance's port on the bridge and maps the
// allocation's ports. It returns the previous plugin's result, for the
// runtime.
func Add(conf *Conf) (*current.Result, error) {
	if err := validate(conf); err != nil {
		return nil, err
	}
	withHostResolvers(conf)
	if conf.PrevResult == nil {
		return nil, fmt.Errorf("nimbus-cni: network %q must list nimbus-cni after the bridge plugin", conf.Name)
	}
	if err := ensure(conf.Policy); err != nil {
		return nil, err
	}
	result, err := current.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return nil, fmt.Errorf("nimbus-cni: %w", err)
	}
	if err := isolatePorts(result, conf.Policy.Bridge); err != nil {
		return nil, err
	}
	if err := mapPorts(conf, instanceIP(result)); err != nil {
		return nil, err
	}
	return result, nil
}

// Check is CNI's CHECK: both of the network's tables are in place, the
// policy at its current generation.
func Check(conf *Conf) error {
	if err := validate(conf); err != nil {
		return err
	}
	withHostResolvers(conf)
	ok, err := installed(conf.Policy)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("nimbus-cni: the ruleset of network %q (table inet %s) is missing or outdated", conf.Name, cninet.TableName(conf.Policy))
	}
	return nil
}

// Del is CNI's DEL: it removes the allocation's port mappings; no rule
// belongs to one instance.
func Del(conf *Conf) error {
	var ip net.IP
	if conf.PrevResult != nil {
		if r, err := current.NewResultFromResult(conf.PrevResult); err == nil {
			ip = instanceIP(r)
		}
	}
	return unmapPorts(conf, ip)
}

// isolatePorts makes the instance's end on the bridge an isolated port, so
// that it exchanges no frame with another instance. The bridge plugin does
// the same with portIsolation from v1.7; older ones ignore the setting
// without a word, and this does not depend on them.
func isolatePorts(r *current.Result, bridge string) error {
	for _, name := range bridgePorts(r, bridge) {
		link, err := netlink.LinkByName(name)
		if err != nil {
			return fmt.Errorf("nimbus-cni: the instance's interface %s on bridge %s: %w", name, bridge, err)
		}
		if err := netlink.LinkSetIsolated(link, true); err != nil {
			return fmt.Errorf("nimbus-cni: isolating %s on bridge %s: %w", name, bridge, err)
		}
	}
	return nil
}

// mapPorts adds the allocation's mappings to the network's map, in one
// netlink transaction.
func mapPorts(conf *Conf, ip net.IP) error {
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
	stale, elems := mapElements(mappings, ip, mapped)
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
// address (ip, when the cached result gives it).
func unmapPorts(conf *Conf, ip net.IP) error {
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
	gone := unmapElements(mappings, ip, mapped)
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
	rules := missingRuleset(p, policy, ports)
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

// tables reads which of the network's tables nf_tables holds.
func tables(p cninet.PolicyConf) (policy, ports bool, err error) {
	conn, err := newConn()
	if err != nil {
		return false, false, err
	}
	chains, err := conn.ListChains()
	if err != nil {
		return false, false, fmt.Errorf("nimbus-cni: list nftables chains: %w", err)
	}
	policy, ports = tablesPresent(p, chains)
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

// withHostResolvers lets a public network's instances ask the host's DNS
// servers, which the chroot's resolv.conf names, even at a private
// address: a VPC's resolver usually is one.
func withHostResolvers(conf *Conf) {
	if conf.Policy.Egress != cninet.EgressPublic {
		return
	}
	if b, err := os.ReadFile("/etc/resolv.conf"); err == nil {
		conf.Policy.Resolvers = cninet.HostResolvers(b)
	}
}
