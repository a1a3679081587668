package host

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// memoryMeter reads memory use from the task's cgroup where the sandbox
// exposes it, and from the processes' own peak RSS otherwise.
type memoryMeter struct {
	peakFile   string // cgroup v2 memory.peak or v1 memory.max_usage_in_bytes (found to locate the cgroup)
	eventsFile string // cgroup v2 memory.events or v1 memory.oom_control
}

// The cgroup is only the instance's own under Nomad; elsewhere it may be a
// whole session's, so outside Nomad the processes' peak RSS is used.
func newMemoryMeter() memoryMeter {
	if os.Getenv("NOMAD_ALLOC_ID") == "" {
		return memoryMeter{}
	}
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return memoryMeter{}
	}
	for _, line := range strings.Split(string(data), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		var m memoryMeter
		switch {
		case parts[0] == "0" && parts[1] == "":
			dir := filepath.Join("/sys/fs/cgroup", parts[2])
			m = memoryMeter{peakFile: filepath.Join(dir, "memory.peak"), eventsFile: filepath.Join(dir, "memory.events")}
		case hasController(parts[1], "memory"):
			dir := filepath.Join("/sys/fs/cgroup/memory", parts[2])
			m = memoryMeter{peakFile: filepath.Join(dir, "memory.max_usage_in_bytes"), eventsFile: filepath.Join(dir, "memory.oom_control")}
		default:
			continue
		}
		if _, err := os.Stat(m.peakFile); err == nil {
			return m
		}
	}
	return memoryMeter{}
}

func hasController(list, name string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// maxUsedMB is the peak memory of the instance: the host's and the
// handler's peak resident memory, as Lambda reports it. The cgroup's own
// peak also counts page cache (the code and binaries read at start), which
// would report a tiny Go handler at 80 MB; the cgroup serves OOM detection
// only. It runs on every invocation, so it avoids /proc/<pid>/status,
// which costs the kernel far more to render.
func (m memoryMeter) maxUsedMB(p *handlerProc) int {
	kb := hostPeakKB()
	if p != nil {
		kb += p.peakRSSKB()
	}
	return int((kb + 1023) / 1024)
}

// oomKills is the cgroup's count of OOM kills, if the sandbox shows it.
func (m memoryMeter) oomKills() (uint64, bool) {
	if m.eventsFile == "" {
		return 0, false
	}
	f, err := os.Open(m.eventsFile)
	if err != nil {
		return 0, false
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), " "); ok && k == "oom_kill" {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// oomKilledSince tells whether a SIGKILL of p was the kernel's OOM killer:
// the cgroup's OOM count rose, or, where the sandbox hides the cgroup, the
// handler had grown close to the memory limit.
func (m memoryMeter) oomKilledSince(p *handlerProc, limitMB int) bool {
	if n, ok := m.oomKills(); ok {
		return n > p.oomBase
	}
	return p.peakRSSKB() >= uint64(limitMB)*1024*8/10
}

// peakRSSKB is the handler's peak resident memory: the kernel's own
// account once it has exited; while it runs, the highest resident size
// sampled so far from /proc/<pid>/statm.
func (p *handlerProc) peakRSSKB() uint64 {
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	if p.hasExited() && p.cmd.ProcessState != nil {
		if ru, ok := p.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			return uint64(ru.Maxrss)
		}
		return p.peakKB.Load()
	}
	// Back-to-back warm invocations share one sample per few milliseconds.
	last := p.sampledAt.Load()
	if now := time.Now().UnixNano(); now-last < int64(5*time.Millisecond) || !p.sampledAt.CompareAndSwap(last, now) {
		return p.peakKB.Load()
	}
	now := statmRSSKB(p.cmd.Process.Pid)
	for {
		old := p.peakKB.Load()
		if now <= old || p.peakKB.CompareAndSwap(old, now) {
			return max(now, old)
		}
	}
}

var pageKB = uint64(os.Getpagesize() / 1024)

// hostPeak is the host's own highest sampled resident size. getrusage's
// ru_maxrss would not do: it survives execve, so under Nomad it reports the
// executor that started the host (about 70 MB) instead of the host.
var hostPeak, hostSampledAt atomic.Uint64

func hostPeakKB() uint64 {
	// Warm invocations back to back share one sample per few milliseconds.
	last := hostSampledAt.Load()
	if t := uint64(time.Now().UnixNano()); t-last < uint64(5*time.Millisecond) || !hostSampledAt.CompareAndSwap(last, t) {
		return hostPeak.Load()
	}
	now := statmRSSKB(os.Getpid())
	for {
		old := hostPeak.Load()
		if now <= old || hostPeak.CompareAndSwap(old, now) {
			return max(now, old)
		}
	}
}

// statmRSSKB is a process's resident size from /proc/<pid>/statm.
func statmRSSKB(pid int) uint64 {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(raw))
	if len(fields) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(fields[1], 10, 64)
	return pages * pageKB
}

// memoryCheckInterval is how often the host samples a handler it holds to
// its memory size itself (Config.EnforceMemory).
const memoryCheckInterval = 5 * time.Millisecond

// enforceMemory kills p once its resident memory passes the function's
// memory size, for a sandbox whose cgroup allows more. A sample every few
// milliseconds lets a fast allocation overshoot by what it touches in
// that time; the sandbox's own limit still bounds it.
func (h *Host) enforceMemory(p *handlerProc) {
	limitKB := uint64(h.cfg.MemoryMB) * 1024
	tick := time.NewTicker(memoryCheckInterval)
	defer tick.Stop()
	for {
		select {
		case <-p.exited:
			return
		case <-tick.C:
			if p.cmd == nil || p.cmd.Process == nil {
				continue
			}
			if rss := statmRSSKB(p.cmd.Process.Pid); rss > limitKB {
				h.log.Warn("handler killed: its resident memory passed the function's memory size", "rss_kb", rss, "memory_mb", h.cfg.MemoryMB)
				p.killedForMemory.Store(true)
				p.signalTree(syscall.SIGKILL)
				return
			}
		}
	}
}
