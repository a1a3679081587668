// Package testenv starts a real Consul agent and a real Nomad agent for a
// test package, on free loopback ports with temporary state, and tears them
// down afterwards. Tests that concern Nomad or Consul use it instead of mocks.
//
// Typical use:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		env := testenv.Get(t)
//		...
//	}
package testenv

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/accesskey"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/cninet"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/agents"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/principals"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
)

// Options shape the environment.
type Options struct {
	// ChrootEnv adds host→chroot entries to the Nomad client's slim chroot,
	// for binaries that tasks run.
	ChrootEnv map[string]string
	// HostVolumes are read-only host directories offered to jobs by name.
	HostVolumes map[string]string
	// WritableHostVolumes are host directories jobs may write (the
	// gateway job's artifact store).
	WritableHostVolumes map[string]string
	// StartTimeout bounds agent start-up. Default 90s.
	StartTimeout time.Duration
	// WithoutACL runs the agents with ACLs off, as some users still do.
	// By default both run with ACLs on (Consul with default deny).
	WithoutACL bool
	// TriggerPrefixes are the KV prefixes the package's KV triggers watch:
	// the gateway may read those and no other data.
	TriggerPrefixes []string
	// RabbitMQ starts a RabbitMQ node (Debian's rabbitmq-server) for the
	// package's event sources; the gateway's user may consume the queues
	// named src-….
	RabbitMQ bool
	// HostNetwork starts a client without CNI, as on clusters that run
	// functions with host networking.
	HostNetwork bool
	// DenyEgress adds destinations to the networks' deny list, beside
	// link-local addresses, the Nimbus subnets and the private ranges.
	DenyEgress []netip.Prefix
	// AllowEgress names private destinations instances with public egress
	// may reach all the same.
	AllowEgress []netip.Prefix
	// MaxKillTimeout is the client's max_kill_timeout: 0 sets the one
	// the platform guide asks for (nomadjob.ClientMaxKillTimeout),
	// KeepNomadDefault none.
	MaxKillTimeout time.Duration
}

// KeepNomadDefault is the Options.MaxKillTimeout that sets no
// max_kill_timeout: the client runs with Nomad's default, as most clusters
// do.
const KeepNomadDefault time.Duration = -1

// Env is a running pair of agents.
type Env struct {
	ID         string
	Dir        string // holds configs, logs and agent state
	ConsulAddr string // http://127.0.0.1:port
	NomadAddr  string // http://127.0.0.1:port
	// Consul and Nomad carry the management tokens when ACLs are on: they
	// are the operator's clients, for setting up and inspecting.
	Consul *consulapi.Client
	Nomad  *nomadapi.Client
	// ACL reports whether the agents enforce ACLs.
	ACL bool
	// Tokens are the bootstrap tokens (nil without ACLs).
	Tokens *agents.Tokens
	// Principals are the deployer's and the gateway's least-privilege
	// credentials, from examples/platform/policies (empty without ACLs).
	Principals principals.Set
	// Network is the client's Nimbus networks (nil with HostNetwork).
	Network *cninet.Client
	// FunctionGateway is where instances reach the gateway's function
	// listener (host:port on the public network's bridge), which the
	// shared gateway serves; the client's nimbus.gateway_url names it.
	FunctionGateway string
	// GatewayToken is the operator key (a bearer token) of the gateways
	// the environment starts: every right. Tests that are not about
	// authorization call the gateway with it, as the operator would.
	GatewayToken string
	// SigningKey signs artifact URLs in every gateway the environment
	// starts, as the gateways of one cluster share it: an instance fetches
	// its package from the function listener with a URL another gateway
	// may have signed.
	SigningKey string
	// NATS is the nats-server with JetStream that keeps asynchronous
	// invocations; the gateways the environment starts use its gateway
	// user.
	NATS *agents.NATS
	// RabbitMQ is the node Options.RabbitMQ asks for.
	RabbitMQ *agents.RabbitMQ
	// Leftovers lists what the allocations left on the host after Stop:
	// namespaces, interfaces, port mappings, leases. A test package fails
	// when it is not empty.
	Leftovers []string

	consulProc   *agents.Process
	nomadProc    *agents.Process
	nomadDataDir string
	cgroupParent string
	portSlot     *agents.PortSlot

	gatewayOnce sync.Once
	gateway     *Gateway
	gatewayErr  error
}

// SourceStream is the JetStream stream that the environment's gateways may
// read as an event source (tests create it, with subjects orders.>).
const SourceStream = "ORDERS"

// UncreatedStream is granted like SourceStream but never created: a
// source on it shows JetStream's own refusal.
const UncreatedStream = "NEVER_CREATED"

// Start launches Consul, then Nomad, and waits until Consul has a leader and
// Nomad has a ready node with a healthy exec driver.
func Start(opts Options) (env *Env, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the Nomad exec driver needs root: run the tests as root")
	}
	// Fail before creating anything when a binary is missing.
	bins := []agents.Binary{agents.Consul, agents.Nomad, agents.NATSServer}
	if opts.RabbitMQ {
		bins = append(bins, agents.RabbitMQServer, agents.Epmd)
	}
	for _, bin := range bins {
		if _, err := bin.Path(); err != nil {
			return nil, err
		}
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 90 * time.Second
	}

	id := randomID()
	// A short state path: Nomad puts each task's Task API socket under it,
	// and a unix socket path may not exceed 107 bytes.
	dir, err := os.MkdirTemp("", "nimbus-"+id+"-")
	if err != nil {
		return nil, err
	}
	env = &Env{ID: id, Dir: dir}
	keyID, secret, err := accesskey.New()
	if err != nil {
		return env, err
	}
	env.GatewayToken = accesskey.Token(keyID, secret)
	signing := make([]byte, 32)
	if _, err := rand.Read(signing); err != nil {
		return env, err
	}
	env.SigningKey = hex.EncodeToString(signing)
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w\n%s", err, env.logTails(40))
			env.Stop()
			env = nil
		}
	}()

	if env.portSlot, err = agents.ReservePorts(); err != nil {
		return env, err
	}
	port := env.portSlot.Agent
	env.nomadDataDir = filepath.Join(dir, "nomad")
	var cni *agents.NomadCNI
	var meta map[string]string
	if !opts.HostNetwork {
		if cni, meta, err = env.networks(opts.DenyEgress, opts.AllowEgress); err != nil {
			return env, err
		}
	}
	env.cgroupParent = agents.CgroupParentName("nimbus-test-" + id)
	cfg := agents.PairConfig{
		ConfigDir: dir,
		Consul: agents.ConsulConfig{
			NodeName:   "nimbus-test-" + id,
			Datacenter: "dc1",
			DataDir:    filepath.Join(dir, "consul"),
			Ports:      agents.ConsulPorts{HTTP: port(0), DNS: -1, SerfLAN: port(1), SerfWAN: port(2), Server: port(3)},
		},
		Nomad: agents.NomadConfig{
			Name:         "nimbus-test-" + id,
			Region:       "global",
			Datacenter:   "dc1",
			DataDir:      env.nomadDataDir,
			Ports:        agents.NomadPorts{HTTP: port(4), RPC: port(5), Serf: port(6)},
			ConsulHTTP:   fmt.Sprintf("127.0.0.1:%d", port(0)),
			CgroupParent: env.cgroupParent,
			ChrootEnv:    agents.SlimChrootEnv(opts.ChrootEnv),

			MinDynamicPort: env.portSlot.Min,
			MaxDynamicPort: env.portSlot.Max,
			MaxKillTimeout: max(cmp.Or(opts.MaxKillTimeout, nomadjob.ClientMaxKillTimeout), 0),
			HostVolumes:    opts.HostVolumes,

			WritableHostVolumes: opts.WritableHostVolumes,

			CNI:  cni,
			Meta: meta,
		},
		Launch: func(name string, bin agents.Binary, args []string) (*agents.Process, error) {
			path, err := bin.Path()
			if err != nil {
				return nil, err
			}
			return agents.Start(name, path, args, filepath.Join(dir, name+".log"), agents.StartOptions{})
		},
	}
	if !opts.WithoutACL {
		tokens, err := agents.LoadOrCreateTokens(dir)
		if err != nil {
			return env, err
		}
		cfg.Tokens, env.Tokens, env.ACL = &tokens, &tokens, true
	}

	ctx, cancel := context.WithTimeout(context.Background(), opts.StartTimeout)
	defer cancel()
	// RabbitMQ takes seconds to boot: it starts beside Consul and Nomad.
	rabbit := make(chan error, 1)
	if opts.RabbitMQ {
		go func() {
			var err error
			env.RabbitMQ, err = agents.StartRabbitMQ(ctx, agents.RabbitMQConfig{Port: port(8), Dir: filepath.Join(dir, "rabbitmq"), GatewayRead: "^src-.*$"})
			rabbit <- err
		}()
	} else {
		rabbit <- nil
	}
	pair, err := agents.StartPair(ctx, cfg)
	if rabbitErr := <-rabbit; err == nil && rabbitErr != nil {
		err = rabbitErr
	}
	env.ConsulAddr, env.NomadAddr = pair.ConsulAddr, pair.NomadAddr
	env.Consul, env.Nomad = pair.Consul, pair.Nomad
	env.consulProc, env.nomadProc = pair.ConsulProc, pair.NomadProc
	if err != nil {
		return env, err
	}
	natsDir := filepath.Join(dir, "nats")
	if err := os.MkdirAll(natsDir, 0o700); err != nil {
		return env, err
	}
	if env.NATS, err = agents.StartNATS(ctx, agents.NATSConfig{Port: port(7), DataDir: filepath.Join(natsDir, "jetstream"), ConfigDir: natsDir, SourceStreams: []string{SourceStream, UncreatedStream}}); err != nil {
		return env, err
	}
	if env.ACL {
		if env.Principals, err = principals.Create(ctx, env.Nomad, env.Consul, principals.Options{TriggerPrefixes: opts.TriggerPrefixes}); err != nil {
			return env, err
		}
	}
	slog.Debug("testenv ready", "consul", env.ConsulAddr, "nomad", env.NomadAddr, "dir", dir)
	return env, nil
}

// networks sets up the client's Nimbus networks: the reference plugins and
// nimbus-cni on the CNI path, and network configurations of the slot's own.
func (e *Env) networks(deny, allow []netip.Prefix) (*agents.NomadCNI, map[string]string, error) {
	plugins, err := agents.CNIPlugins()
	if err != nil {
		return nil, nil, err
	}
	own := filepath.Join(e.Dir, "cni-bin")
	if err := BuildStatic(map[string]string{filepath.Join(own, cninet.PluginType): "./runtime/cmd/nimbus-cni"}); err != nil {
		return nil, nil, err
	}
	port := e.portSlot.GatewayPort()
	nets := agents.TestNetworks(e.portSlot.Index, port, filepath.Join(e.Dir, "cni-ipam"))
	nets.Deny, nets.Allow = deny, allow
	confDir := filepath.Join(e.Dir, "cni")
	if err := agents.WriteCNIConfig(confDir, nets); err != nil {
		return nil, nil, err
	}
	e.Network = &nets
	e.FunctionGateway = net.JoinHostPort(nets.Public.Gateway().String(), strconv.Itoa(port))
	meta := map[string]string{protocol.NodeMetaGatewayURL: "http://" + e.FunctionGateway}
	return &agents.NomadCNI{Path: plugins + ":" + own, ConfigDir: confDir}, meta, nil
}

// AgentPorts names the agents' listener ports: Consul's HTTP, Serf LAN,
// Serf WAN and server ports, Nomad's HTTP, RPC and Serf ports.
func (e *Env) AgentPorts() map[string]int {
	names := []string{"consul http", "consul serf lan", "consul serf wan", "consul server rpc", "nomad http", "nomad rpc", "nomad serf"}
	ports := make(map[string]int, len(names))
	for i, n := range names {
		ports[n] = e.portSlot.Agent(i)
	}
	return ports
}

// GatewayPort returns a free listener port of the environment's slot for
// another gateway (the gateway job, say).
func (e *Env) GatewayPort() int { return e.portSlot.GatewayPort() }

// Stop purges all jobs, stops both agents and removes everything they left:
// processes, mounts, cgroups and the state directory.
func (e *Env) Stop() {
	if e.Nomad != nil && e.nomadProc != nil && e.nomadProc.ExitError() == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := agents.StopAllJobs(ctx, e.Nomad); err != nil {
			slog.Warn("testenv: stopping jobs", "err", err)
		}
		cancel()
		if e.Network != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			if err := agents.WaitNetworkTeardown(ctx, *e.Network); err != nil {
				slog.Warn("testenv: waiting for network teardown", "err", err)
			}
			cancel()
		}
	}
	e.gateway.Stop()
	if e.NATS != nil && e.NATS.Proc != nil {
		e.NATS.Proc.Stop(10 * time.Second)
	}
	if e.RabbitMQ != nil {
		e.RabbitMQ.Stop()
	}
	allocs := e.allocationIDs()
	if e.nomadProc != nil {
		e.nomadProc.Stop(10 * time.Second)
	}
	if e.consulProc != nil {
		e.consulProc.Stop(10 * time.Second)
	}
	if e.nomadDataDir != "" {
		// The whole state dir, not only Nomad's data dir: Nomad 1.9 and
		// later mount task roots beside it (alloc_mounts), where a task
		// that outlived its agent would otherwise be missed.
		agents.KillProcessesUnder(e.Dir)
		if n := agents.KillAllocationProcesses(allocs); n > 0 {
			slog.Info("testenv: killed task processes that outlived Nomad", "count", n)
		}
		if err := agents.UnmountUnder(e.Dir); err != nil {
			slog.Warn("testenv: unmounting", "err", err)
		}
	}
	agents.RemoveCgroup(e.cgroupParent)
	if e.Network != nil {
		if removed := agents.RemoveLeakedNetns(allocs); len(removed) > 0 {
			slog.Info("testenv: removed network namespaces that Nomad left mounted", "count", len(removed))
		}
		e.Leftovers = agents.NetworkLeftovers(*e.Network, allocs)
		if err := agents.RemoveNetworks(*e.Network); err != nil {
			e.Leftovers = append(e.Leftovers, err.Error())
		}
	}
	e.portSlot.Release()
	if e.Dir != "" && os.Getenv("NIMBUS_TESTENV_KEEP") == "" {
		if err := os.RemoveAll(e.Dir); err != nil {
			slog.Warn("testenv: removing state", "dir", e.Dir, "err", err)
		}
	}
}

// StopChecked stops the environment and fails t if the allocations left
// anything on the host, as Main does for the shared environment.
func (e *Env) StopChecked(t testing.TB) {
	t.Helper()
	e.Stop()
	if len(e.Leftovers) > 0 {
		t.Errorf("the allocations left these on the host:\n  %s", strings.Join(e.Leftovers, "\n  "))
	}
}

// allocationIDs lists every allocation the client ran: those Nomad still
// knows and those whose directory remains.
func (e *Env) allocationIDs() []string {
	seen := map[string]bool{}
	if e.Nomad != nil {
		if allocs, _, err := e.Nomad.Allocations().List(&nomadapi.QueryOptions{Namespace: "*"}); err == nil {
			for _, a := range allocs {
				seen[a.ID] = true
			}
		}
	}
	if entries, err := os.ReadDir(filepath.Join(e.nomadDataDir, "alloc")); err == nil {
		for _, d := range entries {
			seen[d.Name()] = true
		}
	}
	ids := make([]string, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	return ids
}

// WriteLogs copies both agents' logs to w, each line prefixed by the agent,
// for reading after a failure.
func (e *Env) WriteLogs(w io.Writer) {
	logs := map[string]string{}
	for _, p := range []*agents.Process{e.consulProc, e.nomadProc} {
		if p != nil {
			logs[p.Name] = p.LogPath
		}
	}
	logs["gateway"] = filepath.Join(e.Dir, "gateway.log")
	for _, name := range []string{"consul", "nomad", "gateway"} {
		data, err := os.ReadFile(logs[name])
		if err != nil {
			continue
		}
		for _, line := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
			fmt.Fprintf(w, "[%s] %s\n", name, line)
		}
	}
}

func (e *Env) logTails(n int) string {
	var b strings.Builder
	for _, p := range []*agents.Process{e.consulProc, e.nomadProc} {
		if p == nil {
			continue
		}
		data, _ := os.ReadFile(p.LogPath)
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		fmt.Fprintf(&b, "--- last %d lines of %s (%s) ---\n%s\n", len(lines), p.Name, p.LogPath, strings.Join(lines, "\n"))
	}
	return b.String()
}

func randomID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
