package agents

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// Agents and tasks on one machine must never race for a port. Probing for a
// free port and binding it later loses that race to any other process that
// binds in between, and the kernel hands out its ephemeral ports to every
// outgoing connection. So ports come from slots instead:
//
//   - The range 20000-31999, below the kernel's ephemeral range, is cut
//     into slots of 500 ports. An agent set (a test package's Consul, Nomad
//     and gateways, or the local stack) holds one slot for as long as it
//     runs, by an exclusive lock on a file.
//   - The first ports of a slot are the agents' and gateways' listeners; the
//     rest is the Nomad client's dynamic range, from which its tasks get
//     their ports. Agents on one machine do not see each other's
//     allocations, so each needs a range of its own.
const (
	slotBase    = 20000
	slotSize    = 500
	slotCount   = 24 // 20000-31999, inside Nomad's default dynamic range
	listenPorts = 20 // per slot: the agents' listeners, then gateways'

	// AgentPorts is how many listener ports a slot gives its agents:
	// Consul's HTTP, Serf LAN, Serf WAN and server ports, Nomad's HTTP,
	// RPC and Serf ports, nats-server's client port, and RabbitMQ's AMQP,
	// epmd and distribution ports.
	AgentPorts = 11

	// DevPortSlot is the slot of the local stack (make dev), which listens
	// on the agents' usual ports and uses only the slot's dynamic range.
	DevPortSlot = 0
)

// PortSlot is a reserved share of the loopback ports.
type PortSlot struct {
	Index    int
	Min, Max int // the dynamic range for tasks

	mu   sync.Mutex
	next int // the next gateway port, cycling
	lock *os.File
}

// Agent returns the i-th agent listener port, 0 ≤ i < AgentPorts.
func (s *PortSlot) Agent(i int) int {
	if i < 0 || i >= AgentPorts {
		panic(fmt.Sprintf("agent port %d of %d", i, AgentPorts))
	}
	return s.base() + i
}

// GatewayPort returns a listener port for a gateway, cycling through the
// slot's gateway ports so that a restarted gateway rarely takes the port of
// the one before it.
func (s *PortSlot) GatewayPort() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	port := s.base() + AgentPorts + s.next
	s.next = (s.next + 1) % (listenPorts - AgentPorts)
	return port
}

func (s *PortSlot) base() int { return slotBase + s.Index*slotSize }

// Release gives the slot back.
func (s *PortSlot) Release() {
	if s != nil && s.lock != nil {
		_ = s.lock.Close()
	}
}

// ReservePorts takes the first free slot other than the local stack's.
func ReservePorts() (*PortSlot, error) {
	ephLo, ephHi := ephemeralRange()
	var why error
	for i := DevPortSlot + 1; i < slotCount; i++ {
		lo, hi := slotBase+i*slotSize, slotBase+(i+1)*slotSize-1
		if lo <= ephHi && hi >= ephLo {
			why = fmt.Errorf("ports %d-%d overlap the kernel's ephemeral range %d-%d (net.ipv4.ip_local_port_range)", lo, hi, ephLo, ephHi)
			continue
		}
		s, err := reserveSlot(i)
		if err != nil {
			why = err
			continue
		}
		if err := s.listenersFree(); err != nil {
			s.Release()
			why = err
			continue
		}
		return s, nil
	}
	return nil, fmt.Errorf("no port slot in %d-%d is free (%d slots): %w", slotBase, slotBase+slotCount*slotSize-1, slotCount-1, why)
}

// DevPortRange is the dynamic port range of the local stack; tests never
// reserve it.
func DevPortRange() (lo, hi int) {
	lo = slotBase + DevPortSlot*slotSize
	return lo + listenPorts, lo + slotSize - 1
}

func reserveSlot(i int) (*PortSlot, error) {
	p := filepath.Join(os.TempDir(), fmt.Sprintf("nimbus-nomad-ports-%d.lock", i))
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("port slot %d is in use: %w", i, err)
	}
	s := &PortSlot{Index: i, lock: f}
	s.Min, s.Max = s.base()+listenPorts, s.base()+slotSize-1
	return s, nil
}

// listenersFree checks that no process outside the slot system holds one of
// the slot's listener ports, for TCP or UDP (Serf needs both).
func (s *PortSlot) listenersFree() error {
	for port := s.base(); port < s.base()+listenPorts; port++ {
		tl, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			return fmt.Errorf("port slot %d: %w", s.Index, err)
		}
		ul, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		_ = tl.Close()
		if err != nil {
			return fmt.Errorf("port slot %d: %w", s.Index, err)
		}
		_ = ul.Close()
	}
	return nil
}

// ephemeralRange is the kernel's range for ports it picks itself.
func ephemeralRange() (lo, hi int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if _, err := fmt.Sscan(string(b), &lo, &hi); err == nil {
			return lo, hi
		}
	}
	return 32768, 60999 // Linux's default
}
