package logbuf

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// countingWriter records each Write it receives.
type countingWriter struct {
	mu     sync.Mutex
	writes []string
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, string(p))
	return len(p), nil
}

func (c *countingWriter) snapshot() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.writes...)
}

func TestLinesAreBatchedIntoOneWrite(t *testing.T) {
	out := &countingWriter{}
	w := New(out, time.Hour, 1<<16)
	for i := 0; i < 100; i++ {
		_, _ = w.Write([]byte("line\n"))
	}
	if got := out.snapshot(); len(got) != 0 {
		t.Fatalf("wrote %d times before a flush; want the lines held", len(got))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got := out.snapshot()
	if len(got) != 1 || got[0] != strings.Repeat("line\n", 100) {
		t.Fatalf("want the 100 lines in one write, in order; got %d writes", len(got))
	}
}

func TestTheBatchIsWrittenEveryIntervalAndWhenFull(t *testing.T) {
	out := &countingWriter{}
	w := New(out, 20*time.Millisecond, 1<<16)
	defer func() { _ = w.Close() }()
	_, _ = w.Write([]byte("soon\n"))
	deadline := time.Now().Add(2 * time.Second)
	for len(out.snapshot()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := out.snapshot(); len(got) != 1 || got[0] != "soon\n" {
		t.Fatalf("the interval's flush wrote %q", got)
	}

	full := &countingWriter{}
	small := New(full, time.Hour, 10)
	defer func() { _ = small.Close() }()
	_, _ = small.Write([]byte("0123456789\n"))
	if got := full.snapshot(); len(got) != 1 {
		t.Fatalf("a batch past its size is written at once; got %d writes", len(got))
	}
}

func TestConcurrentWritersKeepLinesWhole(t *testing.T) {
	var out bytes.Buffer
	w := New(&out, time.Millisecond, 256)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				_, _ = w.Write([]byte("abcdefghij\n"))
			}
		}()
	}
	wg.Wait()
	_ = w.Close()
	for _, l := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		if l != "abcdefghij" {
			t.Fatalf("a line was torn: %q", l)
		}
	}
	if n := strings.Count(out.String(), "\n"); n != 1600 {
		t.Fatalf("%d lines, want 1600", n)
	}
}
