// Package archtest checks the layout rules of the architecture: the control
// plane (provider/) and the data plane (runtime/) never import each other;
// both import internal/.
package archtest
