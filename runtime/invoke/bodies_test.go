package invoke

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/auth"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/instances"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/metering"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/registry"
)

// rawRequest opens a connection to srv and sends a POST whose headers
// announce length bytes of body, followed by only sent of them.
func rawRequest(t *testing.T, srv *httptest.Server, path string, length, sent int) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	head := "POST " + path + " HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(length) + "\r\n\r\n"
	if _, err := conn.Write([]byte(head + strings.Repeat(" ", sent))); err != nil {
		t.Fatal(err)
	}
	return conn
}

// answerOf reads the status and headers answered on conn, waiting at most
// wait.
func answerOf(t *testing.T, conn net.Conn, wait time.Duration) (status int, header http.Header, err error) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, nil, err
	}
	_ = resp.Body.Close()
	return resp.StatusCode, resp.Header, nil
}

// syncedService is a quiet request path that has read an empty Consul:
// no functions, routes or keys.
func syncedService(opts Options, authOpts auth.Options) *Service {
	opts.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := registry.New(nil, opts.Log, nil)
	reg.Apply(kvstore.RoutesPrefix, nil)
	reg.Apply(kvstore.FunctionsPrefix, nil)
	reg.Apply(kvstore.AccessKeysPrefix, nil)
	opts.Registry = reg
	opts.Auth = auth.New(authOpts, reg, opts.Log)
	opts.Instances = instances.New(instances.Options{Limits: reg, Log: opts.Log})
	opts.Metrics, opts.Usage = metering.NewMetrics(), metering.NewUsage()
	return New(opts)
}

// handler serves the native invoke API, as the gateway does.
func (s *Service) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/functions/{name}/invoke", s.ServeInvoke)
	return mux
}

// The bodies the gateway holds at once are bounded: while slow clients hold
// the budget, a new body is refused at once with 503 and Retry-After,
// before it is read; when they are done, it is accepted again.
func TestBodyBudgetRefusesWhatDoesNotFit(t *testing.T) {
	g := syncedService(Options{BodyBudget: 8 << 20, BodyTimeout: time.Minute}, auth.Options{Open: true})
	srv := httptest.NewServer(g.handler())
	defer srv.Close()

	slow := rawRequest(t, srv, "/v1/functions/f/invoke", 6<<20, 10) // holds 6 MB of budget
	time.Sleep(200 * time.Millisecond)
	next := rawRequest(t, srv, "/v1/functions/f/invoke", 6<<20, 0)
	status, header, err := answerOf(t, next, 5*time.Second)
	if err != nil {
		t.Fatalf("a body beyond the budget got no answer: %v", err)
	}
	if status != http.StatusServiceUnavailable || header.Get("Retry-After") == "" {
		t.Fatalf("a body beyond the budget: %d (Retry-After %q); want 503 with Retry-After", status, header.Get("Retry-After"))
	}
	_ = slow.Close() // the slow client gives up: its share returns
	time.Sleep(200 * time.Millisecond)
	w := httptest.NewRecorder()
	g.handler().ServeHTTP(w, httptest.NewRequest("POST", "/v1/functions/f/invoke", strings.NewReader(strings.Repeat(" ", 6<<20))))
	if w.Code == http.StatusServiceUnavailable {
		t.Errorf("the budget did not come back after the slow client left: %d %s", w.Code, w.Body.String())
	}
	if g.bodies.held != 0 {
		t.Errorf("%d bytes of budget still held after every request ended", g.bodies.held)
	}
}

// A client that sends its body slowly is cut off after the body timeout
// with a 400, rather than holding its connection for ever.
func TestSlowBodyIsCutOff(t *testing.T) {
	g := syncedService(Options{BodyTimeout: 300 * time.Millisecond}, auth.Options{Open: true})
	srv := httptest.NewServer(g.handler())
	defer srv.Close()
	conn := rawRequest(t, srv, "/v1/functions/f/invoke", 1000, 10)
	status, _, err := answerOf(t, conn, 10*time.Second)
	if err != nil {
		t.Fatalf("a slow body held its connection: %v", err)
	}
	if status != http.StatusBadRequest {
		t.Errorf("a slow body answered %d, want 400", status)
	}
}

// A caller refused before its body is read cannot keep the connection by
// never sending the body: the gateway answers and closes it within
// moments, as it does for a slow body.
func TestRefusedCallerCannotHoldItsConnection(t *testing.T) {
	g := syncedService(Options{BodyTimeout: time.Minute}, auth.Options{})
	srv := httptest.NewServer(g.handler())
	defer srv.Close()
	conn := rawRequest(t, srv, "/v1/functions/f/invoke", 1000, 10)
	status, _, err := answerOf(t, conn, 5*time.Second)
	if err != nil || status != http.StatusUnauthorized {
		t.Fatalf("a caller without credentials: %d %v; want 401 at once", status, err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("the refused caller's connection stayed open (%v); the gateway must close it", err)
	}
}

// Slow senders who have not proven who they are (SigV4 before its check,
// public routes) hold at most half the budget, and one address at most a
// quarter: a caller whose bearer token is checked still gets through.
func TestUnprovenBodiesHoldAtMostTheirShare(t *testing.T) {
	b := &bodyBudget{max: 64 << 20}
	six := int64(6 << 20)
	n := 0
	for b.take(six, "198.51.100.7") {
		n++
	}
	if n != 2 {
		t.Errorf("one address held %d six-megabyte bodies, want 2 (a quarter of 64 MB)", n)
	}
	for _, addr := range []string{"198.51.100.8", "198.51.100.9", "198.51.100.10"} {
		for b.take(six, addr) {
		}
	}
	if b.unproven > b.max/2 {
		t.Errorf("unproven senders hold %d bytes, more than half of %d", b.unproven, b.max)
	}
	if !b.take(six, "") {
		t.Fatal("a proven sender was refused while unproven ones hold only their share")
	}
	b.give(six, "")
	b.give(six, "198.51.100.7")
	if !b.take(six, "198.51.100.7") {
		t.Error("an address that gave back a body cannot take one again")
	}
}

func TestOnlyProvenCallersSkipTheUnprovenShare(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	r.RemoteAddr = "198.51.100.7:4567"
	if got := unprovenSource(r, nil); got != "198.51.100.7" {
		t.Errorf("an unknown caller's source is %q, want its address", got)
	}
	if got := unprovenSource(r, auth.Internal("public route r1")); got != "198.51.100.7" {
		t.Errorf("a public route's caller counts as %q, want its address", got)
	}
}
