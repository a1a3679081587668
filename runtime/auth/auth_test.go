package auth

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/accesskey"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/refusal"
)

// keys is an in-memory key set.
type keys struct {
	byID   map[string]*kvstore.AccessKey
	synced bool
}

func (k keys) AccessKey(id string) (*kvstore.AccessKey, bool, bool) {
	key, ok := k.byID[id]
	return key, ok, k.synced
}

func (keys) NotSynced() *refusal.Error {
	return refusal.New(http.StatusServiceUnavailable, "ServiceException", "not read yet")
}

func bearer(token string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/v1/functions/orders/invoke", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	return r
}

func TestIdentifyBearerTokens(t *testing.T) {
	id, secret, _ := accesskey.New()
	offID, offSecret, _ := accesskey.New()
	unknownID, _, _ := accesskey.New()
	ks := keys{synced: true, byID: map[string]*kvstore.AccessKey{
		id:    {ID: id, Secret: secret, Enabled: true, Invoke: []string{"orders-*"}},
		offID: {ID: offID, Secret: offSecret, Enabled: false, Invoke: []string{"*"}},
	}}
	a := New(Options{}, ks, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, tc := range []struct {
		name, token string
		status      int
		says        string
	}{
		{"a key's token", accesskey.Token(id, secret), 0, ""},
		{"a wrong secret", accesskey.Token(id, offSecret), http.StatusUnauthorized, "not the secret"},
		{"a disabled key", accesskey.Token(offID, offSecret), http.StatusUnauthorized, "disabled"},
		{"an unknown key", accesskey.Token(unknownID, secret), http.StatusUnauthorized, "does not exist"},
	} {
		c, refused := a.Identify(bearer(tc.token), NativeCredentials)
		switch {
		case tc.status == 0 && refused != nil:
			t.Errorf("%s: refused %v", tc.name, refused)
		case tc.status != 0 && (refused == nil || refused.Status != tc.status || !strings.Contains(refused.Msg, tc.says)):
			t.Errorf("%s: got %+v, want %d saying %q", tc.name, refused, tc.status, tc.says)
		case tc.status == 0:
			if c.MayInvoke("orders-eu") != nil || c.MayInvoke("billing") == nil || c.MayUpload() == nil {
				t.Errorf("%s: the key's rights are not its invoke list", tc.name)
			}
		}
	}
	if _, refused := a.Identify(httptest.NewRequest(http.MethodGet, "/", nil), NativeCredentials); refused == nil || !strings.Contains(refused.Msg, "Bearer") {
		t.Errorf("no credentials: %+v; the refusal must say what to send", refused)
	}
}

func TestKeysNotReadYetIsRetryable(t *testing.T) {
	id, secret, _ := accesskey.New()
	a := New(Options{}, keys{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if _, refused := a.Identify(bearer(accesskey.Token(id, secret)), NativeCredentials); refused == nil || refused.Status != http.StatusServiceUnavailable {
		t.Errorf("an unknown key before the keys are read: %+v, want 503 (retry), not 401", refused)
	}
}

func TestOperatorKeyHasEveryRight(t *testing.T) {
	id, secret, _ := accesskey.New()
	op, err := OperatorKey(accesskey.Token(id, secret))
	if err != nil {
		t.Fatal(err)
	}
	a := New(Options{Operator: op}, keys{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	c, refused := a.Identify(bearer(accesskey.Token(id, secret)), NativeCredentials)
	if refused != nil || c.MayInvoke("anything") != nil || c.MayUpload() != nil || c.MayReadOperations() != nil {
		t.Errorf("the operator key: %+v", refused)
	}
	if _, err := OperatorKey("not a token"); err == nil {
		t.Error("a malformed operator key must be refused at start")
	}
}
