package gateway

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/accesskey"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/gateway/sigv4"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/refusal"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/registry"
)

// AuthOptions decide who may call the gateway.
type AuthOptions struct {
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

// Services whose SigV4 scopes each API accepts: the Lambda API as AWS
// signs it; Nimbus's own API under "lambda" too, so the same SDK
// configuration signs both; routes as API Gateway's execute-api.
var (
	lambdaServices = []string{"lambda"}
	nativeServices = []string{"lambda", "nimbus"}
	routeServices  = []string{"execute-api"}
)

// Refusals of callers, in the names AWS SDKs decode. 401: the gateway
// does not know who calls; 403: it knows, and the key may not.
func unrecognized(msg string) *refusal.Error {
	return refusal.New(http.StatusUnauthorized, "UnrecognizedClientException", msg)
}

func badSignature(msg string) *refusal.Error {
	return refusal.New(http.StatusUnauthorized, "InvalidSignatureException", msg)
}

// caller is who sent a request, as far as its headers tell. A SigV4
// signature covers the body too: verify checks it once the body is read.
type caller struct {
	key  *kvstore.AccessKey // nil only when open
	open bool
	// internal names the gateway's own callers (KV triggers, retries of
	// an accepted event, public routes), which were authorized already.
	internal string
	sig      *sigv4.Authorization
	req      *http.Request
	now      time.Time
}

// name is how logs and refusals name the caller.
func (c *caller) name() string {
	if c.internal != "" {
		return c.internal
	}
	if c.open {
		return "anyone (authentication is off)"
	}
	return "access key " + c.key.ID
}

// internalCaller is the gateway itself invoking for what.
func internalCaller(what string) *caller { return &caller{open: true, internal: what} }

// authorize refuses an invocation its caller may not make, before
// anything else: whether a function exists is not told to whoever may
// not invoke it.
func (g *Gateway) authorize(next invoker) invoker {
	return func(ctx context.Context, inv *invocation) {
		if inv.refused = inv.caller.mayInvoke(inv.function); inv.refused == nil {
			next(ctx, inv)
		}
	}
}

// verify checks a SigV4 signature against the body the gateway read;
// bearer tokens and open mode have nothing more to check.
func (c *caller) verify(payload []byte) *refusal.Error {
	if c == nil || c.sig == nil {
		return nil
	}
	hash := sigv4.PayloadHash(payload)
	claimed := c.req.Header.Get("X-Amz-Content-Sha256")
	if claimed == "UNSIGNED-PAYLOAD" {
		return badSignature("the gateway does not accept UNSIGNED-PAYLOAD: sign the body's sha256, as AWS SDKs do for Lambda")
	}
	if claimed != "" && claimed != hash {
		return badSignature("X-Amz-Content-Sha256 is not the sha256 of the body the gateway received: the body was changed or cut on the way")
	}
	return c.verifyHash(hash)
}

func sigError(err error) *refusal.Error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sigv4.ErrExpired):
		// AWS's wording, which callers search for.
		return badSignature("Signature expired: " + strings.TrimPrefix(err.Error(), sigv4.ErrExpired.Error()+": "))
	default:
		return badSignature(err.Error())
	}
}

// mayInvoke: the key's invoke patterns name the function.
func (c *caller) mayInvoke(function string) *refusal.Error {
	if c.open || accesskey.Matches(c.key.Invoke, function) {
		return nil
	}
	return refusal.AccessDenied(fmt.Sprintf("%s may not invoke %s: add the function's name or a pattern for it to the key's invoke list", c.name(), function))
}

func (c *caller) mayUpload() *refusal.Error {
	if c.open || c.key.UploadArtifacts {
		return nil
	}
	return refusal.AccessDenied(c.name() + " may not upload or read artifacts: set upload_artifacts = true on the key the provider uses (gateway_token)")
}

func (c *caller) mayReadOperations() *refusal.Error {
	if c.open || c.key.ReadOperations {
		return nil
	}
	return refusal.AccessDenied(c.name() + " may not read metrics or usage: set read_operations = true on the key")
}

// authenticator identifies callers from their credentials: access keys
// from Consul (nimbus/access-keys/) and the operator's key.
type authenticator struct {
	open     bool
	operator *kvstore.AccessKey
	keys     *registry.Snapshot
	log      *slog.Logger
	now      func() time.Time
}

func newAuthenticator(opts AuthOptions, keys *registry.Snapshot, log *slog.Logger) *authenticator {
	a := &authenticator{open: opts.Open, operator: opts.Operator, keys: keys, log: log, now: time.Now}
	if a.open {
		log.Warn("AUTHENTICATION IS OFF: anyone who reaches this gateway may invoke every function, upload code and read metrics and usage. " +
			"Use this for local development only; in production start the gateway without -auth=off.")
	}
	return a
}

// key finds an enabled key by id.
func (a *authenticator) key(id string) (*kvstore.AccessKey, *refusal.Error) {
	if a.operator != nil && subtle.ConstantTimeCompare([]byte(id), []byte(a.operator.ID)) == 1 {
		return a.operator, nil
	}
	k, found, synced := a.keys.AccessKey(id)
	switch {
	case !found && !synced:
		return nil, a.keys.NotSynced()
	case !found:
		return nil, unrecognized(fmt.Sprintf("the access key %s does not exist: use the id of a nimbus_access_key", id))
	case !k.Enabled:
		return nil, unrecognized(fmt.Sprintf("the access key %s is disabled: enable it (enabled = true) or use another key", id))
	}
	return k, nil
}

// credentialKinds are the credentials an endpoint accepts.
type credentialKinds struct {
	sigv4Services []string // empty: no SigV4
	bearer        bool     // Authorization: Bearer
	apiKeyHeader  bool     // x-api-key, as API Gateway's API keys
}

var (
	lambdaCredentials = credentialKinds{sigv4Services: lambdaServices, bearer: true}
	nativeCredentials = credentialKinds{sigv4Services: nativeServices, bearer: true}
)

// identify reads the caller's credentials from the headers. A bearer
// token is checked whole; a SigV4 signature's key, scope and date are
// checked here and the signature itself by caller.verify, with the body.
func (a *authenticator) identify(r *http.Request, kinds credentialKinds) (*caller, *refusal.Error) {
	if a.open {
		return &caller{open: true}, nil
	}
	authz := r.Header.Get("Authorization")
	switch {
	case sigv4.Is(authz) && len(kinds.sigv4Services) > 0:
		return a.identifySigV4(r, authz, kinds.sigv4Services)
	case strings.HasPrefix(authz, "Bearer ") && kinds.bearer:
		return a.identifyToken(strings.TrimPrefix(authz, "Bearer "))
	case r.Header.Get("X-Api-Key") != "" && kinds.apiKeyHeader:
		return a.identifyToken(r.Header.Get("X-Api-Key"))
	case authz == "" && r.Header.Get("X-Api-Key") == "":
		return nil, unrecognized("the request has no credentials: " + kinds.describe())
	default:
		return nil, unrecognized("these credentials are not accepted here: " + kinds.describe())
	}
}

func (k credentialKinds) describe() string {
	var ways []string
	if len(k.sigv4Services) > 0 {
		ways = append(ways, fmt.Sprintf("a SigV4 signature for service %s (an AWS SDK or the AWS CLI configured with a nimbus_access_key's id and secret)", strings.Join(k.sigv4Services, " or ")))
	}
	if k.bearer {
		ways = append(ways, "Authorization: Bearer <a nimbus_access_key's bearer_token>")
	}
	if k.apiKeyHeader {
		ways = append(ways, "x-api-key: <a nimbus_access_key's bearer_token>")
	}
	return "send " + strings.Join(ways, ", or ")
}

func (a *authenticator) identifyToken(token string) (*caller, *refusal.Error) {
	id, secret, err := accesskey.ParseToken(strings.TrimSpace(token))
	if err != nil {
		return nil, unrecognized(err.Error())
	}
	k, refused := a.key(id)
	if refused != nil {
		return nil, refused
	}
	if subtle.ConstantTimeCompare([]byte(secret), []byte(k.Secret)) != 1 {
		return nil, unrecognized(fmt.Sprintf("the token's secret is not the secret of access key %s: use the key's current bearer_token", id))
	}
	return &caller{key: k}, nil
}

func (a *authenticator) identifySigV4(r *http.Request, authz string, services []string) (*caller, *refusal.Error) {
	sig, err := sigv4.Parse(authz)
	if err != nil {
		return nil, badSignature(err.Error())
	}
	if !contains(services, sig.Service) {
		return nil, badSignature(fmt.Sprintf("the signature is for service %q; sign for %s", sig.Service, strings.Join(services, " or ")))
	}
	k, refused := a.key(sig.KeyID)
	if refused != nil {
		return nil, refused
	}
	now := a.now()
	if _, err := sigv4.RequestTime(r, sig, now); err != nil {
		return nil, sigError(err)
	}
	return &caller{key: k, sig: &sig, req: r, now: now}, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// authenticateHeaders identifies a caller of a request without a body to
// sign (GET, HEAD) and checks its signature at once.
func (a *authenticator) authenticateHeaders(r *http.Request, kinds credentialKinds) (*caller, *refusal.Error) {
	c, refused := a.identify(r, kinds)
	if refused != nil {
		return nil, refused
	}
	if refused := c.verifyHash(r.Header.Get("X-Amz-Content-Sha256")); refused != nil {
		return nil, refused
	}
	return c, nil
}

// verifyHash checks a SigV4 signature whose payload hash the request
// states (X-Amz-Content-Sha256), or the empty body's when it states none.
func (c *caller) verifyHash(hash string) *refusal.Error {
	if c.sig == nil {
		return nil
	}
	if hash == "" {
		hash = sigv4.EmptyPayloadHash
	}
	return sigError(sigv4.Verify(c.req, *c.sig, c.key.Secret, hash, c.now))
}

// OperatorKey reads the operator's key from its bearer token.
func OperatorKey(token string) (*kvstore.AccessKey, error) {
	id, secret, err := accesskey.ParseToken(strings.TrimSpace(token))
	if err != nil {
		return nil, fmt.Errorf("the operator key: %w", err)
	}
	return &kvstore.AccessKey{ID: id, Secret: secret, Enabled: true, Description: "operator",
		Invoke: []string{"*"}, UploadArtifacts: true, ReadOperations: true}, nil
}
