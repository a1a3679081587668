package agents

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"
)

// StopAllJobs purges every job and waits until no allocation is running, so
// that the exec driver's executors exit before the agent does (they are
// meant to outlive agent restarts, so killing the agent alone leaks them).
func StopAllJobs(ctx context.Context, c *nomadapi.Client) error {
	jobs, _, err := c.Jobs().List(&nomadapi.QueryOptions{Namespace: "*"})
	if err != nil {
		return err
	}
	for _, j := range jobs {
		q := &nomadapi.WriteOptions{Namespace: j.Namespace}
		if _, _, err := c.Jobs().Deregister(j.ID, true, q); err != nil {
			return fmt.Errorf("purge job %s: %w", j.ID, err)
		}
	}
	return Poll(ctx, nil, "allocations to stop", func() (bool, error) {
		allocs, _, err := c.Allocations().List(&nomadapi.QueryOptions{Namespace: "*"})
		if err != nil {
			return false, err
		}
		for _, a := range allocs {
			if a.ClientStatus == nomadapi.AllocClientStatusRunning || a.ClientStatus == nomadapi.AllocClientStatusPending {
				return false, fmt.Errorf("allocation %s of %s is %s", a.ID, a.JobID, a.ClientStatus)
			}
		}
		return true, nil
	})
}

// KillProcessesUnder kills the processes a Nomad agent with data dir dir
// left behind: task executors (`nomad executor` with paths under dir) and
// user tasks, whose chroot root or working directory is under dir.
func KillProcessesUnder(dir string) int {
	prefix := strings.TrimRight(dir, "/") + "/"
	return killProcesses(func(procDir string) bool { return leftBehind(procDir, prefix) })
}

// KillAllocationProcesses kills the processes whose cgroup names one of
// the allocations: tasks that outlived their agent. Nomad 1.10 on cgroups
// v1 puts them in /nomad/<alloc>.<task>, whatever the client's
// cgroup_parent, and their root, in a mount namespace of their own, no
// longer names the state dir.
func KillAllocationProcesses(allocs []string) int {
	if len(allocs) == 0 {
		return 0
	}
	return killProcesses(func(procDir string) bool {
		cgroup, err := os.ReadFile(filepath.Join(procDir, "cgroup"))
		if err != nil {
			return false
		}
		for _, id := range allocs {
			if id != "" && strings.Contains(string(cgroup), id) {
				return true
			}
		}
		return false
	})
}

// killProcesses kills every process but this one whose /proc directory
// matches, and gives the kernel a moment to reap them.
func killProcesses(matches func(procDir string) bool) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	self := os.Getpid()
	killed := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self || !matches(filepath.Join("/proc", e.Name())) {
			continue
		}
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed++
		}
	}
	if killed > 0 {
		time.Sleep(200 * time.Millisecond)
	}
	return killed
}

func leftBehind(procDir, prefix string) bool {
	for _, link := range []string{"root", "cwd"} {
		if target, err := os.Readlink(filepath.Join(procDir, link)); err == nil && strings.HasPrefix(target+"/", prefix) {
			return true
		}
	}
	cmdline, err := os.ReadFile(filepath.Join(procDir, "cmdline"))
	if err != nil {
		return false
	}
	args := bytes.Split(cmdline, []byte{0})
	if len(args) > 1 && filepath.Base(string(args[0])) == "nomad" &&
		string(args[1]) == "executor" && bytes.Contains(cmdline, []byte(prefix)) {
		return true
	}
	// A Nomad plugin (logmon) that outlived its agent holds the task's log
	// files open; its command line and working directory name nothing.
	if len(args) > 1 && filepath.Base(string(args[0])) == "nomad" {
		fds, _ := os.ReadDir(filepath.Join(procDir, "fd"))
		for _, fd := range fds {
			if target, err := os.Readlink(filepath.Join(procDir, "fd", fd.Name())); err == nil && strings.HasPrefix(target, prefix) {
				return true
			}
		}
	}
	return false
}

// UnmountUnder detaches every mount point below dir, deepest first: the
// exec driver bind-mounts /dev, /proc and a secrets tmpfs into task dirs.
func UnmountUnder(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	prefix := strings.TrimRight(dir, "/") + "/"
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], prefix) {
			points = append(points, unescapeMount(fields[4]))
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var firstErr error
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && firstErr == nil && err != syscall.EINVAL {
			firstErr = fmt.Errorf("unmount %s: %w", p, err)
		}
	}
	return firstErr
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// RemoveCgroup removes the cgroup parent and everything below it, in every
// hierarchy. Cgroup directories only go away with rmdir, leaves first.
func RemoveCgroup(parent string) {
	if parent == "" || parent == "/" {
		return
	}
	var roots []string
	if CgroupsV2() {
		roots = []string{"/sys/fs/cgroup"}
	} else if entries, err := os.ReadDir("/sys/fs/cgroup"); err == nil {
		for _, e := range entries {
			roots = append(roots, filepath.Join("/sys/fs/cgroup", e.Name()))
		}
	}
	for _, root := range roots {
		top := filepath.Join(root, parent)
		var dirs []string
		_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			_ = syscall.Rmdir(dirs[i])
		}
	}
}
