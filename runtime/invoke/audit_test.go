package invoke

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/accesskey"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/auth"
)

// Every invocation leaves one access line naming who asked, with which
// key, for what and with what result, refusals included, as CloudTrail's
// data events do.
func TestAccessLinesNameTheCallersKey(t *testing.T) {
	var access bytes.Buffer
	s := syncedService(Options{AccessLog: slog.New(slog.NewJSONHandler(&access, nil))}, auth.Options{})
	id, secret, _ := accesskey.New()
	key := kvstore.AccessKey{ID: id, Secret: secret, Enabled: true, Invoke: []string{"orders-*"}}
	s.registry.Apply(kvstore.AccessKeysPrefix, consulapi.KVPairs{{Key: kvstore.AccessKeyKey(id), Value: key.Encode()}})
	// Served in this goroutine: each access line is written before the
	// next request.
	for _, target := range []string{"/v1/functions/billing/invoke", "/v1/functions/orders-eu/invoke?qualifier=live"} {
		req := httptest.NewRequest(http.MethodPost, target, strings.NewReader(`{}`))
		req.Header.Set("Authorization", "Bearer "+accesskey.Token(id, secret))
		s.handler().ServeHTTP(httptest.NewRecorder(), req)
	}
	want := map[string]struct {
		status    float64
		qualifier string
	}{"billing": {http.StatusForbidden, ""}, "orders-eu": {http.StatusNotFound, "live"}}
	lines := 0
	sc := bufio.NewScanner(strings.NewReader(access.String()))
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil || line["msg"] != "invoke" {
			continue
		}
		lines++
		w, ok := want[line["function"].(string)]
		if !ok || line["key_id"] != id || line["caller"] != "access key "+id || line["status"] != w.status || line["qualifier"] != w.qualifier || line["request_id"] == "" {
			t.Errorf("access line %v; want function, qualifier, key_id %s, caller and status %v", line, id, w.status)
		}
	}
	if lines != len(want) {
		t.Errorf("%d access lines for %d refused invocations:\n%s", lines, len(want), access.String())
	}
}
