package host

import (
	"fmt"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
)

// billed rounds a duration up to the billing granularity, at least one unit.
func billed(d, granularity time.Duration) time.Duration {
	units := (d + granularity - 1) / granularity
	if units < 1 {
		units = 1
	}
	return units * granularity
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// startLine, endLine and reportLine are Lambda's per-invocation log lines.
func startLine(id, version string) string {
	return fmt.Sprintf("START RequestId: %s Version: %s\n", id, version)
}

func endLine(id string) string { return fmt.Sprintf("END RequestId: %s\n", id) }

func reportLine(r Result) string {
	s := fmt.Sprintf("REPORT RequestId: %s\tDuration: %.2f ms\tBilled Duration: %d ms\tMemory Size: %d MB\tMax Memory Used: %d MB\t",
		r.RequestID, ms(r.Duration), r.BilledDuration.Milliseconds(), r.MemorySizeMB, r.MaxMemoryMB)
	if r.InitDuration > 0 {
		s += fmt.Sprintf("Init Duration: %.2f ms\t", ms(r.InitDuration))
	}
	if r.Err != nil {
		switch r.Err.ErrorType {
		case protocol.ErrTimeout:
			s += "Status: timeout\t"
		case protocol.ErrOutOfMemory, protocol.ErrExit:
			s += "Status: error\tError Type: " + r.Err.ErrorType + "\t"
		}
	}
	return s + "\n"
}
