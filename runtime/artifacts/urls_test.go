package artifacts

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

// A signed URL works until it expires, for its own digest only.
func TestSignedArtifactURLsExpire(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := &URLSigner{Key: []byte(strings.Repeat("k", 32)), TTL: time.Hour, now: func() time.Time { return now }}
	digest, other := strings.Repeat("a", 64), strings.Repeat("b", 64)
	query, expires := s.Sign(digest)
	if !expires.Equal(now.Add(time.Hour)) {
		t.Errorf("expires %s, want an hour on", expires)
	}
	q, _ := url.ParseQuery(query)
	if refused := s.check(digest, q); refused != nil {
		t.Fatalf("a fresh URL is refused: %v", refused.Msg)
	}
	if refused := s.check(other, q); refused == nil {
		t.Error("the URL of one artifact opens another")
	}
	now = now.Add(time.Hour + time.Second)
	if refused := s.check(digest, q); refused == nil || !strings.Contains(refused.Msg, "expired") {
		t.Errorf("an expired URL: %v", refused)
	}
	rotated := &URLSigner{Key: []byte(strings.Repeat("r", 32)), TTL: time.Hour, now: func() time.Time { return now.Add(-time.Hour) }}
	if refused := rotated.check(digest, q); refused == nil {
		t.Error("a URL signed with another key is accepted")
	}
}
