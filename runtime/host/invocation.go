package host

import (
	"io"
	"sync"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
)

// invocation is one event on its way through the handler.
type invocation struct {
	id            string
	traceID       string
	clientContext string
	identity      string
	qualifier     string // the version or alias the caller invoked
	deadline      time.Time
	allowance     time.Duration // from receipt to deadline
	payload       []byte
	done          chan outcome // buffered; the first outcome wins
	logs          *tailBuffer
}

func newInvocation(id string, deadline time.Time, payload []byte) *invocation {
	return &invocation{id: id, deadline: deadline, allowance: time.Until(deadline), payload: payload, done: make(chan outcome, 1), logs: &tailBuffer{max: 4096}}
}

// finish records the outcome unless one was recorded already.
func (inv *invocation) finish(o outcome) {
	select {
	case inv.done <- o:
	default:
	}
}

// outcome is what an invocation produced: a result, or an error in
// Lambda's shape.
type outcome struct {
	body []byte
	err  *protocol.ErrorBody
}

// Result is a finished invocation with its accounting.
type Result struct {
	RequestID      string
	Body           []byte
	Err            *protocol.ErrorBody
	Duration       time.Duration
	BilledDuration time.Duration
	InitDuration   time.Duration // zero unless this invocation met a fresh handler
	ColdStart      bool
	MemorySizeMB   int
	MaxMemoryMB    int
	LogTail        string
}

// tailBuffer keeps the last max bytes of an invocation's log lines.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) write(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, s...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// syncWriter serialises whole lines onto one stream.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) write(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _ = s.w.Write([]byte(line))
}

// flush writes out what a batching writer holds (logbuf).
func (s *syncWriter) flush() {
	if f, ok := s.w.(interface{ Flush() error }); ok {
		_ = f.Flush()
	}
}

// close flushes and stops a batching writer.
func (s *syncWriter) close() {
	if c, ok := s.w.(io.Closer); ok {
		_ = c.Close()
	}
}
