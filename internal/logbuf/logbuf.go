// Package logbuf batches log writes. Lines go to a buffer that a
// background flush writes out every interval, and at once when it outgrows
// its size or when asked, so that a busy process makes one write to its
// log pipe per batch rather than one per line. Under Nomad that pipe is
// read by the task's log collector (logmon), another process: every write
// wakes it, and on the warm path that is CPU the invocation competes for.
package logbuf

import (
	"io"
	"sync"
	"time"
)

// Writer is an io.Writer that batches what it is given. Writes of whole
// lines stay whole: a batch is written with one Write.
type Writer struct {
	mu   sync.Mutex
	out  io.Writer
	buf  []byte
	max  int
	stop chan struct{}
	once sync.Once
	done sync.WaitGroup
}

// New batches writes to out, flushing every interval and whenever the
// batch reaches size bytes. Close flushes and stops the background flush.
func New(out io.Writer, interval time.Duration, size int) *Writer {
	w := &Writer{out: out, max: size, buf: make([]byte, 0, size), stop: make(chan struct{})}
	w.done.Add(1)
	go w.flushEvery(interval)
	return w
}

func (w *Writer) flushEvery(interval time.Duration) {
	defer w.done.Done()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-tick.C:
			_ = w.Flush()
		}
	}
}

// Write adds p to the batch.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if len(w.buf) >= w.max {
		if err := w.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Flush writes the batch out now.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.flushLocked()
}

func (w *Writer) flushLocked() error {
	if len(w.buf) == 0 {
		return nil
	}
	_, err := w.out.Write(w.buf)
	w.buf = w.buf[:0]
	return err
}

// Close flushes what is left and stops the background flush.
func (w *Writer) Close() error {
	w.once.Do(func() { close(w.stop) })
	w.done.Wait()
	return w.Flush()
}
