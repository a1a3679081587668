package host

import (
	"io"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
)

// Checking whether the handler's output is drained must leave its pipe in
// non-blocking mode: a pipe in blocking mode holds an OS thread and its P
// in every read, and the Runtime API's next connection then waits for the
// scheduler's monitor (the first warm invocation after a cold start took
// about 11 ms instead of 1 ms; docs/benchmarks.md).
func TestDrainCheckKeepsTheOutputPipeNonBlocking(t *testing.T) {
	var dst io.Writer
	o, err := newOutputStream(&exec.Cmd{}, &dst)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = o.r.Close(); o.closeWriter() }()
	nonBlocking := func() bool {
		rc, err := o.r.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var flags int
		var flagsErr error
		if err := rc.Control(func(fd uintptr) { flags, flagsErr = unix.FcntlInt(fd, unix.F_GETFL, 0) }); err != nil || flagsErr != nil {
			t.Fatal(err, flagsErr)
		}
		return flags&unix.O_NONBLOCK != 0
	}
	if !nonBlocking() {
		t.Fatal("control: a new output pipe is in blocking mode, so this test proves nothing")
	}
	if _, err := dst.Write([]byte("line\n")); err != nil {
		t.Fatal(err)
	}
	if o.drained() {
		t.Error("a pipe holding an unread line counts as drained")
	}
	if !nonBlocking() {
		t.Error("checking whether the output is drained put the pipe in blocking mode")
	}
}
