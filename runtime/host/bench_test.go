package host_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkWarmInvoke measures one warm invocation three ways in the same
// run: the equivalent handler called directly over HTTP (the baseline),
// through nimbus-host with the aws-lambda-go handler (Runtime API), and
// through nimbus-host's http runtime. The ratio to the baseline is the
// host's overhead.
func BenchmarkWarmInvoke(b *testing.B) {
	const event = `{"action":"echo","value":"bench"}`

	b.Run("direct", func(b *testing.B) {
		port := freePortB(b)
		cmd := exec.Command(bins.httpserver)
		cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port))
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		url := fmt.Sprintf("http://127.0.0.1:%d/", port)
		waitHTTP(b, url)
		benchPost(b, url, event)
	})

	b.Run("host-provided", func(b *testing.B) {
		h := startHostB(b, "-function", "bench", "-runtime", "provided", "-task-root", filepath.Dir(bins.lambdago))
		benchPost(b, h.url+"/invoke", event)
		b.ReportMetric(float64(rssKB(h.cmd.Process.Pid)), "host-rss-kB")
	})

	b.Run("host-http", func(b *testing.B) {
		h := startHostB(b, "-function", "bench", "-runtime", "http", "-handler", "server", "-task-root", filepath.Dir(bins.httpserver))
		benchPost(b, h.url+"/invoke", event)
	})
}

func benchPost(b *testing.B, url, body string) {
	b.Helper()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, err := client.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}

func startHostB(b *testing.B, args ...string) *runningHost {
	b.Helper()
	port := freePortB(b)
	h := &runningHost{url: fmt.Sprintf("http://127.0.0.1:%d", port), stdout: &lockedBuffer{}, stderr: &lockedBuffer{}}
	h.cmd = exec.Command(bins.host, append([]string{"-listen", fmt.Sprintf("127.0.0.1:%d", port)}, args...)...)
	h.cmd.Stdout, h.cmd.Stderr = io.Discard, h.stderr
	if err := h.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = h.cmd.Process.Kill(); _ = h.cmd.Wait() })
	waitHTTP(b, h.url+"/healthz")
	return h
}

func waitHTTP(b *testing.B, url string) {
	b.Helper()
	for i := 0; i < 500; i++ {
		if resp, err := http.Get(url); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode < 500 {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.Fatalf("%s never answered", url)
}

func freePortB(b *testing.B) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port
}

// rssKB is a process's resident memory now.
func rssKB(pid int) int {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return n
		}
	}
	return 0
}

// BenchmarkFirstWarmAfterCold times the invocation that follows a cold
// start at once, as a user's second request does, against its floor: a
// warm invocation of the same kind of instance in its steady state. The
// interpreted runtimes showed it (make demo: 12-19 ms against about 1 ms).
func BenchmarkFirstWarmAfterCold(b *testing.B) {
	const event = `{"name":"bench"}`
	for _, rt := range []struct{ name, handler, dir, flag, interpreter string }{
		{"python3", "app.handler", "../../examples/functions/hello-python", "-python", "python3"},
		{"nodejs", "index.handler", "../../examples/functions/hello-node", "-node", "node"},
	} {
		root, _ := filepath.Abs(rt.dir)
		args := []string{"-function", "bench", "-runtime", rt.name, "-handler", rt.handler, "-task-root", root, "-memory-mb", "256",
			rt.flag, interpreter(b, rt.interpreter)}
		b.Run(rt.name+"/steady-warm", func(b *testing.B) {
			h := startHostB(b, args...)
			for range 20 {
				post(b, h.url+"/invoke", event)
			}
			b.ResetTimer()
			for range b.N {
				post(b, h.url+"/invoke", event)
			}
		})
		b.Run(rt.name+"/first-warm-after-cold", func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				h := startHostB(b, args...)
				post(b, h.url+"/invoke", event) // the cold start
				b.StartTimer()
				post(b, h.url+"/invoke", event)
				b.StopTimer()
				_ = h.cmd.Process.Kill()
				_ = h.cmd.Wait()
				b.StartTimer()
			}
		})
	}
}

// post sends one invocation on a new connection, as a caller does after
// a pause.
func post(b *testing.B, url, body string) {
	b.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("%s answered %s", url, resp.Status)
	}
}
