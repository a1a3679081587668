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
	"strings"
)

// Artifacts talks to the gateway's artifact store.
type Artifacts struct {
	BaseURL string
	HTTP    *http.Client // a retrying client from NewHTTPClient
}

// URL is where the store keeps (and Nomad fetches) a package.
func (a Artifacts) URL(digest string) string {
	return strings.TrimRight(a.BaseURL, "/") + "/v1/artifacts/sha256/" + digest
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
		return false, fmt.Errorf("artifact store at %s answered HEAD with %s", a.BaseURL, head.Status)
	}
	resp, err := a.do(ctx, http.MethodPut, digest, data)
	if err != nil {
		return false, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode >= 300 {
		return false, fmt.Errorf("artifact store refused the upload of sha256:%s: %s", digest, errorText(resp))
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
		return "", fmt.Errorf("artifact store answered %s for sha256:%s", resp.Status, digest)
	}
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func (a Artifacts) do(ctx context.Context, method, digest string, body []byte) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.URL(digest), r)
	if err != nil {
		return nil, err
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
