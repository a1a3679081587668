// Package harness holds what starts real servers for tests, `make dev`,
// `make demo` and `make bench`, apart from the libraries that the provider
// and the runtime share (the rest of internal/). Nothing users run imports
// it; internal/archtest checks that.
//
//   - agents: configuration, start, readiness and cleanup of Consul and
//     Nomad agents.
//   - testenv: a pair of agents per test package, and a gateway.
//   - testkit: helpers that tests of several packages share.
//   - devstack: the long-running local stack of `make dev`.
//   - cmd: nimbus-dev and nimbus-bench.
package harness
