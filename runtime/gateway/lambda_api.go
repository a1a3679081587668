package gateway

import (
	"context"
	"net/http"
	"strings"
	"time"
)

// serveLambdaInvoke follows AWS Lambda's Invoke API (2015-03-31), so an AWS
// SDK pointed at the gateway with an endpoint override invokes Nimbus
// functions.
func (g *Gateway) serveLambdaInvoke(w http.ResponseWriter, r *http.Request) {
	name := lambdaFunctionName(r.PathValue("name"))
	switch r.Header.Get("X-Amz-Invocation-Type") {
	case "", "RequestResponse":
	case "Event":
		g.serveLambdaEvent(w, r, name)
		return
	case "DryRun":
		if _, ok := g.registry.Get(name); !ok {
			lambdaError(w, http.StatusNotFound, "ResourceNotFoundException", "Function not found: "+name)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		lambdaError(w, http.StatusBadRequest, "InvalidParameterValueException",
			"X-Amz-Invocation-Type must be RequestResponse, Event or DryRun")
		return
	}
	payload, bad := readEvent(r)
	if bad != nil {
		errType := bad.errType
		if bad.status == http.StatusRequestEntityTooLarge {
			errType = "RequestTooLargeException"
		}
		lambdaError(w, bad.status, errType, bad.msg)
		return
	}
	res := g.run(r.Context(), name, payload, r.Header.Get("X-Amz-Log-Type") == "Tail")
	if res.refused != nil {
		if res.refused.status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "1")
		}
		if res.refused.status == http.StatusGatewayTimeout {
			// Lambda reports a timeout as a function error.
			w.Header().Set("X-Amz-Function-Error", "Unhandled")
			w.Header().Set("X-Amz-Executed-Version", "$LATEST")
			writeJSON(w, http.StatusOK, map[string]string{"errorType": "Sandbox.Timedout", "errorMessage": res.refused.msg})
			return
		}
		lambdaError(w, res.refused.status, res.refused.errType, res.refused.msg)
		return
	}
	a := res.answer
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amz-Executed-Version", "$LATEST")
	w.Header().Set("X-Amzn-Requestid", a.header.Get("X-Nimbus-Request-Id"))
	if a.header.Get("X-Nimbus-Function-Error") != "" {
		w.Header().Set("X-Amz-Function-Error", "Unhandled")
	}
	if tail := a.header.Get("X-Nimbus-Log-Result"); tail != "" {
		w.Header().Set("X-Amz-Log-Result", tail)
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(a.body)
}

// lambdaFunctionName accepts a name, name:qualifier, or an ARN.
func lambdaFunctionName(s string) string {
	if i := strings.LastIndex(s, ":function:"); i >= 0 {
		s = s[i+len(":function:"):]
	}
	if i := strings.Index(s, ":"); i >= 0 {
		s = s[:i]
	}
	return s
}

// lambdaError answers in the shape AWS SDKs decode: the error code in
// X-Amzn-Errortype and __type, the message in message.
func lambdaError(w http.ResponseWriter, status int, errType, msg string) {
	w.Header().Set("X-Amzn-Errortype", errType)
	writeJSON(w, status, map[string]string{"__type": errType, "message": msg, "Type": "User"})
}

// asyncRetries is how often an asynchronous invocation is retried after a
// failure, as on Lambda.
const asyncRetries = 2

// serveLambdaEvent accepts an asynchronous invocation: 202 at once, then
// the gateway invokes the function in the background, retrying twice with
// backoff. At most maxAsync run at a time; beyond, the caller gets 429.
func (g *Gateway) serveLambdaEvent(w http.ResponseWriter, r *http.Request, name string) {
	if _, ok := g.registry.Get(name); !ok {
		lambdaError(w, http.StatusNotFound, "ResourceNotFoundException", "Function not found: "+name)
		return
	}
	payload, bad := readEvent(r)
	if bad != nil {
		lambdaError(w, bad.status, bad.errType, bad.msg)
		return
	}
	select {
	case g.async <- struct{}{}:
	default:
		w.Header().Set("Retry-After", "1")
		lambdaError(w, http.StatusTooManyRequests, "TooManyRequestsException", "too many asynchronous invocations are queued; retry later")
		return
	}
	go func() {
		defer func() { <-g.async }()
		for attempt := 0; attempt <= asyncRetries; attempt++ {
			if attempt > 0 {
				time.Sleep(time.Duration(attempt) * time.Second)
			}
			res := g.run(context.Background(), name, payload, false)
			if res.refused == nil && res.answer.header.Get("X-Nimbus-Function-Error") == "" {
				return
			}
		}
		g.log.Warn("asynchronous invocation failed after its retries", "function", name)
	}()
	w.WriteHeader(http.StatusAccepted)
}
