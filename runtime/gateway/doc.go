// Package gateway is the Nimbus gateway: it stores function artifacts and
// (as it grows) routes, invokes, scales and meters functions. Its HTTP side
// is a stack of small handlers, one concern each.
package gateway
