package schedules

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/clients"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/refusal"
)

// A scheduled run retries only what never started: a function that timed
// out or failed ran once and must not run again.
func TestScheduledRunRetriesOnlyWhatNeverStarted(t *testing.T) {
	fast := DeliveryPolicy
	fast.WaitMin, fast.WaitMax = time.Millisecond, 5*time.Millisecond
	client := clients.NewHTTPClient(fast, nil, nil)
	cases := []struct {
		name     string
		answers  []func(http.ResponseWriter) // the gateway's answers, in turn; the last repeats
		wantReqs int32
		wantErr  string
	}{
		{"timeout is final", []func(http.ResponseWriter){refused(http.StatusGatewayTimeout, protocol.ErrTimeout)}, 1, "504"},
		{"function error is final", []func(http.ResponseWriter){functionError}, 1, "failed"},
		{"a 500 is final", []func(http.ResponseWriter){plain(http.StatusInternalServerError)}, 1, "500"},
		{"a 503 not marked as not started is final", []func(http.ResponseWriter){plain(http.StatusServiceUnavailable)}, 1, "503"},
		{"throttled, then delivered", []func(http.ResponseWriter){refused(http.StatusTooManyRequests, "TooManyRequestsException"), plain(http.StatusOK)}, 2, ""},
		{"gateway syncing, then delivered", []func(http.ResponseWriter){refused(http.StatusServiceUnavailable, "ServiceException"), plain(http.StatusOK)}, 2, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				i := int(n.Add(1)) - 1
				tc.answers[min(i, len(tc.answers)-1)](w)
			}))
			defer srv.Close()
			err := ScheduledRun{GatewayURL: srv.URL, Function: "f", Schedule: "s", LaunchID: "s/periodic-1"}.Deliver(context.Background(), client)
			if got := n.Load(); got != tc.wantReqs {
				t.Errorf("the gateway saw %d requests, want %d", got, tc.wantReqs)
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("delivery failed: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("delivery error %v, want one mentioning %q", err, tc.wantErr)
			}
		})
	}

	// A gateway that is not there yet: every attempt is a refused
	// connection, which never started anything, so it is retried.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	if err := (ScheduledRun{GatewayURL: "http://" + addr, Function: "f"}).Deliver(context.Background(), client); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("delivery to a closed port: %v, want connection refused after retries", err)
	}
}

func refused(status int, errType string) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) { refusal.Write(w, refusal.Native, refusal.New(status, errType, "refused")) }
}

func plain(status int) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) { w.WriteHeader(status) }
}

func functionError(w http.ResponseWriter) {
	w.Header().Set(protocol.HeaderFunctionError, "Unhandled")
	_, _ = w.Write([]byte(`{"errorMessage":"boom"}`))
}
