package host

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// A handler is a process tree, not a process: Lambda's custom runtimes start
// through a bootstrap script that execs the real binary, interpreters are
// often reached through wrappers (pyenv shims) that exec in turn, and some
// wrappers fork the handler and wait for it. The host owns the whole tree:
//
//   - The handler starts as the leader of its own process group, and the
//     host signals the group, never a single pid.
//   - The group is signalled only while its leader is unreaped. Until then
//     the leader's pid, which is the group id, cannot be given to another
//     process, so a kill aimed at an old tree can never reach the
//     replacement the supervisor starts next.
//   - When the leader exits, the rest of its group is killed before the
//     leader is reaped, so nothing of the old tree outlives it.
//   - Descendants that left the group (setsid, setpgid) are adopted by the
//     host when it is a child subreaper (nimbus-host is), and killed too.

// EnableOrphanAdoption makes this process the child subreaper of everything
// it starts, so that the descendants a handler orphans are re-parented to it
// and ended with the handler. Only for a process that runs nothing but
// handlers (nimbus-host): it kills every child that is not a live handler.
func EnableOrphanAdoption() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("becoming the child subreaper of handler processes: %w", err)
	}
	adoptsOrphans.Store(true)
	return nil
}

// adoptsOrphans is set once this process is the child subreaper.
var adoptsOrphans atomic.Bool

// signalTree sends sig to the handler's process group, unless the leader has
// been reaped, after which the group id may name another process.
func (p *handlerProc) signalTree(sig syscall.Signal) {
	p.treeMu.Lock()
	defer p.treeMu.Unlock()
	if p.reaped || p.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
}

// awaitLeaderExit blocks until the leader has exited, leaving it unreaped.
func awaitLeaderExit(pid int) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			return
		}
	}
}

// endTree kills what is left of a handler's tree once its leader exited:
// the rest of its process group, then any descendants that escaped the group
// and were re-parented to the host.
func (p *handlerProc) endTree() {
	p.signalTree(syscall.SIGKILL)
	if adoptsOrphans.Load() {
		killOrphans(p.cmd.Process.Pid)
	}
}

// killOrphans kills and reaps the host's children other than leader. Each
// killed orphan's own children are re-parented to the host in turn, hence
// the rounds.
func killOrphans(leader int) {
	self := os.Getpid()
	for range 64 {
		orphans := childrenOf(self, leader)
		if len(orphans) == 0 {
			return
		}
		for _, pid := range orphans {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			var ws syscall.WaitStatus
			for {
				if _, err := syscall.Wait4(pid, &ws, 0, nil); !errors.Is(err, syscall.EINTR) {
					break
				}
			}
		}
	}
}

// childrenOf lists the processes whose parent is ppid, except skip.
func childrenOf(ppid, skip int) []int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var pids []int
	for _, path := range stats {
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(path)))
		if err != nil || pid == skip || pid == ppid {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			continue // exited meanwhile
		}
		// The command name may hold spaces and parentheses: the fields
		// that follow start after the last ')'. They are state, then ppid.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		fields := bytes.Fields(b[i+1:])
		if len(fields) < 2 {
			continue
		}
		if parent, err := strconv.Atoi(string(fields[1])); err == nil && parent == ppid {
			pids = append(pids, pid)
		}
	}
	return pids
}

// startWithoutNewPrivileges starts a handler that can never gain a
// privilege: no setuid or file-capability binary it execs raises it
// (no_new_privs). The flag belongs to a thread and passes to what it
// forks, so the fork happens on a locked thread that holds it. The
// thread keeps the flag when it returns to Go's pool, which costs the
// host nothing: it needs no privilege either.
func startWithoutNewPrivileges(cmd *exec.Cmd) error {
	runtime.LockOSThread()
	// Unlocked, not ended with the goroutine: the handler's parent-death
	// signal fires when the thread that forked it exits.
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("setting no_new_privs for the handler: %w", err)
	}
	return cmd.Start()
}
