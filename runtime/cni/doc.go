// Package cni is the work of the nimbus-cni plugin, the last plugin of the
// Nimbus CNI networks (internal/cninet defines the networks): it reads the
// plugin's configuration, installs the network's firewall and
// port-mapping tables the first time an instance joins the network after
// boot or after the configuration changed, isolates the instance's port on
// the bridge, and maps the allocation's ports as elements of the network's
// map. Per allocation that is two netlink exchanges and no process.
//
// Building and applying are apart. conf.go and build.go are pure: from the
// configuration, the previous plugin's result and what nf_tables already
// holds, they decide the ruleset to install, the interfaces to isolate and
// the map elements to add or delete; they are tested without root or a
// network namespace. apply.go alone takes the lock, runs nft and speaks
// netlink.
//
// What the package must not do:
//   - hold a rule for one instance: the policy matches the bridge and the
//     subnet, and a port mapping is one element of a map;
//   - start a process per allocation: nft runs only to install a table;
//   - render a ruleset or define a network itself: internal/cninet is the
//     one definition, shared with the harness and the configurations in
//     examples/platform/cni;
//   - depend on the gateway or the host (internal/archtest), or be
//     imported by anything but the plugin's main.
package cni
