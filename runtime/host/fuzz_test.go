package host

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
)

// A handler's error report on the Runtime API (…/invocation/{id}/error,
// …/init/error) may be anything: it always becomes an error with a type,
// and never panics the host.
func FuzzRuntimeAPIErrorReport(f *testing.F) {
	f.Add([]byte(`{"errorMessage":"boom","errorType":"ValueError"}`), "")
	f.Add([]byte("not json"), "Custom.Error")
	f.Add([]byte(`{}`), "")
	f.Fuzz(func(t *testing.T, body []byte, errType string) {
		r := httptest.NewRequest(http.MethodPost, runtimeAPIPrefix+"/invocation/x/error", strings.NewReader(string(body)))
		if errType != "" && !strings.ContainsAny(errType, "\r\n\x00") {
			r.Header.Set("Lambda-Runtime-Function-Error-Type", errType)
		}
		eb := decodeError(r, "Unhandled")
		if eb == nil || eb.ErrorType == "" {
			t.Fatalf("no error type from %q", body)
		}
	})
}

// The gateway-facing /invoke checks its headers and body before anything
// runs: whatever they hold, a dry run answers 204 or a 4xx, never a panic.
func FuzzInvokeRequest(f *testing.F) {
	f.Add([]byte(`{}`), "1900000000000")
	f.Add([]byte("\xff"), "soon")
	f.Add([]byte(""), "-1")
	h := &Host{}
	f.Fuzz(func(t *testing.T, body []byte, deadline string) {
		r := httptest.NewRequest(http.MethodPost, "/invoke", strings.NewReader(string(body)))
		r.Header.Set(protocol.HeaderInvocationType, protocol.InvocationDryRun)
		if !strings.ContainsAny(deadline, "\r\n\x00") {
			r.Header.Set(protocol.HeaderDeadlineMs, deadline)
		}
		w := httptest.NewRecorder()
		h.serveInvoke(w, r)
		if w.Code != http.StatusNoContent && (w.Code < 400 || w.Code > 499) {
			t.Fatalf("answered %d to %q with deadline %q", w.Code, body, deadline)
		}
	})
}
