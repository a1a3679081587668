package artifacts

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Only a 64-character lowercase hex digest names an artifact.
func FuzzArtifactDigest(f *testing.F) {
	f.Add(strings.Repeat("ab", 32))
	f.Add("../../etc/passwd")
	f.Add(strings.Repeat("AB", 32))
	f.Fuzz(func(t *testing.T, d string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.SetPathValue("digest", d)
		got, ok := digestParam(httptest.NewRecorder(), r)
		if !ok {
			return
		}
		if len(got) != 64 || strings.Trim(got, "0123456789abcdef") != "" {
			t.Fatalf("accepted digest %q", got)
		}
	})
}
