package gateway

import (
	"net/http"

	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/refusal"
)

// Authorizer lets the artifact store check its callers with the
// gateway's keys.
type Authorizer struct{ auth *authenticator }

// MayUpload authenticates a caller that must hold upload_artifacts. An
// upload streams to disk, so a SigV4 upload signs its body by the
// artifact's sha256 in X-Amz-Content-Sha256, which the store checks
// against the bytes it receives.
func (z *Authorizer) MayUpload(r *http.Request, digest string) *refusal.Error {
	if z == nil {
		return nil
	}
	c, refused := z.auth.identify(r, nativeCredentials)
	if refused != nil {
		return refused
	}
	claimed := r.Header.Get("X-Amz-Content-Sha256")
	if c.sig != nil && r.Method == http.MethodPut && claimed != digest {
		return badSignature("a signed upload must send X-Amz-Content-Sha256 with the artifact's sha256, " + digest)
	}
	if refused := c.verifyHash(claimed); refused != nil {
		return refused
	}
	return c.mayUpload()
}
