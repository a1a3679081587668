package host

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
)

// Handler serves the gateway-facing protocol (internal/protocol): POST /invoke,
// GET /healthz and GET /metrics.
func (h *Host) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /invoke", h.serveInvoke)
	mux.HandleFunc("GET /healthz", h.serveHealth)
	mux.Handle("GET /metrics", h.metrics.handler())
	return mux
}

func (h *Host) serveHealth(w http.ResponseWriter, r *http.Request) {
	if raw := r.URL.Query().Get(protocol.QueryHealthWait); raw != "" {
		wait, err := time.ParseDuration(raw)
		if err != nil || wait < 0 {
			WriteError(w, http.StatusBadRequest, protocol.ErrInvalidRequest, fmt.Sprintf("%s=%q is not a duration such as 2s", protocol.QueryHealthWait, raw))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), min(wait, protocol.MaxHealthWait))
		h.WaitReady(ctx)
		cancel()
	}
	ready, status := h.Ready()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(protocol.HeaderProtocol, protocol.Version)
	if !ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(map[string]any{
		"ready": ready, "status": status, "function": h.cfg.FunctionName, "runtime": h.cfg.Runtime,
	})
}

func (h *Host) serveInvoke(w http.ResponseWriter, r *http.Request) {
	if key := h.cfg.InstanceKey; key != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get(protocol.HeaderInstanceKey)), []byte(key)) != 1 {
		w.Header().Set("Connection", "close")
		WriteError(w, http.StatusUnauthorized, protocol.ErrTypeUnauthorized,
			"this instance runs invocations from the Nimbus gateway only: call the gateway's invoke API")
		return
	}
	if r.ContentLength > protocol.MaxPayloadBytes {
		WriteError(w, http.StatusRequestEntityTooLarge, protocol.ErrRequestTooLarge,
			fmt.Sprintf("request payload of %d bytes exceeds the limit of %d bytes", r.ContentLength, protocol.MaxPayloadBytes))
		return
	}
	payload, tooLarge, err := readLimited(r.Body)
	switch {
	case err != nil:
		WriteError(w, http.StatusBadRequest, protocol.ErrInvalidRequest, "reading the request: "+err.Error())
		return
	case tooLarge:
		WriteError(w, http.StatusRequestEntityTooLarge, protocol.ErrRequestTooLarge,
			fmt.Sprintf("request payload exceeds the limit of %d bytes", protocol.MaxPayloadBytes))
		return
	}
	req := Request{
		ID:            r.Header.Get(protocol.HeaderRequestID),
		Payload:       payload,
		TraceID:       r.Header.Get(protocol.HeaderTraceID),
		ClientContext: r.Header.Get(protocol.HeaderClientContext),
		Identity:      r.Header.Get(protocol.HeaderIdentity),
		Qualifier:     qualifierOf(r.Header.Get(protocol.HeaderQualifier)),
	}
	if raw := r.Header.Get(protocol.HeaderDeadlineMs); raw != "" {
		msec, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			WriteError(w, http.StatusBadRequest, protocol.ErrInvalidRequest, fmt.Sprintf("%s %q is not Unix milliseconds", protocol.HeaderDeadlineMs, raw))
			return
		}
		req.Deadline = time.UnixMilli(msec)
		if time.Until(req.Deadline) <= 0 {
			WriteError(w, http.StatusBadRequest, protocol.ErrInvalidRequest, fmt.Sprintf("%s is already past", protocol.HeaderDeadlineMs))
			return
		}
	}
	switch r.Header.Get(protocol.HeaderInvocationType) {
	case "", protocol.InvocationRequestResponse, protocol.InvocationEvent:
	case protocol.InvocationDryRun:
		w.Header().Set(protocol.HeaderProtocol, protocol.Version)
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		WriteError(w, http.StatusBadRequest, protocol.ErrInvalidRequest,
			fmt.Sprintf("%s must be RequestResponse, Event or DryRun", protocol.HeaderInvocationType))
		return
	}

	res, err := h.Invoke(req)
	switch {
	case errors.Is(err, ErrBusy):
		w.Header().Set("Retry-After", "1")
		WriteError(w, http.StatusTooManyRequests, protocol.ErrTypeBusy,
			"the instance is already serving as many invocations as it can; retry on another instance or later")
		return
	case errors.Is(err, ErrClosing):
		WriteError(w, http.StatusServiceUnavailable, protocol.ErrShuttingDown, "the instance is shutting down; retry on another instance")
		return
	case err != nil:
		WriteError(w, http.StatusInternalServerError, "Host.Error", err.Error())
		return
	}

	hdr := w.Header()
	hdr.Set(protocol.HeaderProtocol, protocol.Version)
	hdr.Set(protocol.HeaderRequestID, res.RequestID)
	hdr.Set(protocol.HeaderDurationMs, strconv.FormatFloat(ms(res.Duration), 'f', 2, 64))
	hdr.Set(protocol.HeaderBilledDurationMs, strconv.FormatInt(res.BilledDuration.Milliseconds(), 10))
	hdr.Set(protocol.HeaderMemorySizeMB, strconv.Itoa(res.MemorySizeMB))
	hdr.Set(protocol.HeaderMaxMemoryUsedMB, strconv.Itoa(res.MaxMemoryMB))
	hdr.Set(protocol.HeaderColdStart, strconv.FormatBool(res.ColdStart))
	if res.InitDuration > 0 {
		hdr.Set(protocol.HeaderInitDurationMs, strconv.FormatFloat(ms(res.InitDuration), 'f', 2, 64))
	}
	if r.Header.Get(protocol.HeaderLogType) == "Tail" {
		hdr.Set(protocol.HeaderLogResult, base64.StdEncoding.EncodeToString([]byte(res.LogTail)))
	}
	body := res.Body
	if res.Err != nil {
		hdr.Set(protocol.HeaderFunctionError, "Unhandled")
		hdr.Set(protocol.HeaderErrorType, res.Err.ErrorType)
		body = res.Err.Marshal()
		hdr.Set("Content-Type", "application/json")
	} else {
		hdr.Set("Content-Type", "application/json")
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// qualifierOf is the qualifier a request names, or "" for one that no
// valid qualifier could be ($LATEST, a version number or an alias name),
// which the handler's ARN then leaves out.
func qualifierOf(q string) string {
	if len(q) > 128 || strings.Trim(q, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_$") != "" {
		return ""
	}
	return q
}
