package gateway

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/auth"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/refusal"
)

// serveLambdaInvoke follows AWS Lambda's Invoke API (2015-03-31), so an AWS
// SDK pointed at the gateway with an endpoint override invokes Nimbus
// functions.
func (g *Gateway) serveLambdaInvoke(w http.ResponseWriter, r *http.Request) {
	name, qualifier, bad := invokeTarget(lambdaFunctionName(r.PathValue("name")), r.URL.Query().Get("Qualifier"))
	c, refused := g.auth.Identify(r, auth.LambdaCredentials)
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
		g.serveLambdaEvent(w, r, c, name, qualifier)
		return
	case "DryRun":
		// A dry run proves the caller may invoke: the signature over the
		// (empty or ignored) body included.
		payload, release, bad := g.readPayload(w, r)
		if bad != nil {
			refusal.Write(w, refusal.Lambda, bad)
			return
		}
		release()
		if bad := refusal.First(c.Verify(payload), c.MayInvoke(name)); bad != nil {
			refusal.Write(w, refusal.Lambda, bad)
			return
		}
		if _, _, bad := g.find(r.Context(), name, qualifier); bad != nil {
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
	payload, release, bad := g.readLambdaEvent(w, r)
	if bad != nil {
		refusal.Write(w, refusal.Lambda, bad)
		return
	}
	defer release()
	if bad := c.Verify(payload); bad != nil {
		refusal.Write(w, refusal.Lambda, bad)
		return
	}
	inv := g.run(r.Context(), c, model.Qualify(name, qualifier), payload, r.Header.Get("X-Amz-Log-Type") == "Tail")
	if inv.refused != nil {
		if inv.refused.Status == http.StatusGatewayTimeout {
			// Lambda reports a timeout as a function error.
			w.Header().Set("X-Amz-Function-Error", "Unhandled")
			w.Header().Set(headerExecutedVersion, inv.executedVersion())
			refusal.WriteJSON(w, http.StatusOK, map[string]string{"errorType": protocol.ErrTimeout, "errorMessage": inv.refused.Msg})
			return
		}
		refusal.Write(w, refusal.Lambda, inv.refused)
		return
	}
	a := inv.answer
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(headerExecutedVersion, inv.executedVersion())
	w.Header().Set("X-Amzn-Requestid", a.header.Get(protocol.HeaderRequestID))
	if a.functionFailed() {
		w.Header().Set("X-Amz-Function-Error", "Unhandled")
	}
	if tail := a.header.Get(protocol.HeaderLogResult); tail != "" {
		w.Header().Set("X-Amz-Log-Result", tail)
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(a.body)
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

// invokeTarget is what a caller invokes: a function, and the qualifier in
// its name (name:qualifier) or in the query (Qualifier=), or a refusal
// when the two differ, as Lambda refuses them.
func invokeTarget(s, queryQualifier string) (name, qualifier string, bad *refusal.Error) {
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
func (g *Gateway) readLambdaEvent(w http.ResponseWriter, r *http.Request) ([]byte, func(), *refusal.Error) {
	payload, release, bad := g.readEvent(w, r)
	if bad != nil && bad.Status == http.StatusRequestEntityTooLarge {
		bad.Type = "RequestTooLargeException"
	}
	return payload, release, bad
}

// serveLambdaEvent accepts an asynchronous invocation: 202 once it is
// stored in NATS JetStream (events.go). A gateway without NATS holds it in
// memory instead, runs it in the background, retrying twice with backoff,
// and loses it if it stops; at most 1024 wait at a time, beyond which the
// caller gets 429.
func (g *Gateway) serveLambdaEvent(w http.ResponseWriter, r *http.Request, c *auth.Caller, name, qualifier string) {
	if bad := c.MayInvoke(name); bad != nil {
		refusal.Write(w, refusal.Lambda, bad)
		return
	}
	// What it names must exist now; an alias picks its version when the
	// event runs, as Lambda's does.
	if _, _, bad := g.find(r.Context(), name, qualifier); bad != nil {
		refusal.Write(w, refusal.Lambda, bad)
		return
	}
	payload, release, bad := g.readLambdaEvent(w, r)
	if bad != nil {
		refusal.Write(w, refusal.Lambda, bad)
		return
	}
	if bad := c.Verify(payload); bad != nil {
		release()
		refusal.Write(w, refusal.Lambda, bad)
		return
	}
	if bad := eventTooLarge(payload); bad != nil {
		release()
		refusal.Write(w, refusal.Lambda, bad)
		return
	}
	if g.events != nil {
		defer release()
		if bad := g.enqueue(r.Context(), c, name, qualifier, payload); bad != nil {
			refusal.Write(w, refusal.Lambda, bad)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if bad := g.holdInMemory(c, name, qualifier, payload, release); bad != nil {
		refusal.Write(w, refusal.Lambda, bad)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}
