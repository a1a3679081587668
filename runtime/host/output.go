package host

import (
	"io"
	"os"
	"os/exec"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// outputStream is one of the handler's output pipes. It counts what was
// read and what was handled, so that the end of an invocation can wait for
// the lines the handler wrote before answering: those belong to it, but
// travel through the pipe while the answer travels over HTTP.
type outputStream struct {
	r, w    *os.File
	read    atomic.Int64
	handled atomic.Int64
}

// newOutputStream makes a pipe and attaches its write end to *dst.
func newOutputStream(_ *exec.Cmd, dst *io.Writer) (*outputStream, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	*dst = w
	return &outputStream{r: r, w: w}, nil
}

// closeWriter drops the host's copy of the write end once the child has it.
func (o *outputStream) closeWriter() { _ = o.w.Close() }

func (o *outputStream) Read(b []byte) (int, error) {
	n, err := o.r.Read(b)
	o.read.Add(int64(n))
	return n, err
}

// drained reports whether every byte written so far has been handled.
func (o *outputStream) drained() bool {
	// Through SyscallConn, not Fd: Fd would switch the pipe to blocking
	// mode for good, and each read of the handler's output would then hold
	// an OS thread and its P in the kernel. With both Ps held, the Runtime
	// API's next connection waited for the scheduler's monitor, up to
	// 10 ms: the slow first warm invocation after a cold start.
	rc, err := o.r.SyscallConn()
	if err != nil {
		return true
	}
	var pending int
	var ioctlErr error
	if err := rc.Control(func(fd uintptr) { pending, ioctlErr = unix.IoctlGetInt(int(fd), unix.TIOCINQ) }); err != nil || ioctlErr != nil {
		return true
	}
	return pending == 0 && o.read.Load() == o.handled.Load()
}

// drainOutput waits briefly for the handler's output to be handled. A line
// without a newline at the end never counts as handled, hence the bound.
func (p *handlerProc) drainOutput() {
	deadline := time.Now().Add(5 * time.Millisecond)
	for time.Now().Before(deadline) {
		all := true
		for _, o := range p.outputs {
			all = all && o.drained()
		}
		if all {
			return
		}
		time.Sleep(50 * time.Microsecond)
	}
}
