// Package gateway is the gateway's composition root: it builds each part
// of the gateway (registry, pools, the invoke chain, asynchronous
// invocations, triggers, event sources, schedules, alias deployments),
// wires them together through their narrow interfaces and serves their
// HTTP handlers on the gateway's two listeners. It holds no logic of its
// own beyond that wiring and GET /v1/functions/{name} and /healthz, which
// show what the parts know; see runtime/README.md for where each concern
// lives.
package gateway
