package agents

import (
	"fmt"
	"net"
)

// FreePorts returns n loopback ports that are free for both TCP and UDP at
// the time of the call (Serf needs both).
func FreePorts(n int) ([]int, error) {
	var ports []int
	var holds []func()
	defer func() {
		for _, release := range holds {
			release()
		}
	}()
	for len(ports) < n {
		tl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		port := tl.Addr().(*net.TCPAddr).Port
		ul, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			_ = tl.Close()
			continue
		}
		holds = append(holds, func() { _ = tl.Close(); _ = ul.Close() })
		ports = append(ports, port)
	}
	return ports, nil
}
