package agents

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// CloudFingerprinters probe metadata endpoints that do not exist off-cloud;
// in newer Nomad releases their failure can stop the client from starting.
const CloudFingerprinters = "env_aws,env_gce,env_azure,env_digitalocean"

// ConsulPorts are the Consul agent's listeners. DNS < 0 disables it.
type ConsulPorts struct {
	HTTP, DNS, SerfLAN, SerfWAN, Server int
}

// ConsulConfig describes one single-node Consul server on loopback.
type ConsulConfig struct {
	NodeName   string
	Datacenter string
	DataDir    string
	Ports      ConsulPorts
	// ACL, when set, turns ACLs on with default deny.
	ACL *Tokens
}

// HCL renders the agent configuration.
func (c ConsulConfig) HCL() string {
	var b strings.Builder
	kv(&b, "node_name", c.NodeName)
	kv(&b, "datacenter", c.Datacenter)
	kv(&b, "data_dir", c.DataDir)
	kv(&b, "bind_addr", "127.0.0.1")
	kv(&b, "client_addr", "127.0.0.1")
	kv(&b, "advertise_addr", "127.0.0.1")
	b.WriteString("server = true\nbootstrap_expect = 1\ndisable_update_check = true\nlog_level = \"INFO\"\n")
	b.WriteString("ui_config {\n  enabled = true\n}\n")
	// A single local server does not need production raft timings.
	b.WriteString("performance {\n  raft_multiplier = 1\n}\n")
	fmt.Fprintf(&b, "ports {\n  http = %d\n  https = -1\n  grpc = -1\n  dns = %d\n  serf_lan = %d\n  serf_wan = %d\n  server = %d\n}\n",
		c.Ports.HTTP, c.Ports.DNS, c.Ports.SerfLAN, c.Ports.SerfWAN, c.Ports.Server)
	if c.ACL != nil {
		fmt.Fprintf(&b, "acl {\n  enabled = true\n  default_policy = \"deny\"\n  tokens {\n    initial_management = %s\n    agent = %s\n  }\n}\n",
			strconv.Quote(c.ACL.ConsulManagement), strconv.Quote(c.ACL.ConsulAgent))
	}
	return b.String()
}

// NomadPorts are the Nomad agent's listeners.
type NomadPorts struct {
	HTTP, RPC, Serf int
}

// NomadConfig describes one Nomad agent that is both server and client, on
// loopback, with only the exec driver and a slim chroot.
type NomadConfig struct {
	Name       string
	Region     string
	Datacenter string
	DataDir    string
	Ports      NomadPorts
	ConsulHTTP string // host:port of the Consul agent
	// CgroupParent keeps this agent's task cgroups apart from any other
	// agent's on the same machine.
	CgroupParent string
	// ChrootEnv maps host paths into every exec task's chroot.
	ChrootEnv map[string]string
	// MinDynamicPort and MaxDynamicPort bound the ports given to tasks.
	MinDynamicPort, MaxDynamicPort int
	// MaxKillTimeout is the client's max_kill_timeout, which caps every
	// task's kill_timeout; 0 leaves Nomad's default (30 s).
	MaxKillTimeout time.Duration
	// HostVolumes are read-only host directories that jobs can mount:
	// bind mounts cost nothing at task start, unlike chroot_env copies.
	HostVolumes map[string]string // name → host path
	// WritableHostVolumes are host directories jobs may write (the
	// gateway's artifact store).
	WritableHostVolumes map[string]string
	// ACL, when set, turns Nomad's ACLs on and gives the agent its Consul
	// token.
	ACL *Tokens
	// CNI, when set, gives the client the Nimbus networks; without it,
	// functions can only run with host networking.
	CNI *NomadCNI
	// Meta is the client's node metadata (nimbus.gateway_url).
	Meta map[string]string
}

// HCL renders the agent configuration.
func (c NomadConfig) HCL() string {
	var b strings.Builder
	kv(&b, "name", c.Name)
	kv(&b, "region", c.Region)
	kv(&b, "datacenter", c.Datacenter)
	kv(&b, "data_dir", c.DataDir)
	kv(&b, "bind_addr", "127.0.0.1")
	b.WriteString("disable_update_check = true\nlog_level = \"INFO\"\n")
	fmt.Fprintf(&b, "ports {\n  http = %d\n  rpc = %d\n  serf = %d\n}\n", c.Ports.HTTP, c.Ports.RPC, c.Ports.Serf)
	fmt.Fprintf(&b, "advertise {\n  http = \"127.0.0.1:%d\"\n  rpc = \"127.0.0.1:%d\"\n  serf = \"127.0.0.1:%d\"\n}\n", c.Ports.HTTP, c.Ports.RPC, c.Ports.Serf)
	b.WriteString("server {\n  enabled = true\n  bootstrap_expect = 1\n}\n")
	b.WriteString("client {\n  enabled = true\n  network_interface = \"lo\"\n")
	fmt.Fprintf(&b, "  cgroup_parent = %s\n", strconv.Quote(c.CgroupParent))
	if c.MinDynamicPort > 0 {
		fmt.Fprintf(&b, "  min_dynamic_port = %d\n  max_dynamic_port = %d\n", c.MinDynamicPort, c.MaxDynamicPort)
	}
	if c.MaxKillTimeout > 0 {
		fmt.Fprintf(&b, "  max_kill_timeout = %q\n", c.MaxKillTimeout.String())
	}
	b.WriteString("  options {\n")
	fmt.Fprintf(&b, "    \"fingerprint.denylist\" = %s\n", strconv.Quote(CloudFingerprinters))
	b.WriteString("    \"driver.allowlist\" = \"exec\"\n  }\n")
	if c.CNI != nil {
		fmt.Fprintf(&b, "  cni_path = %s\n  cni_config_dir = %s\n", strconv.Quote(c.CNI.Path), strconv.Quote(c.CNI.ConfigDir))
	}
	if len(c.Meta) > 0 {
		b.WriteString("  meta {\n")
		for _, k := range sortedKeys(c.Meta) {
			fmt.Fprintf(&b, "    %s = %s\n", strconv.Quote(k), strconv.Quote(c.Meta[k]))
		}
		b.WriteString("  }\n")
	}
	b.WriteString("  chroot_env {\n")
	for _, src := range sortedKeys(c.ChrootEnv) {
		fmt.Fprintf(&b, "    %s = %s\n", strconv.Quote(src), strconv.Quote(c.ChrootEnv[src]))
	}
	b.WriteString("  }\n")
	for _, name := range sortedKeys(c.HostVolumes) {
		fmt.Fprintf(&b, "  host_volume %s {\n    path = %s\n    read_only = true\n  }\n", strconv.Quote(name), strconv.Quote(c.HostVolumes[name]))
	}
	for _, name := range sortedKeys(c.WritableHostVolumes) {
		fmt.Fprintf(&b, "  host_volume %s {\n    path = %s\n    read_only = false\n  }\n", strconv.Quote(name), strconv.Quote(c.WritableHostVolumes[name]))
	}
	b.WriteString("}\n")
	// No exec task may hold a capability, whatever its job asks for (see
	// examples/platform/nomad-client.hcl).
	b.WriteString("plugin \"exec\" {\n  config {\n    allow_caps = []\n  }\n}\n")
	if c.ACL != nil {
		b.WriteString("acl {\n  enabled = true\n}\n")
		fmt.Fprintf(&b, "consul {\n  address = %s\n  token = %s\n}\n", strconv.Quote(c.ConsulHTTP), strconv.Quote(c.ACL.NomadAgentConsul))
	} else {
		fmt.Fprintf(&b, "consul {\n  address = %s\n}\n", strconv.Quote(c.ConsulHTTP))
	}
	fmt.Fprintf(&b, "ui {\n  enabled = true\n  consul {\n    ui_url = %s\n  }\n}\n", strconv.Quote("http://"+c.ConsulHTTP+"/ui"))
	return b.String()
}

// SlimChrootEnv is what an exec task needs and no more: the user database
// (the driver resolves "nobody"), name resolution and CA certificates.
// Linking /usr as Nomad's default does makes every cold start take seconds.
// Paths missing on this host are left out. extra adds host→chroot entries,
// such as the directory holding nimbus-host.
func SlimChrootEnv(extra map[string]string) map[string]string {
	env := map[string]string{}
	for _, p := range []string{
		"/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/hosts", "/etc/resolv.conf",
		"/etc/ssl/certs/ca-certificates.crt",
		// The dynamic loader, for interpreters that run from the /usr
		// host volume; static binaries do not need it.
		"/lib64/ld-linux-x86-64.so.2",
	} {
		// Nomad hard-links a chroot_env file as it finds it: a symlink would
		// arrive as a link to a path the chroot lacks, so link the target.
		if target, err := filepath.EvalSymlinks(p); err == nil {
			env[target] = p
		}
	}
	for src, dst := range extra {
		env[src] = dst
	}
	return env
}

// CgroupParentName returns a cgroup parent for name in the form this host's
// cgroup version expects.
func CgroupParentName(name string) string {
	if CgroupsV2() {
		return name + ".slice"
	}
	return "/" + name
}

// CgroupsV2 reports whether the host uses the unified cgroup hierarchy.
func CgroupsV2() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err == nil
}

// WriteConfig writes an agent configuration file and returns its path.
func WriteConfig(dir, name, hcl string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	p := filepath.Join(dir, name)
	return p, os.WriteFile(p, []byte(hcl), 0o600)
}

func kv(b *strings.Builder, key, value string) {
	fmt.Fprintf(b, "%s = %s\n", key, strconv.Quote(value))
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
