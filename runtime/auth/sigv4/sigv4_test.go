package sigv4

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

const (
	keyID  = "NIMBAAAAAAAAAAAAAAAA"
	secret = "0123456789012345678901234567890123456789"
)

// signed signs a request with the AWS SDK's signer and returns it as the
// gateway's HTTP server reads it off the wire.
func signed(t testing.TB, method, rawURL string, header http.Header, body []byte, at time.Time, secretKey string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, rawURL, bytes.NewReader(body))
	if err != nil {
		t.Skip("not a request the client could send:", err)
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	creds := aws.Credentials{AccessKeyID: keyID, SecretAccessKey: secretKey}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, PayloadHash(body), "lambda", "eu-west-3", at); err != nil {
		t.Fatal(err)
	}
	var wire bytes.Buffer
	if err := req.Write(&wire); err != nil {
		t.Skip("not a request the client could send:", err)
	}
	got, err := http.ReadRequest(bufio.NewReader(&wire))
	if err != nil {
		t.Skip("not a request a server would read:", err)
	}
	return got
}

func verify(r *http.Request, body []byte, now time.Time) error {
	a, err := Parse(r.Header.Get("Authorization"))
	if err != nil {
		return err
	}
	return Verify(r, a, secret, PayloadHash(body), now)
}

func TestVerifiesWhatTheAWSSDKSigns(t *testing.T) {
	now := time.Now().UTC()
	body := []byte(`{"order":42}`)
	h := http.Header{"X-Amz-Invocation-Type": {"RequestResponse"}, "Content-Type": {"application/json"}, "X-Custom": {"  a   b  ", "c"}}
	for _, u := range []string{
		"http://127.0.0.1:8080/2015-03-31/functions/orders/invocations",
		"http://127.0.0.1:8080/2015-03-31/functions/" + url.PathEscape("arn:aws:lambda:eu-west-3:123456789012:function:orders:live") + "/invocations",
		"http://127.0.0.1:8080/v1/functions/orders/invoke?b=2&a=1&a=0&sp=x%20y&plus=a%2Bb",
	} {
		r := signed(t, http.MethodPost, u, h, body, now, secret)
		if err := verify(r, body, now); err != nil {
			t.Errorf("%s: a request signed by the AWS SDK is refused: %v", u, err)
		}
	}
}

func TestRefusals(t *testing.T) {
	now := time.Now().UTC()
	body := []byte(`{"order":42}`)
	u := "http://127.0.0.1:8080/2015-03-31/functions/orders/invocations"
	cases := map[string]struct {
		r    *http.Request
		body []byte
		want error
	}{
		"wrong secret":      {signed(t, http.MethodPost, u, nil, body, now, strings.Repeat("x", 40)), body, ErrMismatch},
		"tampered body":     {signed(t, http.MethodPost, u, nil, body, now, secret), []byte(`{"order":43}`), ErrMismatch},
		"clock 16 min late": {signed(t, http.MethodPost, u, nil, body, now.Add(-16*time.Minute), secret), body, ErrExpired},
		"clock 16 min fast": {signed(t, http.MethodPost, u, nil, body, now.Add(16*time.Minute), secret), body, ErrExpired},
	}
	tamperedPath := signed(t, http.MethodPost, u, nil, body, now, secret)
	tamperedPath.URL.Path = "/2015-03-31/functions/billing/invocations"
	cases["other function"] = struct {
		r    *http.Request
		body []byte
		want error
	}{tamperedPath, body, ErrMismatch}
	tamperedHeader := signed(t, http.MethodPost, u, http.Header{"X-Amz-Invocation-Type": {"Event"}}, body, now, secret)
	tamperedHeader.Header.Set("X-Amz-Invocation-Type", "RequestResponse")
	cases["tampered signed header"] = struct {
		r    *http.Request
		body []byte
		want error
	}{tamperedHeader, body, ErrMismatch}
	for name, c := range cases {
		if err := verify(c.r, c.body, now); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", name, err, c.want)
		}
	}
	// Within the skew, a slow clock is fine.
	if err := verify(signed(t, http.MethodPost, u, nil, body, now.Add(-14*time.Minute), secret), body, now); err != nil {
		t.Errorf("14 minutes of skew refused: %v", err)
	}
}

func TestParseRefusesMalformedHeaders(t *testing.T) {
	good := "AWS4-HMAC-SHA256 Credential=" + keyID + "/20260101/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=" + strings.Repeat("ab", 32)
	if _, err := Parse(good); err != nil {
		t.Fatalf("good header refused: %v", err)
	}
	for _, bad := range []string{
		"", "Bearer x", "AWS4-HMAC-SHA256",
		strings.Replace(good, "aws4_request", "aws5_request", 1),
		strings.Replace(good, "20260101", "2026-01-01", 1),
		strings.Replace(good, "host;x-amz-date", "x-amz-date;host", 1),
		strings.Replace(good, "host;x-amz-date", "content-type;x-amz-date", 1),
		strings.Replace(good, "host;x-amz-date", "HOST;x-amz-date", 1),
		strings.Replace(good, strings.Repeat("ab", 32), "zz", 1),
		good + ", Signature=" + strings.Repeat("ab", 32),
	} {
		if _, err := Parse(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%q) = %v, want ErrMalformed", bad, err)
		}
	}
}
