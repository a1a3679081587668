package gateway

import (
	"context"
	"net/http"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/auth"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/instances"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/metering"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/refusal"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/registry"
)

// invocation is one request to run a function as it passes down the chain
// (chain.go), whichever way it came in.
type invocation struct {
	caller    *auth.Caller
	function  string // the function's name, as the caller named it
	qualifier string // the version or alias the caller named, if any
	payload   []byte
	tail      bool // the caller asked for the log tail
	requestID string

	// Found by the resolve step.
	fn   *registry.Function
	pool *instances.Pool

	// The result, filled on the way: a refusal by the gateway, or the
	// instance's answer; and what the meter records either way.
	refused *refusal.Error
	answer  *hostAnswer
	out     metering.Outcome
}

// invoker is one step of the chain: it runs inv, usually by calling the
// next step, and leaves the result in it.
type invoker func(ctx context.Context, inv *invocation)

// hostAnswer is an instance's answer to POST /invoke.
type hostAnswer struct {
	status int
	header http.Header
	body   []byte
}

// functionFailed reports whether the function ran and returned an error.
func (a *hostAnswer) functionFailed() bool {
	return a.header.Get(protocol.HeaderFunctionError) != ""
}

// run sends one invocation down the chain: the entry point for the HTTP
// front ends, asynchronous retries and triggers alike. target is a
// function's name, or <name>:<qualifier> for one of its versions or
// aliases.
func (g *Gateway) run(ctx context.Context, c *auth.Caller, target string, payload []byte, tail bool) *invocation {
	function, qualifier := model.SplitQualified(target)
	inv := &invocation{caller: c, function: function, qualifier: qualifier, payload: payload, tail: tail, requestID: protocol.NewRequestID()}
	g.chain(ctx, inv)
	return inv
}

// executedVersion is the version that ran the invocation, as
// X-Amz-Executed-Version reports it; "" when none was found.
func (inv *invocation) executedVersion() string {
	if inv.fn == nil {
		return ""
	}
	return inv.fn.ExecutedVersion()
}
