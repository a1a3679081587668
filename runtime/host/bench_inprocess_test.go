package host_test

import (
	"io"
	"path/filepath"
	"testing"

	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/host"
)

// BenchmarkInvokeInProcess drives Host.Invoke directly, without the
// gateway-facing HTTP server, to isolate the host's own per-invocation work.
func BenchmarkInvokeInProcess(b *testing.B) {
	h, err := host.New(host.Config{
		FunctionName: "bench", Runtime: host.RuntimeProvided, TaskRoot: filepath.Dir(bins.lambdago),
	}, host.Options{Stdout: io.Discard, Stderr: io.Discard})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = h.Shutdown(b.Context()) }()
	req := host.Request{Payload: []byte(`{"action":"echo","value":"bench"}`)}
	if _, err := h.Invoke(req); err != nil { // initialise
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := h.Invoke(req)
		if err != nil || res.Err != nil {
			b.Fatal(err, res.Err)
		}
	}
}
