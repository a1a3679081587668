package clients

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"strconv"
	"strings"
	"time"
)

// Artifacts talks to the gateway's artifact store.
type Artifacts struct {
	BaseURL string
	// Token is the provider's key at the gateway (gateway_token).
	Token string
	HTTP  *http.Client // a retrying client from NewHTTPClient
}

// The query parameters of a signed artifact URL, which the gateway's
// store makes and checks.
const (
	QueryExpires   = "X-Nimbus-Expires"   // Unix seconds
	QuerySignature = "X-Nimbus-Signature" // hex HMAC-SHA256
)

// SignedURLExpiry reads when a signed artifact URL expires; ok is false
// for any other URL.
func SignedURLExpiry(rawURL string) (expires time.Time, ok bool) {
	u, err := neturl.Parse(rawURL)
	if err != nil || !u.Query().Has(QuerySignature) {
		return time.Time{}, false
	}
	sec, err := strconv.ParseInt(u.Query().Get(QueryExpires), 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(sec, 0), true
}

// URL is where the store keeps a package.
func (a Artifacts) URL(digest string) string {
	return strings.TrimRight(a.BaseURL, "/") + "/v1/artifacts/sha256/" + digest
}

// SignedURL asks the gateway for a signed, expiring URL of a stored
// package: the URL Nomad clients fetch it with, which nobody can make
// from the digest alone.
func (a Artifacts) SignedURL(ctx context.Context, digest string) (url string, expires string, err error) {
	resp, err := a.request(ctx, http.MethodPost, a.URL(digest)+"/url", nil)
	if err != nil {
		return "", "", err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("the gateway refused to sign a URL for sha256:%s: %s", digest, a.explain(resp))
	}
	var signed struct{ Path, Expires string }
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&signed); err != nil || !strings.HasPrefix(signed.Path, "/v1/artifacts/sha256/"+digest) {
		return "", "", fmt.Errorf("the gateway at %s answered the URL signing for sha256:%s with something else; is gateway_url a Nimbus gateway?", a.BaseURL, digest)
	}
	return strings.TrimRight(a.BaseURL, "/") + signed.Path, signed.Expires, nil
}

// Ensure uploads data unless the store already has it (HEAD first), and
// reports whether it uploaded.
func (a Artifacts) Ensure(ctx context.Context, digest string, data []byte) (bool, error) {
	head, err := a.do(ctx, http.MethodHead, digest, nil)
	if err != nil {
		return false, err
	}
	_ = head.Body.Close()
	if head.StatusCode == http.StatusOK {
		return false, nil
	}
	if head.StatusCode != http.StatusNotFound {
		return false, fmt.Errorf("artifact store at %s answered HEAD with %s", a.BaseURL, a.explain(head))
	}
	resp, err := a.do(ctx, http.MethodPut, digest, data)
	if err != nil {
		return false, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode >= 300 {
		return false, fmt.Errorf("artifact store refused the upload of sha256:%s: %s", digest, a.explain(resp))
	}
	return true, nil
}

// Verify downloads a package and checks that it still hashes to its name;
// it explains a Nomad artifact failure. It returns the actual digest.
func (a Artifacts) Verify(ctx context.Context, digest string) (string, error) {
	resp, err := a.do(ctx, http.MethodGet, digest, nil)
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("artifact store answered %s for sha256:%s", a.explain(resp), digest)
	}
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func (a Artifacts) do(ctx context.Context, method, digest string, body []byte) (*http.Response, error) {
	return a.request(ctx, method, a.URL(digest), body)
}

func (a Artifacts) request(ctx context.Context, method, url string, body []byte) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return nil, err
	}
	if a.Token != "" {
		req.Header.Set("Authorization", "Bearer "+a.Token)
	}
	if body != nil {
		req.ContentLength = int64(len(body))
		req.Header.Set("Content-Type", "application/zip")
	}
	resp, err := a.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the Nimbus gateway at %s (gateway_url / NIMBUS_GATEWAY_URL): %w", a.BaseURL, err)
	}
	return resp, nil
}

// explain is the gateway's refusal, with what to do about the ones that
// concern the provider's key.
func (a Artifacts) explain(resp *http.Response) string {
	text := errorText(resp)
	switch {
	case resp.StatusCode == http.StatusUnauthorized && a.Token == "":
		return text + " (the gateway wants a key: set gateway_token in the provider block or NIMBUS_GATEWAY_TOKEN to an access key's bearer_token with upload_artifacts, or to the gateway's operator key)"
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return text + " (check the provider's gateway_token / NIMBUS_GATEWAY_TOKEN)"
	}
	return text
}

func errorText(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var e struct {
		ErrorMessage string `json:"errorMessage"`
	}
	if json.Unmarshal(b, &e) == nil && e.ErrorMessage != "" {
		return fmt.Sprintf("%s: %s", resp.Status, e.ErrorMessage)
	}
	return resp.Status
}
