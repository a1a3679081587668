package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"syscall"
	"time"
)

// MaxPayloadBytes is the synchronous payload limit: 6 MB, as on Lambda.
const MaxPayloadBytes = 6 * 1024 * 1024

// timeoutMargin is how much longer than the host the gateway waits, so the
// host's own timeout answer normally arrives first.
const timeoutMargin = time.Second

// maxQueueWait bounds how long a request waits for an instance.
const maxQueueWait = 30 * time.Second

// outcome of one invocation, for metering and the access log.
type outcome struct {
	status       int
	errorType    string
	cold         bool
	durationMs   float64
	billedMs     float64
	memoryMB     float64
	maxMemoryMB  float64
	instanceCold bool
}

func (g *Gateway) serveInvoke(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	name := r.PathValue("name")
	f, ok := g.registry.Get(name)
	p, okPool := g.pool(name)
	if !ok || !okPool {
		writeError(w, http.StatusNotFound, "ResourceNotFoundException", fmt.Sprintf("function %q does not exist; check its name or apply its nimbus_function", name))
		return
	}
	if r.ContentLength > MaxPayloadBytes {
		writeError(w, http.StatusRequestEntityTooLarge, "RequestEntityTooLargeException", fmt.Sprintf("request payload of %d bytes exceeds the limit of %d bytes", r.ContentLength, MaxPayloadBytes))
		return
	}
	payload, err := io.ReadAll(io.LimitReader(r.Body, MaxPayloadBytes+1))
	switch {
	case err != nil:
		writeError(w, http.StatusBadRequest, "InvalidRequestContentException", "reading the request: "+err.Error())
		return
	case len(payload) > MaxPayloadBytes:
		writeError(w, http.StatusRequestEntityTooLarge, "RequestEntityTooLargeException", fmt.Sprintf("request payload exceeds the limit of %d bytes", MaxPayloadBytes))
		return
	case len(payload) == 0:
		payload = []byte("{}")
	case !json.Valid(payload):
		writeError(w, http.StatusBadRequest, "InvalidRequestContentException", "the event is not valid JSON")
		return
	}

	requestID := newRequestID()
	out := g.invoke(r.Context(), w, p, f, requestID, payload)
	g.metrics.observe(name, out)
	g.usage.add(name, out)
	g.log.Info("invoke", "function", name, "request_id", requestID, "status", out.status, "error_type", out.errorType,
		"cold", out.cold, "duration_ms", out.durationMs, "billed_ms", out.billedMs, "memory_mb", out.memoryMB,
		"max_memory_used_mb", out.maxMemoryMB, "latency_ms", float64(time.Since(start).Microseconds())/1000)
}

// invoke waits for an instance, forwards, and writes the answer. A request
// that an instance never started (refused connection, shutting down) is
// retried on another.
func (g *Gateway) invoke(ctx context.Context, w http.ResponseWriter, p *pool, f *Function, requestID string, payload []byte) outcome {
	deadline := time.Now().Add(f.TimeoutD)
	waitCtx, cancel := context.WithTimeout(ctx, min(maxQueueWait, f.TimeoutD+maxQueueWait))
	defer cancel()
	var out outcome
	for attempt := 0; attempt < 3; attempt++ {
		inst, cold, err := p.acquire(waitCtx)
		out.cold = out.cold || cold
		if err != nil {
			if errors.Is(err, ErrThrottled) {
				w.Header().Set("Retry-After", "1")
				writeError(w, http.StatusTooManyRequests, "TooManyRequestsException", err.Error())
				out.status, out.errorType = http.StatusTooManyRequests, "TooManyRequestsException"
				return out
			}
			writeError(w, http.StatusServiceUnavailable, "ServiceException", "the request ended before an instance was free: "+err.Error())
			out.status, out.errorType = http.StatusServiceUnavailable, "ServiceException"
			return out
		}
		// The function's own allowance starts once an instance has it.
		if cold {
			deadline = time.Now().Add(f.TimeoutD)
		}
		resp, err := g.forward(ctx, inst, requestID, deadline, payload)
		if err != nil {
			p.release(inst)
			var notStarted *notStartedError
			if errors.As(err, &notStarted) {
				p.forget(inst)
				continue
			}
			if errors.Is(err, context.DeadlineExceeded) {
				writeError(w, http.StatusGatewayTimeout, "Sandbox.Timedout",
					fmt.Sprintf("function %s did not answer within its timeout of %s", f.Name, f.TimeoutD))
				out.status, out.errorType = http.StatusGatewayTimeout, "Sandbox.Timedout"
				return out
			}
			writeError(w, http.StatusBadGateway, "ServiceException", "the instance failed mid-request: "+err.Error())
			out.status, out.errorType = http.StatusBadGateway, "ServiceException"
			return out
		}
		p.release(inst)
		return g.respond(w, resp, out)
	}
	writeError(w, http.StatusServiceUnavailable, "ServiceException", "no instance accepted the request after 3 attempts; retry")
	out.status, out.errorType = http.StatusServiceUnavailable, "ServiceException"
	return out
}

// notStartedError marks a request that no instance began to run.
type notStartedError struct{ err error }

func (e *notStartedError) Error() string { return e.err.Error() }

type hostAnswer struct {
	status int
	header http.Header
	body   []byte
}

func (g *Gateway) forward(ctx context.Context, inst *instance, requestID string, deadline time.Time, payload []byte) (*hostAnswer, error) {
	ctx, cancel := context.WithDeadline(ctx, deadline.Add(timeoutMargin))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+inst.addr+"/invoke", bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Nimbus-Request-Id", requestID)
	req.Header.Set("X-Nimbus-Deadline-Ms", strconv.FormatInt(deadline.UnixMilli(), 10))
	resp, err := g.client.Do(req)
	if err != nil {
		if isRefused(err) {
			return nil, &notStartedError{err}
		}
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	// An instance that is stopping, or busy despite our count, never ran it.
	if et := resp.Header.Get("X-Nimbus-Error-Type"); resp.StatusCode == http.StatusServiceUnavailable && et == "Host.ShuttingDown" ||
		resp.StatusCode == http.StatusTooManyRequests && et == "Host.Busy" {
		return nil, &notStartedError{fmt.Errorf("instance answered %s", et)}
	}
	return &hostAnswer{status: resp.StatusCode, header: resp.Header, body: body}, nil
}

// respond maps the host's answer to the API's: results pass through, the
// host's timeout becomes 504, other function errors keep Lambda's 200 with
// X-Nimbus-Function-Error.
func (g *Gateway) respond(w http.ResponseWriter, a *hostAnswer, out outcome) outcome {
	for _, h := range []string{"X-Nimbus-Request-Id", "X-Nimbus-Duration-Ms", "X-Nimbus-Billed-Duration-Ms", "X-Nimbus-Memory-Size-Mb",
		"X-Nimbus-Max-Memory-Used-Mb", "X-Nimbus-Init-Duration-Ms", "X-Nimbus-Cold-Start", "X-Nimbus-Function-Error", "X-Nimbus-Error-Type"} {
		if v := a.header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	out.durationMs = headerFloat(a.header, "X-Nimbus-Duration-Ms")
	out.billedMs = headerFloat(a.header, "X-Nimbus-Billed-Duration-Ms")
	out.memoryMB = headerFloat(a.header, "X-Nimbus-Memory-Size-Mb")
	out.maxMemoryMB = headerFloat(a.header, "X-Nimbus-Max-Memory-Used-Mb")
	out.instanceCold = a.header.Get("X-Nimbus-Cold-Start") == "true"
	out.errorType = a.header.Get("X-Nimbus-Error-Type")
	status := a.status
	if status == http.StatusOK && out.errorType == "Sandbox.Timedout" {
		status = http.StatusGatewayTimeout
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Nimbus-Cold", strconv.FormatBool(out.cold))
	w.WriteHeader(status)
	_, _ = w.Write(a.body)
	out.status = status
	return out
}

func headerFloat(h http.Header, key string) float64 {
	v, _ := strconv.ParseFloat(h.Get(key), 64)
	return v
}

// isRefused reports a connection the instance never accepted: the request
// certainly did not run, so it is safe to send elsewhere.
func isRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}

func newRequestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, errType, msg string) {
	writeJSONError(w, status, errType, msg)
}
