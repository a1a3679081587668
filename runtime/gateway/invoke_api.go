package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
)

// readPayload reads a request body whole, within the payload limit (413
// beyond it). A body that ends early, such as when the client goes away
// mid-upload, is a 400: it never reaches a function as if complete.
func readPayload(r *http.Request) ([]byte, *apiError) {
	tooLarge := func(msg string) *apiError {
		return &apiError{http.StatusRequestEntityTooLarge, protocol.ErrRequestTooLarge, msg}
	}
	if r.ContentLength > protocol.MaxPayloadBytes {
		return nil, tooLarge(fmt.Sprintf("request payload of %d bytes exceeds the limit of %d bytes", r.ContentLength, protocol.MaxPayloadBytes))
	}
	payload, err := io.ReadAll(io.LimitReader(r.Body, protocol.MaxPayloadBytes+1))
	switch {
	case err != nil:
		return nil, &apiError{http.StatusBadRequest, protocol.ErrInvalidRequest, "reading the request body failed before its end: " + err.Error()}
	case len(payload) > protocol.MaxPayloadBytes:
		return nil, tooLarge(fmt.Sprintf("request payload exceeds the limit of %d bytes", protocol.MaxPayloadBytes))
	}
	return payload, nil
}

// readEvent reads and checks an event body: JSON, or empty for {}.
func readEvent(r *http.Request) ([]byte, *apiError) {
	payload, bad := readPayload(r)
	switch {
	case bad != nil:
		return nil, bad
	case len(payload) == 0:
		return []byte("{}"), nil
	case !json.Valid(payload):
		return nil, &apiError{http.StatusBadRequest, protocol.ErrInvalidRequest, "the event is not valid JSON"}
	}
	return payload, nil
}

// passedHeaders are the host's answer headers that the native API passes
// on to its caller.
var passedHeaders = []string{
	protocol.HeaderRequestID, protocol.HeaderDurationMs, protocol.HeaderBilledDurationMs, protocol.HeaderMemorySizeMB,
	protocol.HeaderMaxMemoryUsedMB, protocol.HeaderInitDurationMs, protocol.HeaderColdStart, protocol.HeaderFunctionError,
	protocol.HeaderErrorType, protocol.HeaderLogResult,
}

// serveInvoke is the native API: results pass through with the host's
// accounting headers, the function's timeout is 504, other function errors
// keep Lambda's 200 with X-Nimbus-Function-Error.
func (g *Gateway) serveInvoke(w http.ResponseWriter, r *http.Request) {
	payload, bad := readEvent(r)
	if bad != nil {
		refuse(w, nativeDialect, bad)
		return
	}
	inv := g.run(r.Context(), r.PathValue("name"), payload, r.Header.Get(protocol.HeaderLogType) == "Tail")
	w.Header().Set("X-Nimbus-Cold", strconv.FormatBool(inv.out.cold))
	if inv.refused != nil {
		refuse(w, nativeDialect, inv.refused)
		return
	}
	a := inv.answer
	for _, h := range passedHeaders {
		if v := a.header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	status := a.status
	if status == http.StatusOK && inv.out.errorType == protocol.ErrTimeout {
		status = http.StatusGatewayTimeout
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(a.body)
}
