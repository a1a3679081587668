// Package kvstore is the Consul KV layout that the provider writes and the
// gateway reads: everything lives under nimbus/.
package kvstore

import (
	"encoding/json"
	"fmt"
)

// Prefix is the root of Nimbus's keys.
const Prefix = "nimbus/"

// FunctionKey is where a function's record lives.
func FunctionKey(name string) string { return Prefix + "functions/" + name }

// FunctionRecord is what the gateway needs to serve a function. The
// environment is left out: it can hold secrets and the gateway has no use
// for it.
type FunctionRecord struct {
	Name               string `json:"name"`
	Namespace          string `json:"namespace,omitempty"`
	JobID              string `json:"job_id"`
	Service            string `json:"service"`
	Runtime            string `json:"runtime"`
	Handler            string `json:"handler"`
	MemoryMB           int    `json:"memory_mb"`
	CPUMHz             int    `json:"cpu_mhz"`
	Timeout            string `json:"timeout"`
	Concurrency        int    `json:"concurrency"`
	MinInstances       int    `json:"min_instances"`
	MaxInstances       int    `json:"max_instances"`
	IdleTimeout        string `json:"idle_timeout"`
	BillingGranularity string `json:"billing_granularity"`
	SourceSHA256       string `json:"source_sha256"`
	Description        string `json:"description,omitempty"`
}

// Encode serialises a record.
func (r FunctionRecord) Encode() []byte {
	b, _ := json.Marshal(r)
	return b
}

// DecodeFunction parses a record.
func DecodeFunction(b []byte) (FunctionRecord, error) {
	var r FunctionRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("function record is not valid JSON: %w", err)
	}
	return r, nil
}
