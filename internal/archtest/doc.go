// Package archtest checks the layout rules of the architecture (see
// importRules): the control plane (provider/) and the data plane (runtime/)
// never import each other and share code through internal/; the host and the
// gateway meet only in internal/protocol; and nothing users run depends on
// the test and dev harness in internal/harness.
package archtest
