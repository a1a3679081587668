// Package devstack runs the local stack behind `make dev`: a Consul and a
// Nomad agent on their usual ports, detached, with state under .nimbus/ and
// PID files so that `make dev-down` stops exactly what `make dev` started.
package devstack

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/accesskey"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/clients"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/cninet"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/agents"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/gatewayjob"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/principals"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
)

// The usual ports, so that the Nomad and Consul CLIs work without settings.
const (
	ConsulHTTP  = 8500
	NomadHTTP   = 4646
	GatewayHTTP = 8080
)

// cgroupName keeps the stack's task cgroups apart from test agents'.
const cgroupName = "nimbus-dev"

// Stack is the local stack rooted at Dir (the repository's .nimbus/).
type Stack struct {
	Dir string
	Out io.Writer
}

func (s Stack) pidFile(name string) string { return filepath.Join(s.Dir, name+".pid") }
func (s Stack) cniConfigDir() string       { return filepath.Join(s.Dir, "config", "cni") }

// networks are the shipped Nimbus networks, with address leases kept in the
// stack's state.
func (s Stack) networks() cninet.Client {
	return agents.TestNetworks(agents.DevPortSlot, cninet.DefaultGatewayPort, s.dataDir("cni-ipam"))
}
func (s Stack) logFile(name string) string { return filepath.Join(s.Dir, "logs", name+".log") }
func (s Stack) dataDir(name string) string { return filepath.Join(s.Dir, "data", name) }

// Up starts whichever agents are not already running and waits until both
// are ready. Running it again is harmless.
func (s Stack) Up(ctx context.Context) error {
	for _, d := range []string{filepath.Join(s.Dir, "logs"), filepath.Join(s.Dir, "data"), filepath.Join(s.Dir, "config")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	tokens, err := agents.LoadOrCreateTokens(filepath.Join(s.Dir, "data"))
	if err != nil {
		return err
	}
	nomadCfg := agents.NomadConfig{
		Name: "nimbus-dev", Region: "global", Datacenter: "dc1", DataDir: s.dataDir("nomad"),
		Ports:        agents.NomadPorts{HTTP: NomadHTTP, RPC: 4647, Serf: 4648},
		ConsulHTTP:   fmt.Sprintf("127.0.0.1:%d", ConsulHTTP),
		CgroupParent: agents.CgroupParentName(cgroupName),
		ChrootEnv:    agents.SlimChrootEnv(nil),
		// As the platform guide asks of every client.
		MaxKillTimeout: nomadjob.ClientMaxKillTimeout,
	}
	nomadCfg.MinDynamicPort, nomadCfg.MaxDynamicPort = agents.DevPortRange()
	// Function jobs mount nimbus-host and, for interpreters, /usr from the
	// client (internal/nomadjob); `make dev` builds nimbus-host first.
	nomadCfg.HostVolumes = map[string]string{
		nomadjob.HostVolumeRuntime: filepath.Join(s.Dir, "runtime"),
		nomadjob.HostVolumeUsr:     "/usr",
	}
	// Instances get their own network namespaces on the shipped Nimbus
	// networks (examples/platform/cni), and reach the gateway job's
	// function listener at the nimbus bridge's address.
	plugins, err := agents.CNIPlugins()
	if err != nil {
		return err
	}
	if err := agents.WriteCNIConfig(s.cniConfigDir(), s.networks()); err != nil {
		return err
	}
	nomadCfg.CNI = &agents.NomadCNI{Path: plugins + ":" + filepath.Join(s.Dir, "cni"), ConfigDir: s.cniConfigDir()}
	nomadCfg.Meta = map[string]string{protocol.NodeMetaGatewayURL: fmt.Sprintf("http://%s:%d", s.networks().Public.Gateway(), cninet.DefaultGatewayPort)}
	if _, err := os.Stat(filepath.Join(s.Dir, "cni", cninet.PluginType)); err != nil {
		return fmt.Errorf("%s is not built into %s: run make dev, which builds it", cninet.PluginType, filepath.Join(s.Dir, "cni"))
	}
	for _, bin := range []string{"nimbus-host", "nimbus-gateway"} {
		if _, err := os.Stat(filepath.Join(s.Dir, "runtime", "bin", bin)); err != nil {
			return fmt.Errorf("%s is not built into %s: run make dev, which builds it", bin, filepath.Join(s.Dir, "runtime", "bin"))
		}
	}
	// The gateway job keeps its artifact store here, as nobody.
	gatewayData := s.dataDir("gateway")
	if err := os.MkdirAll(gatewayData, 0o755); err != nil {
		return err
	}
	if err := os.Chown(gatewayData, 65534, 65534); err != nil {
		return err
	}
	nomadCfg.WritableHostVolumes = map[string]string{"nimbus-gateway-data": gatewayData}

	pair, err := agents.StartPair(ctx, agents.PairConfig{
		ConfigDir: filepath.Join(s.Dir, "config"),
		Consul: agents.ConsulConfig{
			NodeName: "nimbus-dev", Datacenter: "dc1", DataDir: s.dataDir("consul"),
			Ports: agents.ConsulPorts{HTTP: ConsulHTTP, DNS: 8600, SerfLAN: 8301, SerfWAN: 8302, Server: 8300},
		},
		Nomad:  nomadCfg,
		Tokens: &tokens,
		Launch: s.launch,
	})
	if err != nil {
		return err
	}
	// The quickstart's KV trigger watches demo/: the gateway may read it.
	creds, err := principals.Create(ctx, pair.Nomad, pair.Consul, principals.Options{TriggerPrefixes: []string{"demo/"}})
	if err != nil {
		return err
	}
	keys, err := s.gatewayKeys()
	if err != nil {
		return err
	}
	// The deployer uploads with the operator's gateway key, which exists
	// before any nimbus_access_key does.
	if err := s.writeEnv("deployer.env", "the deployer's least-privilege tokens", creds.Deployer, keys.OperatorKey); err != nil {
		return err
	}
	operator := principals.Credentials{NomadToken: tokens.NomadManagement, ConsulToken: tokens.ConsulManagement}
	if err := s.writeEnv("operator.env", "the operator's management tokens (UI login, cluster set-up)", operator, keys.OperatorKey); err != nil {
		return err
	}
	nats, err := s.startNATS(ctx)
	if err != nil {
		return err
	}
	if err := s.runGateway(ctx, pair.Nomad, creds.Gateway.ConsulToken, keys, nats); err != nil {
		return err
	}

	fmt.Fprintf(s.Out, `
Nimbus local stack is up.
  Consul UI:  http://127.0.0.1:%d/ui/
  Nomad UI:   http://127.0.0.1:%d/ui/
  Gateway:    http://127.0.0.1:%d
  Logs:       %s


  ACLs are on (Consul: default deny). Log in to both UIs with the
  operator's management token (Nomad UI: ACL Tokens; Consul UI: Log in):
    Nomad:   %s
    Consul:  %s

  Deploy as the least-privilege deployer (examples/platform/policies):
    source %s

Stop it with: make dev-down
`, ConsulHTTP, NomadHTTP, GatewayHTTP, filepath.Join(s.Dir, "logs"), tokens.NomadManagement, tokens.ConsulManagement, filepath.Join(s.Dir, "deployer.env"))
	return nil
}

// launch starts an agent detached, with a PID file, unless our PID file
// names a live instance of it (then it returns nil: StartPair waits for
// the running one).
func (s Stack) launch(name string, bin agents.Binary, args []string) (*agents.Process, error) {
	if pid := s.runningPid(name); pid > 0 {
		fmt.Fprintf(s.Out, "dev: %s already running (pid %d)\n", name, pid)
		return nil, nil
	}
	port := map[string]int{"consul": ConsulHTTP, "nomad": NomadHTTP}[name]
	if portInUse(port) {
		return nil, fmt.Errorf("port %d is in use by a process that make dev did not start; stop it (another %s?) and run make dev again", port, name)
	}
	path, err := bin.Path()
	if err != nil {
		return nil, err
	}
	p, err := agents.Start(name, path, args, s.logFile(name), agents.StartOptions{Detach: true})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(s.pidFile(name), []byte(strconv.Itoa(p.Pid())), 0o644); err != nil {
		return nil, err
	}
	fmt.Fprintf(s.Out, "dev: started %s (pid %d), waiting until it is ready (log: %s)\n", name, p.Pid(), s.logFile(name))
	return p, nil
}

// writeEnv writes a principal's credentials as a shell file to source,
// readable by the owner only.
func (s Stack) writeEnv(name, what string, c principals.Credentials, gatewayToken string) error {
	body := fmt.Sprintf("# Nimbus local stack: %s.\nexport NOMAD_ADDR=http://127.0.0.1:%d CONSUL_HTTP_ADDR=http://127.0.0.1:%d NIMBUS_GATEWAY_URL=http://127.0.0.1:%d\nexport NOMAD_TOKEN=%s CONSUL_HTTP_TOKEN=%s NIMBUS_GATEWAY_TOKEN=%s\n", what,
		NomadHTTP, ConsulHTTP, GatewayHTTP, c.NomadToken, c.ConsulToken, gatewayToken)
	return os.WriteFile(filepath.Join(s.Dir, name), []byte(body), 0o600)
}

// runGateway runs the gateway as the Nomad job of examples/platform, so
// the whole platform shows in the Nomad UI, with its tokens the Nomad way
// (internal/harness/gatewayjob). The binary's digest is job meta: a
// rebuilt gateway is a new job version, which Nomad rolls out.
func (s Stack) runGateway(ctx context.Context, nomad *nomadapi.Client, consulToken string, keys gatewayKeys, nats *agents.NATS) error {
	bin, err := os.ReadFile(filepath.Join(s.Dir, "runtime", "bin", "nimbus-gateway"))
	if err != nil {
		return err
	}
	sum := sha256.Sum256(bin)
	fmt.Fprintf(s.Out, "dev: registering the gateway job, waiting until it serves on :%d\n", GatewayHTTP)
	_, err = gatewayjob.Run(ctx, nomad, gatewayjob.Options{ConsulToken: consulToken, OperatorKey: keys.OperatorKey, SigningKey: keys.SigningKey,
		NATSURL: nats.URL, NATSUser: nats.Gateway.User, NATSPassword: nats.Gateway.Password,
		Meta: map[string]string{"nimbus.gateway_build": hex.EncodeToString(sum[:6])}})
	return err
}

// gatewayKeys are the gateway job's operator key and URL signing key.
type gatewayKeys struct {
	OperatorKey string `json:"operator_key"`
	SigningKey  string `json:"signing_key"`
}

// NATSPort is the local stack's nats-server, on its usual port.
const NATSPort = 4222

// startNATS runs the stack's nats-server with JetStream, detached, unless
// it already runs; its users' credentials are made once and kept with the
// stack's state.
func (s Stack) startNATS(ctx context.Context) (*agents.NATS, error) {
	path := filepath.Join(s.Dir, "data", "nats-users.json")
	var users struct{ Gateway, Admin agents.NATSUser }
	if b, err := os.ReadFile(path); err != nil || json.Unmarshal(b, &users) != nil || users.Gateway.User == "" {
		users.Gateway = agents.NATSUser{User: "nimbus-gateway", Password: randomHex(16)}
		users.Admin = agents.NATSUser{User: "admin", Password: randomHex(16)}
		b, _ := json.Marshal(users)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return nil, err
		}
	}
	if pid := s.runningPid("nats-server"); pid > 0 {
		fmt.Fprintf(s.Out, "dev: nats-server already running (pid %d)\n", pid)
		n := &agents.NATS{URL: fmt.Sprintf("nats://127.0.0.1:%d", NATSPort), Gateway: users.Gateway, Admin: users.Admin}
		return n, n.Wait(ctx)
	}
	n, err := agents.StartNATS(ctx, agents.NATSConfig{Port: NATSPort, DataDir: s.dataDir("nats"), ConfigDir: filepath.Join(s.Dir, "config"),
		LogPath: s.logFile("nats-server"), Detach: true, Gateway: users.Gateway, Admin: users.Admin})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(s.pidFile("nats-server"), []byte(strconv.Itoa(n.Proc.Pid())), 0o644); err != nil {
		return nil, err
	}
	fmt.Fprintf(s.Out, "dev: started nats-server (pid %d) with JetStream (log: %s)\n", n.Proc.Pid(), s.logFile("nats-server"))
	return n, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// gatewayKeys makes the gateway's keys once and keeps them with the
// stack's state, so that a restarted stack accepts the same key and its
// jobs' artifact URLs stay valid.
func (s Stack) gatewayKeys() (gatewayKeys, error) {
	path := filepath.Join(s.Dir, "data", "gateway-keys.json")
	var keys gatewayKeys
	if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, &keys) == nil && keys.OperatorKey != "" && keys.SigningKey != "" {
		return keys, nil
	}
	id, secret, err := accesskey.New()
	if err != nil {
		return keys, err
	}
	signing := make([]byte, 32)
	if _, err := rand.Read(signing); err != nil {
		return keys, err
	}
	keys = gatewayKeys{OperatorKey: accesskey.Token(id, secret), SigningKey: hex.EncodeToString(signing)}
	b, _ := json.Marshal(keys)
	return keys, os.WriteFile(path, b, 0o600)
}

// Down stops the agents named by the PID files, purging Nomad's jobs first
// so that no task outlives the stack, and removes their state. Logs stay.
func (s Stack) Down(ctx context.Context) error {
	if pid := s.runningPid("nomad"); pid > 0 {
		tokens, _, _ := agents.LoadTokens(filepath.Join(s.Dir, "data"))
		nomad, err := clients.NewNomad(clients.NomadConfig{Address: fmt.Sprintf("http://127.0.0.1:%d", NomadHTTP), Token: tokens.NomadManagement}, clients.DefaultRetryPolicy, nil)
		if err == nil {
			stopCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
			if err := agents.StopAllJobs(stopCtx, nomad); err != nil {
				fmt.Fprintf(s.Out, "dev: stopping jobs: %v\n", err)
			} else if err := agents.WaitNetworkTeardown(stopCtx, s.networks()); err != nil {
				fmt.Fprintf(s.Out, "dev: %v\n", err)
			}
			cancel()
		}
	}
	for _, name := range []string{"nimbus-gateway", "nomad", "consul", "nats-server"} {
		if pid := s.runningPid(name); pid > 0 {
			agents.StopPid(pid, 15*time.Second)
			fmt.Fprintf(s.Out, "dev: stopped %s (pid %d)\n", name, pid)
		} else {
			fmt.Fprintf(s.Out, "dev: %s was not running\n", name)
		}
		_ = os.Remove(s.pidFile(name))
	}
	_ = os.Remove(filepath.Join(s.Dir, "deployer.env"))
	_ = os.Remove(filepath.Join(s.Dir, "operator.env"))
	nomadData := s.dataDir("nomad")
	if n := agents.KillProcessesUnder(nomadData); n > 0 {
		fmt.Fprintf(s.Out, "dev: killed %d leftover task processes\n", n)
	}
	if err := agents.UnmountUnder(s.Dir); err != nil {
		return err
	}
	// Nomad 1.6 can leave allocations' network namespaces mounted; the
	// bridges and firewall tables outlive allocations by design.
	var allocs []string
	if entries, err := os.ReadDir(filepath.Join(nomadData, "alloc")); err == nil {
		for _, e := range entries {
			allocs = append(allocs, e.Name())
		}
	}
	if removed := agents.RemoveLeakedNetns(allocs); len(removed) > 0 {
		fmt.Fprintf(s.Out, "dev: removed %d network namespaces Nomad left mounted\n", len(removed))
	}
	if err := agents.RemoveNetworks(s.networks()); err != nil {
		fmt.Fprintf(s.Out, "dev: removing the Nimbus networks: %v\n", err)
	}
	agents.RemoveCgroup(agents.CgroupParentName(cgroupName))
	return os.RemoveAll(filepath.Join(s.Dir, "data"))
}

// runningPid returns the PID from name's PID file if that process is alive
// and is the agent we started; otherwise 0. A PID reused by an unrelated
// process is never signalled.
func (s Stack) runningPid(name string) int {
	raw, err := os.ReadFile(s.pidFile(name))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 0 {
		return 0
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return 0
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return 0
	}
	args := strings.Split(string(cmdline), "\x00")
	if filepath.Base(args[0]) != name || !strings.Contains(string(cmdline), s.Dir) {
		return 0
	}
	return pid
}

func portInUse(port int) bool {
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 500*time.Millisecond)
	if err != nil {
		return false
	}
	_ = conn.Close()
	return true
}
