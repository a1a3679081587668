package agents

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/cninet"
)

// CNIPluginsEnv names a directory of CNI reference plugins to use instead of
// the ones `make tools` builds into .tools/cni.
const CNIPluginsEnv = "NIMBUS_CNI_PATH"

// CNIPlugins finds the CNI reference plugins (bridge, host-local, loopback,
// with nimbus-cni, no more). The error says how to get them.
func CNIPlugins() (string, error) {
	dir := os.Getenv(CNIPluginsEnv)
	if dir == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, ".tools", "cni")
	}
	for _, p := range []string{"bridge", "host-local", "loopback"} {
		if err := isExecutable(filepath.Join(dir, p)); err != nil {
			return "", fmt.Errorf("CNI plugin %s not found in %s: run `make tools` to build the pinned CNI plugins, or set %s to a directory holding them", p, dir, CNIPluginsEnv)
		}
	}
	if _, err := cninet.NftCommand(); err != nil {
		return "", err
	}
	return dir, nil
}

// NomadCNI is a client's Nimbus networking: where its CNI plugins and
// network configurations are.
type NomadCNI struct {
	// Path lists the directories of CNI plugins, separated by ':'.
	Path      string
	ConfigDir string
}

// TestNetworks returns the Nimbus networks of the agent set in port slot
// slot: bridges and subnets of its own, so that agent sets on one machine
// never share a bridge, an address or a firewall table.
func TestNetworks(slot int, gatewayPort int, ipamDir string) cninet.Client {
	c := cninet.Client{
		Public: cninet.Network{Name: cninet.NetworkPublic, Egress: cninet.EgressPublic,
			Bridge: fmt.Sprintf("nimbus%dp", slot), Subnet: netip.MustParsePrefix(fmt.Sprintf("172.29.%d.0/25", slot))},
		None: cninet.Network{Name: cninet.NetworkNone, Egress: cninet.EgressNone,
			Bridge: fmt.Sprintf("nimbus%dn", slot), Subnet: netip.MustParsePrefix(fmt.Sprintf("172.29.%d.128/25", slot))},
		GatewayPorts: []int{gatewayPort},
		IPAMDataDir:  ipamDir,
	}
	if slot == DevPortSlot {
		d := cninet.DefaultClient()
		c.Public, c.None = d.Public, d.None
	}
	return c
}

// WriteCNIConfig writes the client's network configurations into dir.
func WriteCNIConfig(dir string, c cninet.Client) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, data := range c.Conflists() {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// NetnsDir is where Nomad mounts each bridge allocation's network namespace,
// named after the allocation.
const NetnsDir = "/var/run/netns"

// RemoveLeakedNetns unmounts and removes the network namespaces of the
// given allocations that Nomad left behind. Nomad 1.6 keeps each
// namespace's file open until its garbage collector runs, so unmounting at
// the end of a short allocation fails with "device or resource busy" and
// is not retried: the mount leaks although CNI has torn the network down.
// With the agent stopped, the namespaces are unused.
func RemoveLeakedNetns(allocIDs []string) (removed []string) {
	for _, id := range allocIDs {
		p := filepath.Join(NetnsDir, id)
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		_ = syscall.Unmount(p, syscall.MNT_DETACH)
		if os.Remove(p) == nil {
			removed = append(removed, id)
		}
	}
	return removed
}

// RemoveNetworks deletes the Nimbus bridges, firewall and port-mapping
// tables of c, which outlive the allocations by design.
func RemoveNetworks(c cninet.Client) error {
	var errs []error
	for _, n := range c.Networks() {
		p := c.Policy(n)
		for _, t := range []struct{ family, name string }{{"inet", cninet.TableName(p)}, {"ip", cninet.PortsTable(p)}} {
			if !tableExists(t.family, t.name) {
				continue
			}
			if out, err := exec.Command(nftPath(), "delete", "table", t.family, t.name).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("delete table %s %s: %w: %s", t.family, t.name, err, out))
			}
		}
		if linkExists(n.Bridge) {
			if out, err := exec.Command("ip", "link", "delete", n.Bridge).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("delete bridge %s: %w: %s", n.Bridge, err, out))
			}
		}
	}
	return errors.Join(errs...)
}

// NetworkLeftovers lists what allocations of c's networks left behind: a
// network namespace of one of allocIDs, a port mapping, a veth still on a
// Nimbus bridge, or an IP lease. It is empty after a clean teardown, when
// no allocation runs.
func NetworkLeftovers(c cninet.Client, allocIDs []string) []string {
	var left []string
	for _, id := range allocIDs {
		if _, err := os.Lstat(filepath.Join(NetnsDir, id)); err == nil {
			left = append(left, "network namespace "+filepath.Join(NetnsDir, id))
		}
	}
	for _, n := range c.Networks() {
		ports := cninet.PortsTable(c.Policy(n))
		if out, err := exec.Command(nftPath(), "-j", "list", "map", "ip", ports, cninet.PortsMap).Output(); err == nil && strings.Contains(string(out), `"elem"`) {
			left = append(left, fmt.Sprintf("port mappings in table ip %s: %s", ports, mapElements(ports)))
		}
		if out, err := exec.Command("ip", "-o", "link", "show", "master", n.Bridge).Output(); err == nil && strings.TrimSpace(string(out)) != "" {
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				left = append(left, fmt.Sprintf("interface on bridge %s: %s", n.Bridge, strings.Join(strings.Fields(line)[:2], " ")))
			}
		}
		if c.IPAMDataDir != "" {
			leases, _ := filepath.Glob(filepath.Join(c.IPAMDataDir, n.Name, firstThreeOctets(n.Subnet)+"*"))
			for _, l := range leases {
				left = append(left, "address lease "+l)
			}
		}
	}
	return left
}

// firstThreeOctets is "172.29.5." for 172.29.5.0/25: the test networks
// are at most /24, so it matches exactly their addresses' text.
func firstThreeOctets(p netip.Prefix) string {
	s := p.Addr().String()
	return s[:strings.LastIndex(s, ".")+1]
}

// WaitNetworkTeardown waits until the allocations' CNI teardown has run:
// no port mapping and no address lease left. Newer Nomads report an
// allocation complete before its network hook has torn the network down;
// stopping the agent in between would cut the teardown short.
func WaitNetworkTeardown(ctx context.Context, c cninet.Client) error {
	return Poll(ctx, nil, "the allocations' networks to be torn down", func() (bool, error) {
		if left := NetworkLeftovers(c, nil); len(left) > 0 {
			return false, fmt.Errorf("still there: %s", strings.Join(left, "; "))
		}
		return true, nil
	})
}

func tableExists(family, name string) bool {
	return exec.Command(nftPath(), "list", "table", family, name).Run() == nil
}

// mapElements is the text of a port map's elements, for a report.
func mapElements(table string) string {
	out, _ := exec.Command(nftPath(), "list", "map", "ip", table, cninet.PortsMap).Output()
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "elements") {
			return strings.TrimSpace(line)
		}
	}
	return strings.TrimSpace(string(out))
}

func linkExists(name string) bool {
	_, err := os.Stat(filepath.Join("/sys/class/net", name))
	return err == nil
}

// nftPath is the nft command; CNIPlugins has checked that there is one.
func nftPath() string {
	p, _ := cninet.NftCommand()
	return p
}
