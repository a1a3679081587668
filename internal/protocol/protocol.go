// Package protocol is the contract between the gateway and nimbus-host,
// defined once for both: the headers of POST /invoke and its answers, the
// error types, the payload limit and the request id format. PROTOCOL.md
// beside this file describes it for people.
package protocol

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"time"
)

// Version is the version of the protocol (PROTOCOL.md). The host sends it
// on every answer.
const Version = "1"

// Request headers the gateway sends with POST /invoke.
const (
	HeaderRequestID      = "X-Nimbus-Request-Id"
	HeaderDeadlineMs     = "X-Nimbus-Deadline-Ms" // Unix milliseconds
	HeaderInvocationType = "X-Nimbus-Invocation-Type"
	HeaderTraceID        = "X-Nimbus-Trace-Id"
	HeaderClientContext  = "X-Nimbus-Client-Context"
	HeaderIdentity       = "X-Nimbus-Cognito-Identity"
	HeaderLogType        = "X-Nimbus-Log-Type" // "Tail" asks for X-Nimbus-Log-Result
	// HeaderQualifier is the version or alias the caller invoked, if any:
	// the handler's invoked function ARN ends with it, as Lambda's does.
	HeaderQualifier = "X-Nimbus-Qualifier"
	// HeaderInstanceKey carries the instance's key, which the host made at
	// start and only the gateway can read (InstanceKeyFile): an instance
	// runs invocations from the gateway only.
	HeaderInstanceKey = "X-Nimbus-Instance-Key"
)

// QueryHealthWait on GET /healthz holds the answer until the handler is
// ready or the duration it names (at most MaxHealthWait) has passed.
const (
	QueryHealthWait = "wait"
	MaxHealthWait   = 10 * time.Second
)

// PathSpecialize is where the gateway hands a warm pool's instance its
// function: POST, with the instance key, a Specialization. The host
// answers 200 once the function's handler is ready, and 409 if it already
// serves a function: a pool instance serves one function for its life.
const PathSpecialize = "/specialize"

// Specialization is the function a pool instance is to serve: the
// environment the function's own job gives nimbus-host (its NIMBUS_*
// settings, the package's signed URL and digest, and the user's
// variables). The host keeps its own listener, key and interpreters.
type Specialization struct {
	Environment map[string]string `json:"environment"`
}

// InstanceKeyFile is the file in the task's local directory where the
// host keeps its instance key; the gateway reads it through Nomad's
// allocation file system API.
const InstanceKeyFile = "nimbus-instance-key"

// Response headers the host sets on every /invoke answer.
const (
	HeaderProtocol         = "X-Nimbus-Protocol"
	HeaderFunctionError    = "X-Nimbus-Function-Error" // "Unhandled" when the result is an error
	HeaderErrorType        = "X-Nimbus-Error-Type"
	HeaderDurationMs       = "X-Nimbus-Duration-Ms"
	HeaderBilledDurationMs = "X-Nimbus-Billed-Duration-Ms"
	HeaderMemorySizeMB     = "X-Nimbus-Memory-Size-Mb"
	HeaderMaxMemoryUsedMB  = "X-Nimbus-Max-Memory-Used-Mb"
	HeaderInitDurationMs   = "X-Nimbus-Init-Duration-Ms" // only on the first invocation of a handler process
	HeaderColdStart        = "X-Nimbus-Cold-Start"
	HeaderLogResult        = "X-Nimbus-Log-Result" // base64 of the invocation's last 4 KB of log
)

// HeaderNotStarted is "true" on the gateway's 429 and 503 answers: the
// gateway gives them only before any instance began to run the request, so
// a client may retry them without running the function twice.
const HeaderNotStarted = "X-Nimbus-Not-Started"

// Invocation types, as in Lambda's Invoke API.
const (
	InvocationRequestResponse = "RequestResponse"
	InvocationEvent           = "Event"
	InvocationDryRun          = "DryRun"
)

// Error types in answers. Function errors keep the handler's own type.
const (
	ErrTimeout             = "Sandbox.Timedout"
	ErrExit                = "Runtime.ExitError"
	ErrOutOfMemory         = "Runtime.OutOfMemory"
	ErrInit                = "Runtime.InitError"
	ErrResponseTooLarge    = "Function.ResponseSizeTooLarge"
	ErrRequestTooLarge     = "RequestEntityTooLargeException"
	ErrTypeBusy            = "Host.Busy"
	ErrTypeUnauthorized    = "Host.Unauthorized"
	ErrShuttingDown        = "Host.ShuttingDown"
	ErrInvalidRequest      = "InvalidRequestContentException"
	ErrHandlerUnreachable  = "Runtime.HandlerUnreachable"
	ErrInvalidResponseHTTP = "Runtime.InvalidResponse"
)

// MaxPayloadBytes is Lambda's synchronous payload limit, for requests and
// responses alike: 6 MB.
const MaxPayloadBytes = 6 * 1024 * 1024

// ErrorBody is Lambda's error shape.
type ErrorBody struct {
	ErrorMessage string `json:"errorMessage"`
	ErrorType    string `json:"errorType"`
	// StackTrace is kept as the handler sent it: runtimes differ in shape.
	StackTrace json.RawMessage `json:"stackTrace,omitempty"`
}

// Marshal encodes the error as JSON.
func (e ErrorBody) Marshal() []byte {
	b, _ := json.Marshal(e)
	return b
}

// NewRequestID returns a random request id in the UUID shape Lambda uses.
func NewRequestID() string {
	b := RandomHex(16)
	return b[0:8] + "-" + b[8:12] + "-" + b[12:16] + "-" + b[16:20] + "-" + b[20:32]
}

// RandomHex returns n random bytes, hex-encoded.
func RandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
