// Package agents renders configuration for, starts, waits on and cleans up
// real Consul and Nomad agents. The test environment (internal/harness/testenv) and
// the local stack (make dev) both use it, so tests run against the same agent
// shape that users run locally.
package agents
