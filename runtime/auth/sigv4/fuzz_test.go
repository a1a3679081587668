package sigv4

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Whatever the path, query and headers, a request the AWS SDK signed
// verifies, and the same request with another body does not. Parse and
// CanonicalRequest never panic on what a client sends.
func FuzzCanonicalisation(f *testing.F) {
	f.Add("orders", "a=1&b=2", "x-extra", "  v  w ", []byte(`{}`), "AWS4-HMAC-SHA256 Credential=a/20260101/r/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=00")
	f.Add("arn:aws:lambda:r:1:function:f:live", "", "x-a", "", []byte{}, "")
	f.Add("a b/c%2F", "k=%20&k=+", "x-b", "\t", []byte("\x00"), "AWS4-HMAC-SHA256 ,,,")
	now := time.Now().UTC()
	f.Fuzz(func(t *testing.T, name, rawQuery, headerName, headerValue string, body []byte, authorization string) {
		if a, err := Parse(authorization); err == nil {
			r, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1/x", nil)
			_, _ = CanonicalRequest(r, a.SignedHeaders, EmptyPayloadHash)
		}
		if _, err := url.ParseQuery(rawQuery); err != nil {
			return
		}
		header := http.Header{}
		if headerName != "" {
			// Go's transport refuses to send what is not a valid header,
			// as servers would refuse to read it (a leading space folds
			// the line into the previous header).
			if !httpguts.ValidHeaderFieldName(headerName) || !httpguts.ValidHeaderFieldValue(headerValue) {
				return
			}
			header.Set(headerName, headerValue)
		}
		u := "http://127.0.0.1:8080/2015-03-31/functions/" + url.PathEscape(name) + "/invocations?" + rawQuery
		r := signed(t, http.MethodPost, u, header, body, now, secret)
		if err := verify(r, body, now); err != nil {
			t.Fatalf("a request the AWS SDK signed is refused: %v", err)
		}
		if err := verify(r, append(body, 'x'), now); err == nil {
			t.Fatal("a request with another body verifies")
		}
	})
}
