// Package host is nimbus-host, the supervisor that every function instance
// runs. It starts the user's handler, hands it invocations through the AWS
// Lambda Runtime API (or, for the http runtime, proxies to the handler's own
// HTTP server), enforces each invocation's deadline and payload limits,
// restarts the handler after a timeout or crash, and reports every
// invocation in Lambda's START/END/REPORT format and in response headers
// that the gateway meters. The gateway-facing side is defined in
// internal/protocol (PROTOCOL.md there).
package host
