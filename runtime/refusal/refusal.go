// Package refusal is the one writer of the answers the gateway gives
// instead of a function's: a 4xx or 5xx with a JSON body that says what to
// do, in the error shape of the caller's API. Every part of the gateway
// that refuses a request builds an Error and lets Write answer; none
// writes a refusal of its own.
package refusal

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
)

// Error is a request the gateway refuses itself.
type Error struct {
	Status int
	Type   string // the error type callers switch on (Lambda's codes where they exist)
	Msg    string // what happened and what to do
}

// New returns a refusal.
func New(status int, errType, msg string) *Error {
	return &Error{Status: status, Type: errType, Msg: msg}
}

// AccessDenied refuses a caller who is known but lacks the right.
func AccessDenied(msg string) *Error {
	return New(http.StatusForbidden, "AccessDeniedException", msg)
}

// First returns the first refusal that is not nil.
func First(refusals ...*Error) *Error {
	for _, r := range refusals {
		if r != nil {
			return r
		}
	}
	return nil
}

// Dialect is the error shape a caller's API speaks.
type Dialect int

const (
	// Native is Nimbus's own API, routes and the artifact store:
	// {"errorType", "errorMessage"}, the shape of Lambda function errors,
	// so clients handle refusals like the functions' own errors.
	Native Dialect = iota
	// Lambda is AWS Lambda's Invoke API, in the shape AWS SDKs decode:
	// the code in X-Amzn-Errortype and __type, the text in message.
	Lambda
)

// bodyGrace is how long a refused caller may take to finish sending a
// body the gateway will not use.
const bodyGrace = 2 * time.Second

// RetryAfterSeconds is what a throttled caller is told to wait.
const RetryAfterSeconds = 1

// Write answers with e: Retry-After where retrying later will help.
func Write(w http.ResponseWriter, d Dialect, e *Error) {
	// A refusal often comes before the body is read. Go's server then
	// reads what is left of it to reuse the connection, for as long as the
	// client takes: a short deadline keeps a refused caller from holding
	// its connection by never sending the body.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(bodyGrace))
	if e.Status == http.StatusTooManyRequests || e.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(RetryAfterSeconds))
		// Every 429 and 503 of the gateway comes before an instance began
		// the request: safe to retry.
		w.Header().Set(protocol.HeaderNotStarted, "true")
	}
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="nimbus", AWS4-HMAC-SHA256`)
	}
	if d == Lambda {
		w.Header().Set("X-Amzn-Errortype", e.Type)
		WriteJSON(w, e.Status, map[string]string{"__type": e.Type, "message": e.Msg, "Type": "User"})
		return
	}
	WriteJSON(w, e.Status, map[string]string{"errorType": e.Type, "errorMessage": e.Msg})
}

// WriteJSON answers with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
