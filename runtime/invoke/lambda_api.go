package invoke

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/auth"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/refusal"
)

// ServeLambdaInvoke follows AWS Lambda's Invoke API (2015-03-31), so an AWS
// SDK pointed at the gateway with an endpoint override invokes Nimbus
// functions.
func (s *Service) ServeLambdaInvoke(w http.ResponseWriter, r *http.Request) {
	name, qualifier, bad := Target(lambdaFunctionName(r.PathValue("name")), r.URL.Query().Get("Qualifier"))
	c, refused := s.auth.Identify(r, auth.LambdaCredentials)
	if refused != nil {
		refusal.Write(w, refusal.Lambda, refused)
		return
	}
	if bad != nil {
		refusal.Write(w, refusal.Lambda, bad)
		return
	}
	switch r.Header.Get("X-Amz-Invocation-Type") {
	case "", "RequestResponse":
	case "Event":
		s.serveLambdaEvent(w, r, c, name, qualifier)
		return
	case "DryRun":
		// A dry run proves the caller may invoke: the signature over the
		// (empty or ignored) body included, which readPayload checks.
		_, release, bad := s.readPayload(w, r, c)
		if bad != nil {
			refusal.Write(w, refusal.Lambda, bad)
			return
		}
		release()
		if bad := c.MayInvoke(name); bad != nil {
			refusal.Write(w, refusal.Lambda, bad)
			return
		}
		if _, _, bad := s.Find(r.Context(), name, qualifier); bad != nil {
			refusal.Write(w, refusal.Lambda, bad)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		refusal.Write(w, refusal.Lambda, refusal.New(http.StatusBadRequest, "InvalidParameterValueException",
			"X-Amz-Invocation-Type must be RequestResponse, Event or DryRun"))
		return
	}
	payload, release, bad := s.readLambdaEvent(w, r, c)
	if bad != nil {
		refusal.Write(w, refusal.Lambda, bad)
		return
	}
	defer release()
	inv := s.Run(r.Context(), c, model.Qualify(name, qualifier), payload, r.Header.Get("X-Amz-Log-Type") == "Tail")
	if inv.Refused != nil {
		if inv.Refused.Status == http.StatusGatewayTimeout {
			// Lambda reports a timeout as a function error.
			w.Header().Set("X-Amz-Function-Error", "Unhandled")
			w.Header().Set(headerExecutedVersion, inv.ExecutedVersion())
			refusal.WriteJSON(w, http.StatusOK, map[string]string{"errorType": protocol.ErrTimeout, "errorMessage": inv.Refused.Msg})
			return
		}
		refusal.Write(w, refusal.Lambda, inv.Refused)
		return
	}
	a := inv.Answer
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(headerExecutedVersion, inv.ExecutedVersion())
	w.Header().Set("X-Amzn-Requestid", a.Header.Get(protocol.HeaderRequestID))
	if a.FunctionFailed() {
		w.Header().Set("X-Amz-Function-Error", "Unhandled")
	}
	if tail := a.Header.Get(protocol.HeaderLogResult); tail != "" {
		w.Header().Set("X-Amz-Log-Result", tail)
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(a.Body)
}

// lambdaFunctionName turns an ARN (with or without a qualifier) into the
// name:qualifier that invokeTarget reads; a name passes as it is.
func lambdaFunctionName(s string) string {
	if i := strings.LastIndex(s, ":function:"); i >= 0 {
		s = s[i+len(":function:"):]
	}
	return s
}

// headerExecutedVersion reports the version that ran an invocation, on both
// APIs, as Lambda's Invoke API does.
const headerExecutedVersion = "X-Amz-Executed-Version"

// Target is what a caller invokes: a function, and the qualifier in
// its name (name:qualifier) or in the query (Qualifier=), or a refusal
// when the two differ, as Lambda refuses them.
func Target(s, queryQualifier string) (name, qualifier string, bad *refusal.Error) {
	name, qualifier = model.SplitQualified(s)
	switch {
	case queryQualifier == "" || queryQualifier == qualifier:
	case qualifier == "":
		qualifier = queryQualifier
	default:
		return "", "", refusal.New(http.StatusBadRequest, "InvalidParameterValueException",
			fmt.Sprintf("the function name names qualifier %q and the query names %q; name one, or the same in both", qualifier, queryQualifier))
	}
	if err := model.ValidateQualifier(qualifier); err != nil {
		return "", "", refusal.New(http.StatusBadRequest, "InvalidParameterValueException", err.Error())
	}
	return name, qualifier, nil
}

// readLambdaEvent is readEvent with Lambda's name for a payload too large.
func (s *Service) readLambdaEvent(w http.ResponseWriter, r *http.Request, c *auth.Caller) ([]byte, func(), *refusal.Error) {
	payload, release, bad := s.readEvent(w, r, c)
	if bad != nil && bad.Status == http.StatusRequestEntityTooLarge {
		bad.Type = "RequestTooLargeException"
	}
	return payload, release, bad
}

// serveLambdaEvent accepts an asynchronous invocation: 202 once Events
// has it (stored in NATS JetStream, or held in memory by a gateway
// without NATS).
func (s *Service) serveLambdaEvent(w http.ResponseWriter, r *http.Request, c *auth.Caller, name, qualifier string) {
	// The signature first: a caller proves it holds the key before it
	// learns what the key may invoke or which functions exist.
	payload, release, bad := s.readLambdaEvent(w, r, c)
	if bad != nil {
		refusal.Write(w, refusal.Lambda, bad)
		return
	}
	if bad := c.MayInvoke(name); bad != nil {
		release()
		refusal.Write(w, refusal.Lambda, bad)
		return
	}
	// What it names must exist now; an alias picks its version when the
	// event runs, as Lambda's does.
	if _, _, bad := s.Find(r.Context(), name, qualifier); bad != nil {
		release()
		refusal.Write(w, refusal.Lambda, bad)
		return
	}
	if s.events == nil {
		release()
		refusal.Write(w, refusal.Lambda, refusal.New(http.StatusServiceUnavailable, "ServiceException", "this gateway takes no asynchronous invocations"))
		return
	}
	if bad := s.events(r.Context(), c, name, qualifier, payload, release); bad != nil {
		refusal.Write(w, refusal.Lambda, bad)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}
