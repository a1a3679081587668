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

// apiError is a request the gateway answers itself.
type apiError struct {
	status  int
	errType string
	msg     string
}

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

// result is what run produced: a refusal, or the host's answer.
type result struct {
	refused *apiError
	answer  *hostAnswer
	out     outcome
}

type hostAnswer struct {
	status int
	header http.Header
	body   []byte
}

// readEvent reads and checks an event body.
func readEvent(r *http.Request) ([]byte, *apiError) {
	if r.ContentLength > MaxPayloadBytes {
		return nil, &apiError{http.StatusRequestEntityTooLarge, "RequestEntityTooLargeException",
			fmt.Sprintf("request payload of %d bytes exceeds the limit of %d bytes", r.ContentLength, MaxPayloadBytes)}
	}
	payload, err := io.ReadAll(io.LimitReader(r.Body, MaxPayloadBytes+1))
	switch {
	case err != nil:
		return nil, &apiError{http.StatusBadRequest, "InvalidRequestContentException", "reading the request: " + err.Error()}
	case len(payload) > MaxPayloadBytes:
		return nil, &apiError{http.StatusRequestEntityTooLarge, "RequestEntityTooLargeException", fmt.Sprintf("request payload exceeds the limit of %d bytes", MaxPayloadBytes)}
	case len(payload) == 0:
		return []byte("{}"), nil
	case !json.Valid(payload):
		return nil, &apiError{http.StatusBadRequest, "InvalidRequestContentException", "the event is not valid JSON"}
	}
	return payload, nil
}

// run invokes a function: find it, wait (bounded) for an instance, forward,
// and meter. A request that an instance never started (refused connection,
// shutting down) is retried on another.
func (g *Gateway) run(ctx context.Context, name string, payload []byte, tail bool) result {
	start := time.Now()
	requestID := newRequestID()
	res := g.runOnce(ctx, name, requestID, payload, tail)
	if res.refused != nil {
		res.out.status, res.out.errorType = res.refused.status, res.refused.errType
	}
	g.metrics.observe(name, res.out)
	g.usage.add(name, res.out)
	g.log.Info("invoke", "function", name, "request_id", requestID, "status", res.out.status, "error_type", res.out.errorType,
		"cold", res.out.cold, "duration_ms", res.out.durationMs, "billed_ms", res.out.billedMs, "memory_mb", res.out.memoryMB,
		"max_memory_used_mb", res.out.maxMemoryMB, "latency_ms", float64(time.Since(start).Microseconds())/1000)
	return res
}

func (g *Gateway) runOnce(ctx context.Context, name, requestID string, payload []byte, tail bool) result {
	f, ok := g.registry.Get(name)
	p, okPool := g.pool(name)
	if !ok || !okPool {
		return result{refused: &apiError{http.StatusNotFound, "ResourceNotFoundException",
			fmt.Sprintf("function %q does not exist; check its name or apply its nimbus_function", name)}}
	}
	release, refused := g.admit(f)
	if refused != nil {
		return result{refused: refused}
	}
	defer release()
	waitCtx, cancel := context.WithTimeout(ctx, maxQueueWait)
	defer cancel()
	var out outcome
	for attempt := 0; attempt < 3; attempt++ {
		inst, cold, err := p.acquire(waitCtx)
		out.cold = out.cold || cold
		if errors.Is(err, ErrThrottled) {
			return result{out: out, refused: &apiError{http.StatusTooManyRequests, "TooManyRequestsException", err.Error()}}
		}
		if err != nil {
			return result{out: out, refused: &apiError{http.StatusServiceUnavailable, "ServiceException", "the request ended before an instance was free: " + err.Error()}}
		}
		// The function's allowance starts once an instance has the request.
		deadline := time.Now().Add(f.TimeoutD)
		answer, err := g.forward(ctx, inst, requestID, deadline, payload, tail)
		p.release(inst)
		var notStarted *notStartedError
		switch {
		case errors.As(err, &notStarted):
			p.forget(inst)
			continue
		case errors.Is(err, context.DeadlineExceeded):
			return result{out: out, refused: &apiError{http.StatusGatewayTimeout, "Sandbox.Timedout",
				fmt.Sprintf("function %s did not answer within its timeout of %s", f.Name, f.TimeoutD)}}
		case err != nil:
			return result{out: out, refused: &apiError{http.StatusBadGateway, "ServiceException", "the instance failed mid-request: " + err.Error()}}
		}
		out.status = answer.status
		out.durationMs = headerFloat(answer.header, "X-Nimbus-Duration-Ms")
		out.billedMs = headerFloat(answer.header, "X-Nimbus-Billed-Duration-Ms")
		out.memoryMB = headerFloat(answer.header, "X-Nimbus-Memory-Size-Mb")
		out.maxMemoryMB = headerFloat(answer.header, "X-Nimbus-Max-Memory-Used-Mb")
		out.instanceCold = answer.header.Get("X-Nimbus-Cold-Start") == "true"
		out.errorType = answer.header.Get("X-Nimbus-Error-Type")
		return result{answer: answer, out: out}
	}
	return result{out: out, refused: &apiError{http.StatusServiceUnavailable, "ServiceException", "no instance accepted the request after 3 attempts; retry"}}
}

// notStartedError marks a request that no instance began to run.
type notStartedError struct{ err error }

func (e *notStartedError) Error() string { return e.err.Error() }

func (g *Gateway) forward(ctx context.Context, inst *instance, requestID string, deadline time.Time, payload []byte, tail bool) (*hostAnswer, error) {
	ctx, cancel := context.WithDeadline(ctx, deadline.Add(timeoutMargin))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+inst.addr+"/invoke", bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Nimbus-Request-Id", requestID)
	req.Header.Set("X-Nimbus-Deadline-Ms", strconv.FormatInt(deadline.UnixMilli(), 10))
	if tail {
		req.Header.Set("X-Nimbus-Log-Type", "Tail")
	}
	resp, err := g.client.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
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

// serveInvoke is the native API: results pass through with the host's
// accounting headers, the function's timeout is 504, other function errors
// keep Lambda's 200 with X-Nimbus-Function-Error.
func (g *Gateway) serveInvoke(w http.ResponseWriter, r *http.Request) {
	payload, bad := readEvent(r)
	if bad != nil {
		writeError(w, bad.status, bad.errType, bad.msg)
		return
	}
	res := g.run(r.Context(), r.PathValue("name"), payload, r.Header.Get("X-Nimbus-Log-Type") == "Tail")
	w.Header().Set("X-Nimbus-Cold", strconv.FormatBool(res.out.cold))
	if res.refused != nil {
		if res.refused.status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "1")
		}
		writeError(w, res.refused.status, res.refused.errType, res.refused.msg)
		return
	}
	a := res.answer
	for _, h := range []string{"X-Nimbus-Request-Id", "X-Nimbus-Duration-Ms", "X-Nimbus-Billed-Duration-Ms", "X-Nimbus-Memory-Size-Mb",
		"X-Nimbus-Max-Memory-Used-Mb", "X-Nimbus-Init-Duration-Ms", "X-Nimbus-Cold-Start", "X-Nimbus-Function-Error",
		"X-Nimbus-Error-Type", "X-Nimbus-Log-Result"} {
		if v := a.header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	status := a.status
	if status == http.StatusOK && res.out.errorType == "Sandbox.Timedout" {
		status = http.StatusGatewayTimeout
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(a.body)
}

func headerFloat(h http.Header, key string) float64 {
	v, _ := strconv.ParseFloat(h.Get(key), 64)
	return v
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
