package clients

import (
	"compress/gzip"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	consulapi "github.com/hashicorp/consul/api"
)

// A 403 from Nomad or Consul becomes an error that names the request, the
// right it needed and the policy that grants it; other answers pass as
// they came.
func TestRefusalsNameTheRightAndThePolicy(t *testing.T) {
	var gzipped bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/allowed") {
			_, _ = w.Write([]byte(`{"ID":"ok"}`))
			return
		}
		if gzipped {
			w.Header().Set("Content-Encoding", "gzip")
			w.WriteHeader(http.StatusForbidden)
			zw := gzip.NewWriter(w)
			_, _ = zw.Write([]byte("Permission denied"))
			_ = zw.Close()
			return
		}
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`Permission denied: token lacks permission 'key:write' on "nimbus/routes/x"`))
	}))
	defer srv.Close()

	nomad, err := NewNomad(NomadConfig{Address: srv.URL, Principal: GatewayNomad}, fastRetries, nil)
	if err != nil {
		t.Fatal(err)
	}
	zero := 0
	for _, gz := range []bool{false, true} {
		gzipped = gz
		_, _, err = nomad.Jobs().Scale("nimbus-fn-x", "fn", &zero, "", false, nil, nil)
		for _, want := range []string{"Permission denied: Nomad refused", "/v1/job/nimbus-fn-x/scale", `capability "scale-job" in namespace "default"`,
			"the nimbus-gateway policy grants it", GatewayNomad.File} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("gzip=%v: the refusal %q does not say %q", gz, err, want)
			}
		}
		if !Denied(err) {
			t.Errorf("Denied(%v) = false", err)
		}
	}

	gzipped = false
	consul, err := NewConsul(ConsulConfig{Address: srv.URL, Principal: DeployerConsul}, fastRetries, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = consul.KV().Put(&consulapi.KVPair{Key: "nimbus/routes/x"}, nil)
	for _, want := range []string{"Consul refused PUT /v1/kv/nimbus/routes/x", "'key:write'", `key_prefix "nimbus/routes/x" { policy = "write" }`, "nimbus-deployer", DeployerConsul.File} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal %q does not say %q", err, want)
		}
	}

	// A request that is allowed is untouched, and is not a refusal.
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/allowed", nil)
	resp, err := explainDenied(NewHTTPClient(fastRetries, nil, nil), "Nomad", GatewayNomad).Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("allowed request: %v %v", resp, err)
	}
	_ = resp.Body.Close()
	if Denied(nil) {
		t.Error("Denied(nil)")
	}
}
