package host

import (
	"encoding/json"
	"net/http"
)

// ProtocolVersion is the version of the gateway-facing protocol
// (PROTOCOL.md). It is sent on every answer.
const ProtocolVersion = "1"

// Request headers the gateway sends with POST /invoke.
const (
	HeaderRequestID      = "X-Nimbus-Request-Id"
	HeaderDeadlineMs     = "X-Nimbus-Deadline-Ms" // Unix milliseconds
	HeaderInvocationType = "X-Nimbus-Invocation-Type"
	HeaderTraceID        = "X-Nimbus-Trace-Id"
	HeaderClientContext  = "X-Nimbus-Client-Context"
	HeaderIdentity       = "X-Nimbus-Cognito-Identity"
	HeaderLogType        = "X-Nimbus-Log-Type" // "Tail" asks for X-Nimbus-Log-Result
)

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

func (e ErrorBody) marshal() []byte {
	b, _ := json.Marshal(e)
	return b
}

// writeError answers a request the host itself refuses (not a function
// error): a 4xx/5xx status with a JSON body.
func writeError(w http.ResponseWriter, status int, errType, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(HeaderProtocol, ProtocolVersion)
	w.Header().Set(HeaderErrorType, errType)
	w.WriteHeader(status)
	_, _ = w.Write(ErrorBody{ErrorMessage: msg, ErrorType: errType}.marshal())
}
