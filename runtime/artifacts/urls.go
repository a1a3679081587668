package artifacts

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/clients"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/refusal"
)

// DefaultArtifactURLTTL is how long a signed artifact URL stays valid. A
// function's job keeps its URL until the function is applied again, and
// an idle function may scale from zero long after: the validity is long,
// and every apply of the function renews it.
const DefaultArtifactURLTTL = 365 * 24 * time.Hour

// Query parameters of a signed artifact URL, shared with the provider.
const (
	queryExpires   = clients.QueryExpires
	querySignature = clients.QuerySignature
)

// URLSigner signs artifact URLs, as S3 presigns its URLs: an HMAC over
// the digest and the expiry, with a key only the gateways hold. Nomad
// clients fetch function code with such a URL; knowing a digest is not
// enough to download the code.
type URLSigner struct {
	Key []byte
	TTL time.Duration
	now func() time.Time
}

func (s *URLSigner) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

func (s *URLSigner) mac(digest string, expires int64) string {
	m := hmac.New(sha256.New, s.Key)
	fmt.Fprintf(m, "nimbus-artifact\n%s\n%d", digest, expires)
	return hex.EncodeToString(m.Sum(nil))
}

// Sign returns the query that lets anyone holding it fetch digest until
// it expires.
func (s *URLSigner) Sign(digest string) (query string, expires time.Time) {
	expires = s.clock().Add(s.TTL).Truncate(time.Second)
	q := url.Values{queryExpires: {strconv.FormatInt(expires.Unix(), 10)}, querySignature: {s.mac(digest, expires.Unix())}}
	return q.Encode(), expires
}

// check verifies a signed URL's query for digest.
func (s *URLSigner) check(digest string, q url.Values) *refusal.Error {
	expires, err := strconv.ParseInt(q.Get(queryExpires), 10, 64)
	if err != nil {
		return refusal.AccessDenied("the artifact URL's " + queryExpires + " is not a time; use the URL the provider put in the function's job")
	}
	if !hmac.Equal([]byte(s.mac(digest, expires)), []byte(q.Get(querySignature))) {
		return refusal.AccessDenied("the artifact URL's signature is not valid for this artifact: apply the function again for a fresh URL (the gateways' signing key may have changed)")
	}
	if now := s.clock(); now.Unix() > expires {
		return refusal.AccessDenied(fmt.Sprintf("the artifact URL expired at %s: apply the function again, which renews its URL", time.Unix(expires, 0).UTC().Format(time.RFC3339)))
	}
	return nil
}

// SigningKey is the key that signs artifact URLs: configured, so that
// several gateways share it, or else made once and kept in the data
// directory, so that URLs outlive a restart.
func SigningKey(configured, dataDir string) ([]byte, error) {
	if configured != "" {
		if len(configured) < 32 {
			return nil, fmt.Errorf("NIMBUS_GATEWAY_SIGNING_KEY has %d characters; use at least 32 random ones (openssl rand -hex 32)", len(configured))
		}
		return []byte(configured), nil
	}
	path := filepath.Join(dataDir, "url-signing-key")
	if key, err := os.ReadFile(path); err == nil && len(key) >= 32 {
		return key, nil
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, key, 0o600); err != nil {
		return nil, fmt.Errorf("keeping the URL signing key: %w", err)
	}
	return key, nil
}
