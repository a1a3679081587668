// Package e2e holds the gateway's end-to-end tests: each runs the real
// nimbus-gateway and nimbus-host binaries against real Nomad, Consul, NATS
// and RabbitMQ agents that the tests start (internal/harness/testenv), and
// checks what a user would. It has no code of its own; the unit tests of
// each part of the gateway live beside that part.
package e2e
