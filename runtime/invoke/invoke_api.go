package invoke

import (
	"net/http"
	"strconv"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/auth"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/refusal"
)

// passedHeaders are the host's answer headers that the native API passes
// on to its caller.
var passedHeaders = []string{
	protocol.HeaderRequestID, protocol.HeaderDurationMs, protocol.HeaderBilledDurationMs, protocol.HeaderMemorySizeMB,
	protocol.HeaderMaxMemoryUsedMB, protocol.HeaderInitDurationMs, protocol.HeaderColdStart, protocol.HeaderFunctionError,
	protocol.HeaderErrorType, protocol.HeaderLogResult,
}

// ServeInvoke is the native API: results pass through with the host's
// accounting headers, the function's timeout is 504, other function errors
// keep Lambda's 200 with X-Nimbus-Function-Error.
func (s *Service) ServeInvoke(w http.ResponseWriter, r *http.Request) {
	c, refused := s.auth.Identify(r, auth.NativeCredentials)
	if refused != nil {
		refusal.Write(w, refusal.Native, refused)
		return
	}
	name, qualifier, bad := Target(r.PathValue("name"), r.URL.Query().Get("qualifier"))
	if bad != nil {
		refusal.Write(w, refusal.Native, bad)
		return
	}
	payload, release, bad := s.readEvent(w, r, c)
	if bad != nil {
		refusal.Write(w, refusal.Native, bad)
		return
	}
	defer release()
	WriteNative(w, s.Run(r.Context(), c, model.Qualify(name, qualifier), payload, r.Header.Get(protocol.HeaderLogType) == "Tail"))
}

// WriteNative answers an invocation in the native API's shape.
func WriteNative(w http.ResponseWriter, inv *Invocation) {
	w.Header().Set("X-Nimbus-Cold", strconv.FormatBool(inv.Out.Cold))
	if inv.Out.ColdPath != "" {
		// Where the cold start's instance came from: pool or nomad.
		w.Header().Set("X-Nimbus-Cold-Path", inv.Out.ColdPath)
	}
	if v := inv.ExecutedVersion(); v != "" {
		w.Header().Set(headerExecutedVersion, v)
	}
	if inv.Refused != nil {
		refusal.Write(w, refusal.Native, inv.Refused)
		return
	}
	a := inv.Answer
	for _, h := range passedHeaders {
		if v := a.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	status := a.Status
	if status == http.StatusOK && inv.Out.ErrorType == protocol.ErrTimeout {
		status = http.StatusGatewayTimeout
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(a.Body) //nolint:gosec // the function's answer, served as application/json as Lambda's Invoke API serves it
}
