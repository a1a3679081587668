package httpclient

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

var fast = RetryPolicy{MaxRetries: 2, WaitMin: time.Millisecond, WaitMax: 5 * time.Millisecond, DialTimeout: time.Second, Timeout: 5 * time.Second}

// The waits between attempts are go-retryablehttp's own, Retry-After
// included: only their source changed.
func TestRetryWaitIsRetryableHTTPsBackoff(t *testing.T) {
	lo, hi := 200*time.Millisecond, 1500*time.Millisecond
	asked := &http.Response{StatusCode: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {"7"}}}
	ignored := &http.Response{StatusCode: http.StatusBadGateway, Header: http.Header{"Retry-After": {"7"}}}
	for attempt := range 6 {
		for _, resp := range []*http.Response{nil, {StatusCode: http.StatusServiceUnavailable, Header: http.Header{}}, asked, ignored} {
			want := retryablehttp.DefaultBackoff(lo, hi, attempt, resp)
			if got := retryWait(lo, hi, attempt, resp); got != want {
				t.Errorf("attempt %d, response %v: wait %v, want %v", attempt, resp, got, want)
			}
		}
	}
	if got := retryWait(lo, hi, 0, asked); got != 7*time.Second {
		t.Errorf("a 429 asking for 7 s waits %v", got)
	}
}

func TestNewRetriesTransientFailuresOnly(t *testing.T) {
	for status, want := range map[int]int32{http.StatusOK: 1, http.StatusNotFound: 1, http.StatusServiceUnavailable: 3} {
		var hits atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			hits.Add(1)
			w.WriteHeader(status)
		}))
		resp, err := New(fast, nil, nil).Get(srv.URL)
		if err != nil {
			t.Fatalf("%d: %v", status, err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != status || hits.Load() != want {
			t.Errorf("%d: answered %d after %d attempts, want the server's answer after %d", status, resp.StatusCode, hits.Load(), want)
		}
		srv.Close()
	}
}

// A server that never answers costs each attempt its Timeout, not a hang.
func TestTimeoutBoundsEachAttempt(t *testing.T) {
	release := make(chan struct{})
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	p := fast
	p.MaxRetries, p.Timeout = 1, 50*time.Millisecond
	start := time.Now()
	resp, err := New(p, nil, nil).Get(srv.URL)
	if err == nil {
		_ = resp.Body.Close()
		t.Fatal("a server that never answers should fail the request")
	}
	if d := time.Since(start); d > 3*time.Second || hits.Load() != 2 {
		t.Errorf("%d attempts in %v, want 2 attempts of 50 ms", hits.Load(), d)
	}
	if DefaultRetryPolicy.Timeout < 10*time.Minute+10*time.Minute/16 {
		t.Errorf("DefaultRetryPolicy.Timeout %v would cut Consul's longest blocking query short", DefaultRetryPolicy.Timeout)
	}
}

func TestPlainSendsOnceAndHonoursItsTimeout(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path == "/slow" {
			<-r.Context().Done()
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	c := NewPlain(Plain{Timeout: 50 * time.Millisecond, MaxIdleConnsPerHost: 4, DisableCompression: true})
	resp, err := c.Post(srv.URL, "text/plain", strings.NewReader("once"))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || hits.Load() != 1 {
		t.Errorf("answered %d after %d requests, want 503 after exactly one", resp.StatusCode, hits.Load())
	}
	slow, err := c.Get(srv.URL + "/slow")
	if err == nil {
		_ = slow.Body.Close()
	}
	if err == nil || !errors.Is(err, context.DeadlineExceeded) && !strings.Contains(err.Error(), "Timeout") {
		t.Errorf("want the client's timeout, got %v", err)
	}
	tr := c.Transport.(*http.Transport)
	if tr.Proxy != nil || !tr.DisableCompression || tr.MaxIdleConnsPerHost != 4 || tr.IdleConnTimeout != 90*time.Second {
		t.Errorf("transport %+v: want no proxy, no compression, 4 idle per host, 90 s idle", tr)
	}
}
