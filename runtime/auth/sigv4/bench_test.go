package sigv4

import (
	"bytes"
	"net/http"
	"testing"
	"time"
)

// The cost of verifying a SigV4 signature, against its floor: hashing the
// payload, which any integrity check must do. Run with make bench or
// go test -bench . ./runtime/auth/sigv4/.
func benchPayload() []byte { return bytes.Repeat([]byte(`{"order":42}`), 100) } // 1.2 KB

func BenchmarkFloorPayloadHash(b *testing.B) {
	body := benchPayload()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		_ = PayloadHash(body)
	}
}

func BenchmarkVerify(b *testing.B) {
	body := benchPayload()
	now := time.Now().UTC()
	r := signed(b, http.MethodPost, "http://127.0.0.1:8080/2015-03-31/functions/orders/invocations",
		http.Header{"Content-Type": {"application/json"}, "X-Amz-Invocation-Type": {"RequestResponse"}}, body, now, secret)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		a, err := Parse(r.Header.Get("Authorization"))
		if err != nil {
			b.Fatal(err)
		}
		if err := Verify(r, a, secret, PayloadHash(body), now); err != nil {
			b.Fatal(err)
		}
	}
}
