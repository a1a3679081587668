// Package auth decides who calls the gateway: it identifies callers from
// their credentials (Bearer tokens, x-api-key, SigV4 signatures) against
// the access keys in Consul and the operator's key, and says what each
// Caller may do. It reads keys through a narrow Keys view and never
// invokes anything.
package auth

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/accesskey"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/auth/sigv4"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/refusal"
)

// Options decide who may call the gateway.
type Options struct {
	// Open serves everyone without credentials: for local development
	// only. The gateway says so loudly at start and in /healthz.
	Open bool
	// Operator is the key the operator configures on the gateway itself
	// (NIMBUS_GATEWAY_OPERATOR_KEY): every right, and the only key that
	// exists before the first nimbus_access_key, so the provider can
	// upload with it. Nil: none.
	Operator *kvstore.AccessKey
	// SigningKey signs artifact URLs (runtime/artifacts).
	SigningKey []byte
}

// Keys is where the access keys are: the registry's snapshot of Consul.
// synced is false until they have been read, when an absent key proves
// nothing.
type Keys interface {
	AccessKey(id string) (key *kvstore.AccessKey, found, synced bool)
	NotSynced() *refusal.Error
}

// Services whose SigV4 scopes each API accepts: the Lambda API as AWS
// signs it; Nimbus's own API under "lambda" too, so the same SDK
// configuration signs both; routes as API Gateway's execute-api.
var (
	lambdaServices = []string{"lambda"}
	nativeServices = []string{"lambda", "nimbus"}
	// RouteServices are what a route with AWS_IAM authorization accepts.
	RouteServices = []string{"execute-api"}
)

// Refusals of callers are in the names AWS SDKs decode. 401: the gateway
// does not know who calls; 403: it knows, and the key may not.

// Unrecognized refuses a caller the gateway does not know.
func Unrecognized(msg string) *refusal.Error {
	return refusal.New(http.StatusUnauthorized, "UnrecognizedClientException", msg)
}

// BadSignature refuses a SigV4 signature that does not hold.
func BadSignature(msg string) *refusal.Error {
	return refusal.New(http.StatusUnauthorized, "InvalidSignatureException", msg)
}

// Caller is who sent a request, as far as its headers tell. A SigV4
// signature covers the body too: verify checks it once the body is read.
type Caller struct {
	key  *kvstore.AccessKey // nil only when open
	open bool
	// internal names the gateway's own callers (KV triggers, retries of
	// an accepted event, public routes), which were authorized already.
	internal string
	sig      *sigv4.Authorization
	verified bool // the signature held (VerifyHash)
	req      *http.Request
	now      time.Time
}

// Name is how logs and refusals name the caller.
func (c *Caller) Name() string {
	if c.internal != "" {
		return c.internal
	}
	if c.open {
		return "anyone (authentication is off)"
	}
	return "access key " + c.key.ID
}

// Proven reports whether the caller has proven who it is before its body
// is read: a bearer token or x-api-key is checked whole, a SigV4 signature
// only once the body is read (Verify), and a public route's caller is
// anyone.
func (c *Caller) Proven() bool {
	switch {
	case c == nil, c.internal != "", c.sig != nil:
		return false
	default:
		return true
	}
}

// Verified reports whether the caller has proven who it is: Proven, or a
// SigV4 signature that Verify accepted.
func (c *Caller) Verified() bool { return c.Proven() || (c != nil && c.sig != nil && c.verified) }

// KeyID is the id of the access key the caller proved it holds; "" for
// the gateway's own callers and where authentication is off.
func (c *Caller) KeyID() string {
	if c == nil || c.open || c.key == nil {
		return ""
	}
	return c.key.ID
}

// Internal is the gateway itself invoking for what.
func Internal(what string) *Caller { return &Caller{open: true, internal: what} }

// Verify checks a SigV4 signature against the body the gateway read;
// Bearer tokens and open mode have nothing more to check.
func (c *Caller) Verify(payload []byte) *refusal.Error {
	if c == nil || c.sig == nil {
		return nil
	}
	hash := sigv4.PayloadHash(payload)
	claimed := c.req.Header.Get("X-Amz-Content-Sha256")
	if claimed == "UNSIGNED-PAYLOAD" {
		return BadSignature("the gateway does not accept UNSIGNED-PAYLOAD: sign the body's sha256, as AWS SDKs do for Lambda")
	}
	if claimed != "" && claimed != hash {
		return BadSignature("X-Amz-Content-Sha256 is not the sha256 of the body the gateway received: the body was changed or cut on the way")
	}
	return c.VerifyHash(hash)
}

func sigError(err error) *refusal.Error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sigv4.ErrExpired):
		// AWS's wording, which callers search for.
		return BadSignature("Signature expired: " + strings.TrimPrefix(err.Error(), sigv4.ErrExpired.Error()+": "))
	default:
		return BadSignature(err.Error())
	}
}

// MayInvoke refuses a caller whose key's invoke patterns do not name the
// function.
func (c *Caller) MayInvoke(function string) *refusal.Error {
	if c.open || accesskey.Matches(c.key.Invoke, function) {
		return nil
	}
	return refusal.AccessDenied(fmt.Sprintf("%s may not invoke %s: add the function's name or a pattern for it to the key's invoke list", c.Name(), function))
}

// MayUpload refuses a caller whose key may not upload or read packages.
func (c *Caller) MayUpload() *refusal.Error {
	if c.open || c.key.UploadArtifacts {
		return nil
	}
	return refusal.AccessDenied(c.Name() + " may not upload or read artifacts: set upload_artifacts = true on the key the provider uses (gateway_token)")
}

// MayReadOperations refuses a caller whose key may not read metrics or
// usage.
func (c *Caller) MayReadOperations() *refusal.Error {
	if c.open || c.key.ReadOperations {
		return nil
	}
	return refusal.AccessDenied(c.Name() + " may not read metrics or usage: set read_operations = true on the key")
}

// Authenticator identifies callers from their credentials: access keys
// from Consul (nimbus/access-keys/) and the operator's key.
type Authenticator struct {
	open     bool
	operator *kvstore.AccessKey
	keys     Keys
	log      *slog.Logger
	now      func() time.Time
}

// New returns the authenticator of the keys, and of the operator's key
// opts names.
func New(opts Options, keys Keys, log *slog.Logger) *Authenticator {
	a := &Authenticator{open: opts.Open, operator: opts.Operator, keys: keys, log: log, now: time.Now}
	if a.open {
		log.Warn("AUTHENTICATION IS OFF: anyone who reaches this gateway may invoke every function, upload code and read metrics and usage. " +
			"Use this for local development only; in production start the gateway without -auth=off.")
	}
	return a
}

// key finds an enabled key by id.
func (a *Authenticator) key(id string) (*kvstore.AccessKey, *refusal.Error) {
	if a.operator != nil && subtle.ConstantTimeCompare([]byte(id), []byte(a.operator.ID)) == 1 {
		return a.operator, nil
	}
	k, found, synced := a.keys.AccessKey(id)
	switch {
	case !synced:
		// Not read yet, or not heard of for too long: a key found may have
		// been disabled since.
		return nil, a.keys.NotSynced()
	case !found:
		return nil, Unrecognized(fmt.Sprintf("the access key %s does not exist: use the id of a nimbus_access_key", id))
	case !k.Enabled:
		return nil, Unrecognized(fmt.Sprintf("the access key %s is disabled: enable it (enabled = true) or use another key", id))
	}
	return k, nil
}

// Kinds are the credentials an endpoint accepts.
type Kinds struct {
	SigV4Services []string // empty: no SigV4
	Bearer        bool     // Authorization: Bearer
	APIKeyHeader  bool     // x-api-key, as API Gateway's API keys
}

// What Lambda's Invoke API and Nimbus's own API accept.
var (
	LambdaCredentials = Kinds{SigV4Services: lambdaServices, Bearer: true}
	NativeCredentials = Kinds{SigV4Services: nativeServices, Bearer: true}
)

// Identify reads the caller's credentials from the headers. A bearer
// token is checked whole; a SigV4 signature's key, scope and date are
// checked here and the signature itself by caller.verify, with the body.
func (a *Authenticator) Identify(r *http.Request, kinds Kinds) (*Caller, *refusal.Error) {
	if a.open {
		return &Caller{open: true}, nil
	}
	authz := r.Header.Get("Authorization")
	switch {
	case sigv4.Is(authz) && len(kinds.SigV4Services) > 0:
		return a.identifySigV4(r, authz, kinds.SigV4Services)
	case strings.HasPrefix(authz, "Bearer ") && kinds.Bearer:
		return a.identifyToken(strings.TrimPrefix(authz, "Bearer "))
	case r.Header.Get("X-Api-Key") != "" && kinds.APIKeyHeader:
		return a.identifyToken(r.Header.Get("X-Api-Key"))
	case authz == "" && r.Header.Get("X-Api-Key") == "":
		return nil, Unrecognized("the request has no credentials: " + kinds.describe())
	default:
		return nil, Unrecognized("these credentials are not accepted here: " + kinds.describe())
	}
}

func (k Kinds) describe() string {
	var ways []string
	if len(k.SigV4Services) > 0 {
		ways = append(ways, fmt.Sprintf("a SigV4 signature for service %s (an AWS SDK or the AWS CLI configured with a nimbus_access_key's id and secret)", strings.Join(k.SigV4Services, " or ")))
	}
	if k.Bearer {
		ways = append(ways, "Authorization: Bearer <a nimbus_access_key's bearer_token>")
	}
	if k.APIKeyHeader {
		ways = append(ways, "x-api-key: <a nimbus_access_key's bearer_token>")
	}
	return "send " + strings.Join(ways, ", or ")
}

func (a *Authenticator) identifyToken(token string) (*Caller, *refusal.Error) {
	id, secret, err := accesskey.ParseToken(strings.TrimSpace(token))
	if err != nil {
		return nil, Unrecognized(err.Error())
	}
	k, refused := a.key(id)
	if refused != nil {
		return nil, refused
	}
	if subtle.ConstantTimeCompare([]byte(secret), []byte(k.Secret)) != 1 {
		return nil, Unrecognized(fmt.Sprintf("the token's secret is not the secret of access key %s: use the key's current bearer_token", id))
	}
	return &Caller{key: k}, nil
}

func (a *Authenticator) identifySigV4(r *http.Request, authz string, services []string) (*Caller, *refusal.Error) {
	sig, err := sigv4.Parse(authz)
	if err != nil {
		return nil, BadSignature(err.Error())
	}
	if !contains(services, sig.Service) {
		return nil, BadSignature(fmt.Sprintf("the signature is for service %q; sign for %s", sig.Service, strings.Join(services, " or ")))
	}
	k, refused := a.key(sig.KeyID)
	if refused != nil {
		return nil, refused
	}
	now := a.now()
	if _, err := sigv4.RequestTime(r, sig, now); err != nil {
		return nil, sigError(err)
	}
	if unsigned := sigv4.UnsignedAmzHeaders(r, sig); len(unsigned) > 0 {
		return nil, BadSignature(fmt.Sprintf("the headers %s are not signed: sign every x-amz-* header you send (AWS SDKs do)", strings.Join(unsigned, ", ")))
	}
	return &Caller{key: k, sig: &sig, req: r, now: now}, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// AuthenticateHeaders identifies a Caller of a request without a body to
// sign (GET, HEAD) and checks its signature at once.
func (a *Authenticator) AuthenticateHeaders(r *http.Request, kinds Kinds) (*Caller, *refusal.Error) {
	c, refused := a.Identify(r, kinds)
	if refused != nil {
		return nil, refused
	}
	if refused := c.VerifyHash(r.Header.Get("X-Amz-Content-Sha256")); refused != nil {
		return nil, refused
	}
	return c, nil
}

// VerifyHash checks a SigV4 signature whose payload hash the request
// states (X-Amz-Content-Sha256), or the empty body's when it states none.
func (c *Caller) VerifyHash(hash string) *refusal.Error {
	if c.sig == nil {
		return nil
	}
	if hash == "" {
		hash = sigv4.EmptyPayloadHash
	}
	if refused := sigError(sigv4.Verify(c.req, *c.sig, c.key.Secret, hash, c.now)); refused != nil {
		return refused
	}
	c.verified = true
	return nil
}

// OperatorKey reads the operator's key from its Bearer token.
func OperatorKey(token string) (*kvstore.AccessKey, error) {
	id, secret, err := accesskey.ParseToken(strings.TrimSpace(token))
	if err != nil {
		return nil, fmt.Errorf("the operator key: %w", err)
	}
	return &kvstore.AccessKey{ID: id, Secret: secret, Enabled: true, Description: "operator",
		Invoke: []string{"*"}, UploadArtifacts: true, ReadOperations: true}, nil
}

// Open reports whether authentication is off.
func (a *Authenticator) Open() bool { return a.open }

// Allowed authenticates a request to the native API and checks that the
// caller has the right; otherwise it writes the refusal.
func (a *Authenticator) Allowed(w http.ResponseWriter, r *http.Request, right func(*Caller) *refusal.Error) bool {
	c, refused := a.AuthenticateHeaders(r, NativeCredentials)
	if refused == nil {
		refused = right(c)
	}
	if refused != nil {
		refusal.Write(w, refusal.Native, refused)
		return false
	}
	return true
}

// Operations serves the operations endpoints (usage, metrics) to keys
// with read_operations.
func (a *Authenticator) Operations(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.Allowed(w, r, (*Caller).MayReadOperations) {
			next.ServeHTTP(w, r)
		}
	})
}

// MayUpload authenticates a caller that must hold upload_artifacts: the
// artifact store's Uploaders. An upload streams to disk, so a SigV4
// upload signs its body by the artifact's sha256 in X-Amz-Content-Sha256,
// which the store checks against the bytes it receives.
func (a *Authenticator) MayUpload(r *http.Request, digest string) *refusal.Error {
	c, refused := a.Identify(r, NativeCredentials)
	if refused != nil {
		return refused
	}
	claimed := r.Header.Get("X-Amz-Content-Sha256")
	if c.sig != nil && r.Method == http.MethodPut && claimed != digest {
		return BadSignature("a signed upload must send X-Amz-Content-Sha256 with the artifact's sha256, " + digest)
	}
	if refused := c.VerifyHash(claimed); refused != nil {
		return refused
	}
	return c.MayUpload()
}
