// Package sigv4 verifies AWS Signature Version 4 on requests the gateway
// receives, as AWS services do: it rebuilds the canonical request from the
// headers the client says it signed, derives the signing key from the
// secret and the credential scope, and compares signatures in constant
// time. AWS SDKs and the AWS CLI sign this way.
package sigv4

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Algorithm is the only signing algorithm accepted.
const Algorithm = "AWS4-HMAC-SHA256"

// MaxSkew is how far the request's date may be from the gateway's clock.
const MaxSkew = 15 * time.Minute

// TimeFormat is X-Amz-Date's layout.
const TimeFormat = "20060102T150405Z"

// EmptyPayloadHash is the payload hash of an empty body.
const EmptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// Authorization is a parsed SigV4 Authorization header.
type Authorization struct {
	KeyID         string
	Date          string // yyyymmdd, from the credential scope
	Region        string
	Service       string
	SignedHeaders []string // lower case, sorted
	Signature     string   // hex
}

// Scope is the credential scope the signature was made for.
func (a Authorization) Scope() string {
	return a.Date + "/" + a.Region + "/" + a.Service + "/aws4_request"
}

// Is reports whether an Authorization header claims to be SigV4.
func Is(header string) bool { return strings.HasPrefix(header, Algorithm+" ") }

// ErrMalformed is an Authorization header or date that cannot be read.
var ErrMalformed = errors.New("malformed SigV4 signature")

// ErrExpired is a request whose date is too far from now.
var ErrExpired = errors.New("signature expired")

// ErrMismatch is a signature that does not match the request.
var ErrMismatch = errors.New("the request signature we calculated does not match the signature you provided; check your secret access key and signing method")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// Parse reads "AWS4-HMAC-SHA256 Credential=<id>/<date>/<region>/<service>/aws4_request, SignedHeaders=a;b, Signature=<hex>".
func Parse(header string) (Authorization, error) {
	var a Authorization
	if !Is(header) {
		return a, malformed("the Authorization header does not start with %s", Algorithm)
	}
	fields := map[string]string{}
	for _, part := range strings.Split(strings.TrimPrefix(header, Algorithm+" "), ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return a, malformed("%q is not key=value", strings.TrimSpace(part))
		}
		if _, dup := fields[k]; dup {
			return a, malformed("%s appears twice", k)
		}
		fields[k] = v
	}
	cred := strings.Split(fields["Credential"], "/")
	if len(cred) != 5 || cred[0] == "" || cred[4] != "aws4_request" {
		return a, malformed("Credential must be <access key id>/<yyyymmdd>/<region>/<service>/aws4_request")
	}
	if _, err := time.Parse("20060102", cred[1]); err != nil {
		return a, malformed("the credential date %q is not yyyymmdd", cred[1])
	}
	if cred[2] == "" || cred[3] == "" {
		return a, malformed("the credential scope names no region or no service")
	}
	a.KeyID, a.Date, a.Region, a.Service = cred[0], cred[1], cred[2], cred[3]
	if fields["SignedHeaders"] == "" {
		return a, malformed("SignedHeaders is missing")
	}
	a.SignedHeaders = strings.Split(fields["SignedHeaders"], ";")
	if !sort.StringsAreSorted(a.SignedHeaders) {
		return a, malformed("SignedHeaders must be sorted")
	}
	for i, h := range a.SignedHeaders {
		if h == "" || h != strings.ToLower(h) || (i > 0 && a.SignedHeaders[i-1] == h) {
			return a, malformed("SignedHeaders must be distinct lower-case names")
		}
	}
	for _, need := range []string{"host", "x-amz-date"} {
		if i := sort.SearchStrings(a.SignedHeaders, need); i == len(a.SignedHeaders) || a.SignedHeaders[i] != need {
			return a, malformed("SignedHeaders must include %s", need)
		}
	}
	a.Signature = fields["Signature"]
	if len(a.Signature) != 64 {
		return a, malformed("Signature must be 64 hex characters")
	}
	if _, err := hex.DecodeString(a.Signature); err != nil {
		return a, malformed("Signature must be 64 hex characters")
	}
	return a, nil
}

// RequestTime reads X-Amz-Date and checks it against now and the
// credential scope's date.
func RequestTime(r *http.Request, a Authorization, now time.Time) (time.Time, error) {
	t, err := time.Parse(TimeFormat, r.Header.Get("X-Amz-Date"))
	if err != nil {
		return t, malformed("X-Amz-Date must be set as %s", TimeFormat)
	}
	if t.Format("20060102") != a.Date {
		return t, malformed("the credential date %s is not the day of X-Amz-Date", a.Date)
	}
	if skew := now.Sub(t); skew > MaxSkew || skew < -MaxSkew {
		return t, fmt.Errorf("%w: the request was signed at %s, more than %s from the gateway's time %s; check the caller's clock",
			ErrExpired, t.Format(time.RFC3339), MaxSkew, now.UTC().Format(time.RFC3339))
	}
	return t, nil
}

// CanonicalRequest is the request as SigV4 signs it, with the headers the
// client signed and the payload's hash.
func CanonicalRequest(r *http.Request, signedHeaders []string, payloadHash string) (string, error) {
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return "", malformed("the query string cannot be read: %v", err)
	}
	var b strings.Builder
	b.WriteString(r.Method + "\n")
	b.WriteString(escapePath(r.URL.EscapedPath()) + "\n")
	b.WriteString(canonicalQuery(query) + "\n")
	for _, h := range signedHeaders {
		b.WriteString(h + ":" + headerValue(r, h) + "\n")
	}
	b.WriteString("\n" + strings.Join(signedHeaders, ";") + "\n")
	b.WriteString(payloadHash)
	return b.String(), nil
}

// headerValue is a signed header's canonical value: its values joined by
// commas, each trimmed, with runs of spaces made one.
func headerValue(r *http.Request, name string) string {
	var values []string
	switch {
	case name == "host":
		values = []string{r.Host}
	case name == "content-length" && r.Header.Get("Content-Length") == "" && r.ContentLength >= 0:
		values = []string{strconv.FormatInt(r.ContentLength, 10)}
	default:
		values = r.Header.Values(name)
	}
	for i, v := range values {
		values[i] = strings.TrimSpace(collapseSpaces(v))
	}
	return strings.Join(values, ",")
}

// collapseSpaces makes each run of spaces one space, as AWS's signers do;
// tabs and other whitespace inside a value are kept.
func collapseSpaces(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == ' ' && i > 0 && v[i-1] == ' ' {
			continue
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

// escapePath encodes every byte of an already escaped path but the
// unreserved ones and "/": AWS services other than S3 sign the path
// encoded twice.
func escapePath(p string) string {
	if p == "" {
		return "/"
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '/' || unreserved(c) {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

func unreserved(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~'
}

// canonicalQuery sorts the parameters by name, then value, each encoded
// as RFC 3986 wants (%20, never +).
func canonicalQuery(q url.Values) string {
	type param struct{ key, value string }
	var params []param
	for k, vs := range q {
		for _, v := range vs {
			params = append(params, param{encode(k), encode(v)})
		}
	}
	// By name, then value: sorting "name=value" whole would put "k0=" before "k=".
	sort.Slice(params, func(i, j int) bool {
		if params[i].key != params[j].key {
			return params[i].key < params[j].key
		}
		return params[i].value < params[j].value
	})
	parts := make([]string, len(params))
	for i, p := range params {
		parts[i] = p.key + "=" + p.value
	}
	return strings.Join(parts, "&")
}

func encode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if unreserved(s[i]) {
			b.WriteByte(s[i])
			continue
		}
		fmt.Fprintf(&b, "%%%02X", s[i])
	}
	return b.String()
}

// Signature computes the signature of a canonical request.
func Signature(secret string, a Authorization, amzDate, canonical string) string {
	sum := sha256.Sum256([]byte(canonical))
	toSign := Algorithm + "\n" + amzDate + "\n" + a.Scope() + "\n" + hex.EncodeToString(sum[:])
	key := []byte("AWS4" + secret)
	for _, part := range []string{a.Date, a.Region, a.Service, "aws4_request"} {
		key = hmacSHA256(key, part)
	}
	return hex.EncodeToString(hmacSHA256(key, toSign))
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

// Verify checks a's signature of r, whose payload hashes to payloadHash
// (hex sha256), with secret, at now.
func Verify(r *http.Request, a Authorization, secret, payloadHash string, now time.Time) error {
	t, err := RequestTime(r, a, now)
	if err != nil {
		return err
	}
	canonical, err := CanonicalRequest(r, a.SignedHeaders, payloadHash)
	if err != nil {
		return err
	}
	want := Signature(secret, a, t.Format(TimeFormat), canonical)
	if !hmac.Equal([]byte(want), []byte(strings.ToLower(a.Signature))) {
		return ErrMismatch
	}
	return nil
}

// UnsignedAmzHeaders lists the x-amz-* headers r carries that a does not
// sign. A replayed request could add or change any of them (X-Amz-Log-Type,
// X-Amz-Invocation-Type, ...), so a verifier refuses a request with one.
// X-Amz-Content-Sha256 is bound by the signature's payload hash already.
func UnsignedAmzHeaders(r *http.Request, a Authorization) []string {
	var unsigned []string
	for name := range r.Header {
		lower := strings.ToLower(name)
		if !strings.HasPrefix(lower, "x-amz-") || lower == "x-amz-content-sha256" {
			continue
		}
		if i := sort.SearchStrings(a.SignedHeaders, lower); i == len(a.SignedHeaders) || a.SignedHeaders[i] != lower {
			unsigned = append(unsigned, name)
		}
	}
	sort.Strings(unsigned)
	return unsigned
}

// PayloadHash is the hex sha256 of a body.
func PayloadHash(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}
