// Package invoke is the gateway's request path: the invoke chain
// (authorize → resolve → meter → limit → forward, composed in chain.go)
// and its three front ends, the native invoke API, Lambda's Invoke API and
// the functions' HTTP routes. Every invocation, whichever way it comes in
// (asynchronous retries, triggers, sources and schedules included), runs
// through Run. It does not scale instances (the pools do) and does not
// store events (Events does).
package invoke

import (
	"cmp"
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/httpclient"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/auth"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/instances"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/metering"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/refusal"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/registry"
)

// Events accepts an asynchronous (Event) invocation, or refuses it; it
// owns the body's share of the budget (release) from then on.
type Events func(ctx context.Context, c *auth.Caller, name, qualifier string, payload []byte, release func()) *refusal.Error

// Options wire the request path.
type Options struct {
	Registry  *registry.Snapshot
	Instances *instances.Set
	Auth      *auth.Authenticator
	Metrics   *metering.Metrics
	Usage     *metering.Usage
	Log       *slog.Logger
	// AccessLog takes the one line per invocation (meter.go); nil: Log.
	AccessLog *slog.Logger
	// BodyBudget bounds the bytes of request bodies held at once
	// (DefaultBodyBudget when 0); BodyTimeout bounds the reading of one
	// body (DefaultBodyTimeout when 0).
	BodyBudget  int64
	BodyTimeout time.Duration
	// Events takes Lambda's Event invocations; nil refuses them.
	Events Events
}

// Service runs invocations.
type Service struct {
	log         *slog.Logger
	access      *slog.Logger
	registry    *registry.Snapshot
	instances   *instances.Set
	auth        *auth.Authenticator
	metrics     *metering.Metrics
	usage       *metering.Usage
	client      *http.Client
	admission   *admission
	bodies      *bodyBudget
	bodyTimeout time.Duration
	events      Events
	chain       invoker
}

// New returns the request path.
func New(o Options) *Service {
	s := &Service{
		log: cmp.Or(o.Log, slog.Default()), registry: o.Registry, instances: o.Instances, auth: o.Auth,
		metrics: o.Metrics, usage: o.Usage, events: o.Events,
		// No client-wide timeout: every request to an instance carries its
		// invocation's deadline (forward.go's send).
		client:      httpclient.NewPlain(httpclient.Plain{MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second, DisableCompression: true}),
		admission:   newAdmission(),
		bodies:      &bodyBudget{max: cmp.Or(o.BodyBudget, DefaultBodyBudget)},
		bodyTimeout: cmp.Or(o.BodyTimeout, DefaultBodyTimeout),
	}
	s.access = cmp.Or(o.AccessLog, s.log)
	s.chain = s.newChain()
	return s
}

// Run sends one invocation down the chain: the entry point for the HTTP
// front ends, asynchronous retries and triggers alike. target is a
// function's name, or <name>:<qualifier> for one of its versions or
// aliases.
func (s *Service) Run(ctx context.Context, c *auth.Caller, target string, payload []byte, tail bool) *Invocation {
	function, qualifier := model.SplitQualified(target)
	inv := &Invocation{Caller: c, Function: function, Qualifier: qualifier, Payload: payload, Tail: tail, RequestID: protocol.NewRequestID()}
	s.chain(ctx, inv)
	return inv
}
