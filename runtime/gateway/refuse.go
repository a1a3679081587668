package gateway

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
)

// dialect is the error shape a caller's API speaks.
type dialect int

const (
	// nativeDialect is Nimbus's own API, routes and the artifact store:
	// {"errorType", "errorMessage"}, the shape of Lambda function errors,
	// so clients handle refusals like the functions' own errors.
	nativeDialect dialect = iota
	// lambdaDialect is AWS Lambda's Invoke API, in the shape AWS SDKs
	// decode: the code in X-Amzn-Errortype and __type, the text in message.
	lambdaDialect
)

// refusedBodyGrace is how long a refused caller may take to finish
// sending a body the gateway will not use.
const refusedBodyGrace = 2 * time.Second

// retryAfterSeconds is what a throttled caller is told to wait.
const retryAfterSeconds = 1

// refuse writes every answer the gateway gives instead of the function's:
// a 4xx or 5xx with a JSON body that says what to do, and Retry-After
// where retrying later will help.
func refuse(w http.ResponseWriter, d dialect, e *apiError) {
	// A refusal often comes before the body is read. Go's server then
	// reads what is left of it to reuse the connection, for as long as the
	// client takes: a short deadline keeps a refused caller from holding
	// its connection by never sending the body.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(refusedBodyGrace))
	if e.status == http.StatusTooManyRequests || e.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
		// Every 429 and 503 of the gateway comes before an instance began
		// the request (forward.go): safe to retry.
		w.Header().Set(protocol.HeaderNotStarted, "true")
	}
	if e.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="nimbus", AWS4-HMAC-SHA256`)
	}
	if d == lambdaDialect {
		w.Header().Set("X-Amzn-Errortype", e.errType)
		writeJSON(w, e.status, map[string]string{"__type": e.errType, "message": e.msg, "Type": "User"})
		return
	}
	writeJSON(w, e.status, map[string]string{"errorType": e.errType, "errorMessage": e.msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
