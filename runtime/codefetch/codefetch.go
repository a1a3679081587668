// Package codefetch brings a function's code into its instance: nimbus-host
// downloads the package from the gateway's artifact store, verifies its
// sha256 against the digest the job names before anything of it runs, and
// unpacks it in process.
//
// Nomad's artifact block did this before, through go-getter in a
// subprocess of the Nomad client: a fifth of a cold start went there.
// Fetching in the host also lets the instance reach the store through the
// gateway's function listener, the one address its network allows.
package codefetch

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/httpclient"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/packaging"
)

// ErrTampered means the package's bytes do not hash to the digest the job
// names: it was altered after upload, and it must not run.
var ErrTampered = errors.New("the package does not match its digest")

// Request is what to fetch and where to put it.
type Request struct {
	// URL is the package's signed URL in the gateway's artifact store.
	URL string
	// SHA256 is the digest the package must have (lowercase hex).
	SHA256 string
	// FunctionGateway, when set, is the gateway's function listener: the
	// same path and signature are tried there first, since an instance's
	// network may reach only that listener.
	FunctionGateway string
	// Dir receives the unpacked code.
	Dir string
	// Client defaults to a client that retries each URL (httpclient.New,
	// with fetchPolicy): a gateway being replaced refuses connections for
	// a moment.
	Client *http.Client
	// Attempts bounds the tries of each URL by the default client
	// (default 5).
	Attempts int
}

// Result tells how the fetch went, for the host's log.
type Result struct {
	From           string // the URL that served the package, without its signature
	Bytes          int
	Fetch, Unpack  time.Duration
	FailedAttempts int // URLs that did not serve it
}

// Fetch downloads, verifies and unpacks the package.
func Fetch(ctx context.Context, req Request) (Result, error) {
	var res Result
	candidates, err := candidates(req)
	if err != nil {
		return res, err
	}
	client := req.Client
	if client == nil {
		policy := fetchPolicy
		policy.MaxRetries = cmp.Or(req.Attempts, 5) - 1
		client = httpclient.New(policy, nil, nil)
	}
	start := time.Now()
	var data []byte
	var got string // the digest of data, hashed as it arrived
	var lastErr error
	for _, u := range candidates {
		if data, got, lastErr = download(ctx, client, u); lastErr == nil {
			res.From = redact(u)
			break
		}
		// This URL did not serve (an expired signature, a listener that
		// does not serve packages, a store that kept failing): the next may.
		res.FailedAttempts++
	}
	if lastErr != nil {
		return res, fmt.Errorf("fetching the function's package sha256:%s (%d URLs tried): %w", req.SHA256, res.FailedAttempts, lastErr)
	}
	res.Fetch, res.Bytes = time.Since(start), len(data)
	if got != req.SHA256 {
		return res, fmt.Errorf("%w: %s served bytes that hash to sha256:%s, not sha256:%s as the job names; the store's copy was altered after upload, so nimbus-host refuses to run it: remove it from the gateway's artifact store and apply again to upload it anew",
			ErrTampered, res.From, got, req.SHA256)
	}
	start = time.Now()
	if err := packaging.Extract(data, req.Dir); err != nil {
		return res, fmt.Errorf("unpacking the function's package sha256:%s: %w", req.SHA256, err)
	}
	res.Unpack = time.Since(start)
	return res, nil
}

// candidates are the URLs to try, the function listener's first.
func candidates(req Request) ([]string, error) {
	u, err := url.Parse(req.URL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("the package URL %q is not an absolute URL", redact(req.URL))
	}
	if len(req.SHA256) != 64 {
		return nil, fmt.Errorf("the package digest %q is not a sha256 in hex", req.SHA256)
	}
	var out []string
	if req.FunctionGateway != "" {
		if g, err := url.Parse(req.FunctionGateway); err == nil && g.Scheme != "" && g.Host != "" {
			out = append(out, strings.TrimRight(req.FunctionGateway, "/")+u.RequestURI())
		}
	}
	return append(out, req.URL), nil
}

// fetchPolicy retries connection errors, 429 and 5xx of one URL, with a
// growing pause (100 ms to 1.6 s), and hands back the last answer so that
// the store's own message reaches the log. An attempt may take a minute:
// a package is up to 50 MB. Fetch sets MaxRetries from Request.Attempts.
var fetchPolicy = httpclient.RetryPolicy{
	WaitMin:     100 * time.Millisecond,
	WaitMax:     1600 * time.Millisecond,
	DialTimeout: 10 * time.Second,
	Timeout:     60 * time.Second,
}

// maxPackageBytes is the largest body read: the store's own limit.
const maxPackageBytes = packaging.MaxZipBytes

// download reads a package and hashes it as it arrives.
func download(ctx context.Context, client *http.Client, u string) ([]byte, string, error) {
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, "", err
	}
	resp, err := client.Do(r)
	if err != nil {
		// Go's errors quote the whole URL, signature included.
		for ue := (*url.Error)(nil); errors.As(err, &ue); {
			err = ue.Err
		}
		return nil, "", fmt.Errorf("GET %s: %w", redact(u), err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, "", newRefusal(redact(u), resp)
	}
	if resp.ContentLength > maxPackageBytes {
		return nil, "", tooLarge(u)
	}
	if resp.ContentLength > 0 {
		return readHashing(resp.Body, resp.ContentLength, u)
	}
	buf := bytes.NewBuffer(nil)
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(buf, h), io.LimitReader(resp.Body, maxPackageBytes+1)); err != nil {
		return nil, "", err
	}
	if buf.Len() > maxPackageBytes {
		return nil, "", tooLarge(u)
	}
	return buf.Bytes(), hex.EncodeToString(h.Sum(nil)), nil
}

func tooLarge(u string) error {
	return fmt.Errorf("%s served more than %d MB, the store's limit for a package", redact(u), maxPackageBytes>>20)
}

// readHashing reads a body of a known size and hashes what has arrived
// while the rest arrives: on another core, the hash of a 12 MB package no
// longer adds its 7 ms to the transfer.
func readHashing(body io.Reader, size int64, u string) ([]byte, string, error) {
	data := make([]byte, size)
	arrived := make(chan int, 256) // offsets up to which data is final
	sum := make(chan string, 1)
	go func() {
		h := sha256.New()
		done := 0
		for end := range arrived {
			h.Write(data[done:end])
			done = end
		}
		sum <- hex.EncodeToString(h.Sum(nil))
	}()
	n := 0
	var err error
	for n < len(data) && err == nil {
		var k int
		k, err = body.Read(data[n:])
		if k > 0 {
			n += k
			arrived <- n
		}
	}
	close(arrived)
	digest := <-sum
	switch {
	case n < len(data):
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, "", fmt.Errorf("%s sent %d of the %d bytes it announced: %w", redact(u), n, len(data), err)
	case err != nil && err != io.EOF:
		return nil, "", err
	}
	// net/http ends a body at its Content-Length: no more can follow.
	return data, digest, nil
}

// refusal is an answer other than 200 from the store.
type refusal struct {
	url, status, message string
}

func newRefusal(u string, resp *http.Response) *refusal {
	var body struct {
		Message string `json:"message"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if json.Unmarshal(b, &body) != nil || body.Message == "" {
		body.Message = strings.TrimSpace(string(b))
	}
	return &refusal{url: u, status: resp.Status, message: body.Message}
}

func (r *refusal) Error() string {
	return fmt.Sprintf("%s answered %s: %s", r.url, r.status, r.message)
}

// redact drops a URL's query, which holds its signature.
func redact(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i]
	}
	return u
}
