package invoke

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"syscall"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/instances"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/metering"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/refusal"
)

// timeoutMargin is how much longer than the host the gateway waits, so the
// host's own timeout answer normally arrives first.
const timeoutMargin = time.Second

// maxQueueWait bounds how long a request waits for an instance.
const maxQueueWait = 30 * time.Second

// maxAnswerBytes bounds what the gateway reads of an instance's answer: a
// result of Lambda's 6 MB, and room for the host's error shape around it.
const maxAnswerBytes = protocol.MaxPayloadBytes + 64<<10

// errAnswerTooLarge is an instance that answered more than any result
// may be.
var errAnswerTooLarge = fmt.Errorf("the instance answered more than %d bytes, more than any result may be", maxAnswerBytes)

// forwardAttempts bounds the instances one invocation is offered to.
const forwardAttempts = 3

// forward waits (bounded) for an instance, sends it the invocation and
// reads its answer. A request that an instance never started (refused
// connection, shutting down, busy) is offered to another.
func (s *Service) forward(ctx context.Context, inv *Invocation) {
	f, p := inv.Fn, inv.Pool
	waitCtx, cancel := context.WithTimeout(ctx, maxQueueWait)
	defer cancel()
	waited := false
	for range forwardAttempts {
		inst, cold, err := p.Acquire(waitCtx)
		waited = waited || cold
		if errors.Is(err, instances.ErrThrottled) {
			inv.Refused = refusal.New(http.StatusTooManyRequests, "TooManyRequestsException", err.Error())
			return
		}
		if errors.Is(err, instances.ErrScaleDenied) {
			// Not the caller's fault and not worth a retry: no Retry-After.
			inv.Refused = refusal.New(http.StatusInternalServerError, "ServiceException", err.Error())
			return
		}
		if errors.Is(err, instances.ErrNomadUnavailable) {
			// Not the caller's fault, and worth a retry: 503 with Retry-After.
			inv.Refused = refusal.New(http.StatusServiceUnavailable, "ServiceException", err.Error())
			return
		}
		if err != nil {
			inv.Refused = refusal.New(http.StatusServiceUnavailable, "ServiceException", "the request ended before an instance was free: "+err.Error())
			return
		}
		// The function's allowance starts once an instance has the request.
		// The slot is the instance's until it answers, even if the caller
		// goes away first: the host runs the invocation to its end, and a
		// slot freed early would send the next request to a busy instance.
		deadline := time.Now().Add(f.TimeoutD)
		answer, err := s.send(context.WithoutCancel(ctx), inst, inv, deadline)
		p.Release(inst)
		var notStarted *notStartedError
		switch {
		case errors.As(err, &notStarted) && notStarted.busy:
			// Busy is busy, not gone: the instance stays in the pool.
			continue
		case errors.As(err, &notStarted):
			p.Forget(inst)
			continue
		case errors.Is(err, context.DeadlineExceeded):
			inv.Refused = refusal.New(http.StatusGatewayTimeout, protocol.ErrTimeout,
				fmt.Sprintf("function %s did not answer within its timeout of %s", f.Name, f.TimeoutD))
			return
		case err != nil:
			inv.Refused = refusal.New(http.StatusBadGateway, "ServiceException", "the instance failed mid-request: "+err.Error())
			return
		}
		inv.Answer = answer
		inv.Out.Status = answer.Status
		inv.Out.DurationMs = headerFloat(answer.Header, protocol.HeaderDurationMs)
		inv.Out.BilledMs = headerFloat(answer.Header, protocol.HeaderBilledDurationMs)
		inv.Out.MemoryMB = headerFloat(answer.Header, protocol.HeaderMemorySizeMB)
		inv.Out.MaxMemoryMB = headerFloat(answer.Header, protocol.HeaderMaxMemoryUsedMB)
		inv.Out.InstanceCold = answer.Header.Get(protocol.HeaderColdStart) == "true"
		// A cold start is a wait for an instance whose handler started for
		// this request: a request that queued for a busy instance, or was
		// refused before any instance answered, is not one.
		if waited && inv.Out.InstanceCold {
			inv.Out.Cold, inv.Out.ColdPath = true, metering.ColdPathNomad
			if inst.FromWarmPool() {
				inv.Out.ColdPath = metering.ColdPathPool
			}
		}
		inv.Out.ErrorType = answer.Header.Get(protocol.HeaderErrorType)
		return
	}
	inv.Refused = refusal.New(http.StatusServiceUnavailable, "ServiceException",
		fmt.Sprintf("no instance accepted the request after %d attempts; retry", forwardAttempts))
}

// notStartedError marks a request that no instance began to run; busy
// says the instance is alive but had no free slot.
type notStartedError struct {
	err  error
	busy bool
}

func (e *notStartedError) Error() string { return e.err.Error() }

// send is one POST /invoke to an instance (protocol.go's contract).
func (s *Service) send(ctx context.Context, inst *instances.Instance, inv *Invocation, deadline time.Time) (*HostAnswer, error) {
	ctx, cancel := context.WithDeadline(ctx, deadline.Add(timeoutMargin))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+inst.Addr()+"/invoke", bytes.NewReader(inv.Payload))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(protocol.HeaderRequestID, inv.RequestID)
	req.Header.Set(protocol.HeaderDeadlineMs, strconv.FormatInt(deadline.UnixMilli(), 10))
	if inv.Tail {
		req.Header.Set(protocol.HeaderLogType, "Tail")
	}
	if inv.Qualifier != "" {
		req.Header.Set(protocol.HeaderQualifier, inv.Qualifier)
	}
	if inst.Key() != "" {
		req.Header.Set(protocol.HeaderInstanceKey, inst.Key())
	}
	resp, err := s.client.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, &notStartedError{err: err}
		}
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	return readAnswer(resp)
}

// readAnswer reads an instance's answer to POST /invoke. The host refuses
// results over 6 MB itself, but the handler shares its uid and could
// answer in its place: the gateway reads no more than a result may be,
// whatever the instance sends.
func readAnswer(resp *http.Response) (*HostAnswer, error) {
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxAnswerBytes {
		return nil, errAnswerTooLarge
	}
	// An instance that is stopping, or busy despite our count, never ran it.
	switch et := resp.Header.Get(protocol.HeaderErrorType); {
	case resp.StatusCode == http.StatusServiceUnavailable && et == protocol.ErrShuttingDown:
		return nil, &notStartedError{err: fmt.Errorf("instance answered %s", et)}
	case resp.StatusCode == http.StatusTooManyRequests && et == protocol.ErrTypeBusy:
		return nil, &notStartedError{err: fmt.Errorf("instance answered %s", et), busy: true}
	case resp.StatusCode == http.StatusUnauthorized && et == protocol.ErrTypeUnauthorized:
		// Not the instance the gateway read the key of (a new allocation at
		// the same address): never started; forget it.
		return nil, &notStartedError{err: fmt.Errorf("instance answered %s", et)}
	}
	return &HostAnswer{Status: resp.StatusCode, Header: resp.Header, Body: body}, nil
}

func headerFloat(h http.Header, key string) float64 {
	v, _ := strconv.ParseFloat(h.Get(key), 64)
	return v
}
