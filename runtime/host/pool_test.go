package host_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/packaging"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
)

// A warm pool's instance: nimbus-host without a function, waiting to be
// handed one by the gateway (the key holder), then serving it, and only
// it, with the function's memory size held below the pool's.
func TestPoolInstanceServesTheOneFunctionItIsHanded(t *testing.T) {
	pkg, err := packaging.ZipDir(filepath.Dir(bins.lambdago))
	if err != nil {
		t.Fatal(err)
	}
	store := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(pkg.Zip) }))
	defer store.Close()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	h := launchHost(t, []string{
		protocol.EnvPoolRuntime + "=provided", protocol.EnvMemoryMB + "=256", protocol.EnvListen + "=127.0.0.1:0",
		protocol.EnvInstanceKeyFile + "=" + keyFile, protocol.EnvTaskRoot + "=" + filepath.Join(dir, "function"),
	})
	key := readFile(t, keyFile)

	if status, body := get(t, h.url+"/healthz"); status != http.StatusOK || !strings.Contains(body, "pooled") {
		t.Fatalf("an idle pool instance: /healthz %d %s", status, body)
	}
	function := map[string]string{
		protocol.EnvFunctionName: "first", protocol.EnvRuntime: "provided", protocol.EnvMemoryMB: "128", protocol.EnvTimeout: "10s",
		protocol.EnvPackageURL: store.URL + "/v1/artifacts/sha256/" + pkg.SHA256, protocol.EnvPackageSHA256: pkg.SHA256,
		"USER_SETTING": "from the function's job",
	}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range function {
			m[a] = b
		}
		m[k] = v
		return m
	}
	for _, c := range []struct {
		name, key string
		env       map[string]string
		status    int
		want      string
	}{
		{"without the instance key", "", function, http.StatusUnauthorized, "only the Nimbus gateway"},
		{"another runtime", key, with(protocol.EnvRuntime, "python3"), http.StatusBadRequest, "does not match this pool"},
		{"more memory than the pool", key, with(protocol.EnvMemoryMB, "512"), http.StatusBadRequest, "does not fit"},
		{"with secrets", key, with(protocol.EnvSecrets, `{"DB":{"path":"nomad/jobs/x","key":"k"}}`), http.StatusBadRequest, "never served from a pool"},
	} {
		if status, body := specialize(t, h.url, c.key, c.env); status != c.status || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %s; want %d with %q", c.name, status, body, c.status, c.want)
		}
	}
	if status, body := specialize(t, h.url, key, function); status != http.StatusOK {
		t.Fatalf("specialising: %d %s", status, body)
	}

	got := h.invoke(t, `{"action":"env"}`, protocol.HeaderInstanceKey, key, "X-Nimbus-Deadline-Ms", deadlineIn(10*time.Second)).json(t)
	if got["AWS_LAMBDA_FUNCTION_NAME"] != "first" || got["USER_SETTING"] != "from the function's job" || got["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] != "128" {
		t.Errorf("the handler runs as the function it was handed: %v", got)
	}
	if r := h.invoke(t, `{"action":"env"}`); r.status != http.StatusUnauthorized {
		t.Errorf("an invocation without the instance key: %d", r.status)
	}
	// Never a second tenant.
	if status, body := specialize(t, h.url, key, with(protocol.EnvFunctionName, "second")); status != http.StatusConflict || !strings.Contains(body, "serves function first") {
		t.Errorf("a second specialisation: %d %s; want 409", status, body)
	}
	// The function's 128 MB hold, although the pool's sandbox has 256.
	r := h.invoke(t, `{"action":"alloc","n":200}`, protocol.HeaderInstanceKey, key, "X-Nimbus-Deadline-Ms", deadlineIn(10*time.Second))
	if et := r.header.Get(protocol.HeaderErrorType); et != protocol.ErrOutOfMemory {
		t.Errorf("allocating 200 MB in a 128 MB function on a 256 MB pool: error type %q, body %s; want %s", et, r.body, protocol.ErrOutOfMemory)
	}
}

func specialize(t *testing.T, url, key string, env map[string]string) (int, string) {
	t.Helper()
	body, _ := json.Marshal(protocol.Specialization{Environment: env})
	req, _ := http.NewRequest(http.MethodPost, url+protocol.PathSpecialize, strings.NewReader(string(body)))
	if key != "" {
		req.Header.Set(protocol.HeaderInstanceKey, key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
