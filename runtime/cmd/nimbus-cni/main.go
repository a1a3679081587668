// Command nimbus-cni is the last plugin of the Nimbus CNI networks. It
// installs the network's firewall and port-mapping tables (internal/cninet)
// the first time an instance joins the network after boot or after the
// configuration changed, maps the allocation's ports, and passes the
// previous plugin's result on. Per allocation it costs two netlink
// exchanges and starts no process: the policy matches the bridge and the
// subnet, never one instance, and a port mapping is one element of a map.
//
// This command reads the CNI invocation; runtime/cni does the work.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/cni"
)

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{Add: add, Check: check, Del: del},
		version.PluginSupports("0.4.0", "1.0.0", "1.1.0"), "nimbus-cni: the Nimbus network policy")
}

func add(args *skel.CmdArgs) error {
	conf, err := cni.Parse(args.StdinData)
	if err != nil {
		return err
	}
	result, err := cni.Add(conf)
	if err != nil {
		return err
	}
	return types.PrintResult(result, conf.CNIVersion)
}

func check(args *skel.CmdArgs) error {
	conf, err := cni.Parse(args.StdinData)
	if err != nil {
		return err
	}
	return cni.Check(conf)
}

func del(args *skel.CmdArgs) error {
	conf, err := cni.Parse(args.StdinData)
	if err != nil {
		return err
	}
	return cni.Del(conf)
}
