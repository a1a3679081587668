package invoke

import (
	"context"
	"net/http"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/auth"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/instances"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/metering"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/refusal"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/registry"
)

// Invocation is one request to run a function as it passes down the chain
// (chain.go), whichever way it came in.
type Invocation struct {
	Caller    *auth.Caller
	Function  string // the function's name, as the caller named it
	Qualifier string // the version or alias the caller named, if any
	Payload   []byte
	Tail      bool // the caller asked for the log tail
	RequestID string

	// Found by the resolve step.
	Fn   *registry.Function
	Pool *instances.Pool

	// The result, filled on the way: a refusal by the gateway, or the
	// instance's answer; and what the meter records either way.
	Refused *refusal.Error
	Answer  *HostAnswer
	Out     metering.Outcome
}

// invoker is one step of the chain: it runs inv, usually by calling the
// next step, and leaves the result in it.
type invoker func(ctx context.Context, inv *Invocation)

// HostAnswer is an instance's answer to POST /invoke.
type HostAnswer struct {
	Status int
	Header http.Header
	Body   []byte
}

// FunctionFailed reports whether the function ran and returned an error.
func (a *HostAnswer) FunctionFailed() bool {
	return a.Header.Get(protocol.HeaderFunctionError) != ""
}

// ExecutedVersion is the version that ran the invocation, as
// X-Amz-Executed-Version reports it; "" when none was found.
func (inv *Invocation) ExecutedVersion() string {
	if inv.Fn == nil {
		return ""
	}
	return inv.Fn.ExecutedVersion()
}
