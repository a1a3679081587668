// Command nimbus-cni is the last plugin of the Nimbus CNI networks. It
// installs the network's firewall ruleset (internal/cninet) the first time
// an instance joins the network after boot or after the configuration
// changed, and passes the previous plugin's result on. Per allocation it
// costs one netlink query: the rules match the bridge and the subnet, never
// one instance, so there is nothing to add or remove per instance.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/google/nftables"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/cninet"
)

// lockFile serialises ruleset installs between plugins that Nomad runs at
// once for several allocations.
const lockFile = "/run/nimbus-cni.lock"

// netConf is the plugin's configuration: CNI's common fields and the
// Nimbus policy, both read from the same JSON.
type netConf struct {
	types.NetConf
	Policy cninet.PolicyConf
}

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{Add: add, Check: check, Del: del},
		version.PluginSupports("0.4.0", "1.0.0", "1.1.0"), "nimbus-cni: the Nimbus network policy")
}

func parse(stdin []byte) (*netConf, error) {
	conf := &netConf{}
	if err := json.Unmarshal(stdin, &conf.NetConf); err != nil {
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
	return types.PrintResult(result, conf.CNIVersion)
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

// del has nothing to do: no rule belongs to one instance.
func del(*skel.CmdArgs) error { return nil }

func ensure(p cninet.PolicyConf) error {
	if ok, err := installed(p); err != nil || ok {
		return err
	}
	lock, err := os.OpenFile(lockFile, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("nimbus-cni: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("nimbus-cni: lock %s: %w", lockFile, err)
	}
	if ok, err := installed(p); err != nil || ok {
		return err
	}
	cmd := exec.Command(nftBinary(), "-f", "-")
	cmd.Stdin = strings.NewReader(cninet.Ruleset(p))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nimbus-cni: installing the ruleset of bridge %s failed: %v: %s (the client needs nftables: the nft command and the kernel's nf_tables)", p.Bridge, err, out)
	}
	return nil
}

// installed reports whether the network's table carries the current
// generation.
func installed(p cninet.PolicyConf) (bool, error) {
	conn, err := nftables.New()
	if err != nil {
		return false, fmt.Errorf("nimbus-cni: netlink: %w", err)
	}
	defer conn.CloseLasting()
	chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, fmt.Errorf("nimbus-cni: list nftables chains: %w", err)
	}
	table, gen := cninet.TableName(p), cninet.GenerationChain(p)
	for _, c := range chains {
		if c.Table.Name == table && c.Name == gen {
			return true, nil
		}
	}
	return false, nil
}

func nftBinary() string {
	if p, err := exec.LookPath("nft"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/nft", "/sbin/nft"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "nft"
}
