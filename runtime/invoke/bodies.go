package invoke

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/auth"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/refusal"
)

// Defaults of Options.BodyBudget and Options.BodyTimeout.
const (
	DefaultBodyBudget  = 64 << 20
	DefaultBodyTimeout = 30 * time.Second
)

// bodyBudget bounds the bytes of request bodies that the gateway holds at
// once: those being read, those in flight and those of queued asynchronous
// invocations. Without it, concurrent 6 MB bodies outgrow any memory
// limit; with it, the request that does not fit is refused at once with
// 503, before its body is read.
//
// Bodies whose sender has not proven who it is yet (a SigV4 signature is
// checked only once the body is read; a public route's caller is anyone)
// may hold at most half the budget, and those of one source address at
// most a quarter: slow unproven senders cannot take the budget from
// everyone else.
type bodyBudget struct {
	mu        sync.Mutex
	held, max int64
	unproven  int64
	bySource  map[string]int64 // unproven bytes by source address
}

// take reserves n bytes for a body from source ("" for a proven sender).
func (b *bodyBudget) take(n int64, source string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.held+n > b.max {
		return false
	}
	if source != "" {
		if b.unproven+n > b.max/2 || b.bySource[source]+n > b.max/4 {
			return false
		}
		if b.bySource == nil {
			b.bySource = map[string]int64{}
		}
		b.unproven += n
		b.bySource[source] += n
	}
	b.held += n
	return true
}

// prove moves n bytes that source took to the proven senders'.
func (b *bodyBudget) prove(n int64, source string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.unproven -= n
	if b.bySource[source] -= n; b.bySource[source] <= 0 {
		delete(b.bySource, source)
	}
}

// give returns n bytes that take reserved for source.
func (b *bodyBudget) give(n int64, source string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.held -= n
	if source != "" {
		b.unproven -= n
		if b.bySource[source] -= n; b.bySource[source] <= 0 {
			delete(b.bySource, source)
		}
	}
}

// unprovenSource is the source address a body counts against while its
// sender has not proven who it is; "" once it has.
func unprovenSource(r *http.Request, c *auth.Caller) string {
	if c.Proven() {
		return ""
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// readPayload reads a request body whole: within the payload limit (413
// beyond it), within the gateway's body budget (503 when it is spent),
// and within the body timeout, so a client sending slowly cannot hold a
// connection and its share of the budget for ever. A body that ends early
// is a 400: it never reaches a function as if complete. A SigV4 caller's
// signature is checked over the body read (401 when it does not hold).
// release gives the
// payload's bytes back to the budget; call it once the payload is no
// longer needed.
func (s *Service) readPayload(w http.ResponseWriter, r *http.Request, c *auth.Caller) (payload []byte, release func(), bad *refusal.Error) {
	tooLarge := func(msg string) *refusal.Error {
		return refusal.New(http.StatusRequestEntityTooLarge, protocol.ErrRequestTooLarge, msg)
	}
	if r.ContentLength > protocol.MaxPayloadBytes {
		return nil, nil, tooLarge(fmt.Sprintf("request payload of %d bytes exceeds the limit of %d bytes", r.ContentLength, protocol.MaxPayloadBytes))
	}
	reserved := int64(protocol.MaxPayloadBytes) // unknown length: the most it may be
	if r.ContentLength >= 0 {
		reserved = r.ContentLength
	}
	source := unprovenSource(r, c)
	if !s.bodies.take(reserved, source) {
		return nil, nil, refusal.New(http.StatusServiceUnavailable, "ServiceException",
			fmt.Sprintf("the gateway holds as many request bodies as it may (%d MB, half of it for senders whose signature is not checked yet, a quarter for one address); retry shortly", s.bodies.max>>20))
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(s.bodyTimeout)) // unsupported only off a real connection
	payload, err := readBody(r)
	switch {
	case err != nil:
		// The deadline stays: the server gives up on the rest of the body
		// and closes the connection after the answer.
		s.bodies.give(reserved, source)
		return nil, nil, refusal.New(http.StatusBadRequest, protocol.ErrInvalidRequest,
			fmt.Sprintf("reading the request body failed before its end (within %s): %v", s.bodyTimeout, err))
	case len(payload) > protocol.MaxPayloadBytes:
		s.bodies.give(reserved, source)
		return nil, nil, tooLarge(fmt.Sprintf("request payload exceeds the limit of %d bytes", protocol.MaxPayloadBytes))
	}
	_ = rc.SetReadDeadline(time.Time{})
	kept := int64(len(payload))
	s.bodies.give(reserved-kept, source)
	// The signature, checked as soon as the body is read: a sender who
	// proves who it is no longer counts against the unproven share.
	if bad := c.Verify(payload); bad != nil {
		s.bodies.give(kept, source)
		return nil, nil, bad
	}
	if source != "" && c != nil && c.Verified() {
		s.bodies.prove(kept, source)
		source = ""
	}
	var once sync.Once
	return payload, func() { once.Do(func() { s.bodies.give(kept, source) }) }, nil
}

// readBody reads the body into one buffer of its announced length, where
// there is one: io.ReadAll's doubling would hold up to twice the bytes the
// budget counts.
func readBody(r *http.Request) ([]byte, error) {
	if r.ContentLength < 0 {
		return io.ReadAll(io.LimitReader(r.Body, protocol.MaxPayloadBytes+1))
	}
	payload := make([]byte, r.ContentLength)
	if _, err := io.ReadFull(r.Body, payload); err != nil {
		return nil, err
	}
	return payload, nil
}

// readEvent reads an event body (readPayload checks c's signature over the
// bytes as sent), and then the event: JSON, or empty for {}. The signature
// comes first: an AWS SDK or CLI that invokes without a payload signs the
// empty body, not the {} the function gets.
func (s *Service) readEvent(w http.ResponseWriter, r *http.Request, c *auth.Caller) ([]byte, func(), *refusal.Error) {
	payload, release, bad := s.readPayload(w, r, c)
	switch {
	case bad != nil:
		return nil, nil, bad
	case len(payload) == 0:
		release()
		return []byte("{}"), func() {}, nil
	case !json.Valid(payload):
		release()
		return nil, nil, refusal.New(http.StatusBadRequest, protocol.ErrInvalidRequest, "the event is not valid JSON")
	}
	return payload, release, nil
}
