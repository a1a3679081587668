package agents

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Nomad hands tasks ports from its client's dynamic range. Agents on one
// machine do not see each other's allocations, so two of them sharing a
// range can give two tasks the same port. Each agent takes its own slot of
// the range, held by an exclusive lock on a file for as long as it runs.
const (
	dynamicPortBase  = 20000
	dynamicSlotSize  = 500
	dynamicSlotCount = 24 // 20000-31999, inside Nomad's default range
	// DevPortSlot is the slot of the local stack (make dev).
	DevPortSlot = 0
)

// PortSlot is a reserved range of dynamic ports.
type PortSlot struct {
	Min, Max int
	lock     *os.File
}

// Release gives the slot back.
func (s *PortSlot) Release() {
	if s != nil && s.lock != nil {
		_ = s.lock.Close()
	}
}

// ReserveDynamicPorts takes the first free slot other than the dev stack's.
func ReserveDynamicPorts() (*PortSlot, error) {
	for i := DevPortSlot + 1; i < dynamicSlotCount; i++ {
		if s, err := reserveSlot(i); err == nil {
			return s, nil
		}
	}
	return nil, fmt.Errorf("all %d dynamic port slots are taken by running Nomad agents", dynamicSlotCount-1)
}

// DevPortRange is the dynamic port range of the local stack; tests never
// reserve it.
func DevPortRange() (lo, hi int) {
	lo = dynamicPortBase + DevPortSlot*dynamicSlotSize
	return lo, lo + dynamicSlotSize - 1
}

func reserveSlot(i int) (*PortSlot, error) {
	p := filepath.Join(os.TempDir(), fmt.Sprintf("nimbus-nomad-ports-%d.lock", i))
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("dynamic port slot %d is in use: %w", i, err)
	}
	lo := dynamicPortBase + i*dynamicSlotSize
	return &PortSlot{Min: lo, Max: lo + dynamicSlotSize - 1, lock: f}, nil
}
