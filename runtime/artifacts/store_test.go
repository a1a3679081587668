package artifacts

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func newStore(t *testing.T) (*Store, *httptest.Server) {
	t.Helper()
	store, err := NewStore(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(store.Handler())
	t.Cleanup(srv.Close)
	return store, srv
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// storeAnswer is an answer whose body was read and closed.
type storeAnswer struct {
	StatusCode    int
	Header        http.Header
	ContentLength int64
}

func do(t *testing.T, method, url string, body []byte) (storeAnswer, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return storeAnswer{StatusCode: resp.StatusCode, Header: resp.Header, ContentLength: resp.ContentLength}, b
}

func TestPutGetHead(t *testing.T) {
	_, srv := newStore(t)
	blob := []byte("PK\x03\x04 pretend zip")
	url := srv.URL + "/v1/artifacts/sha256/" + digestOf(blob)

	if resp, body := do(t, http.MethodHead, url, nil); resp.StatusCode != http.StatusNotFound || len(body) != 0 {
		t.Fatalf("HEAD before upload: %d", resp.StatusCode)
	}
	if resp, _ := do(t, http.MethodPut, url, blob); resp.StatusCode != http.StatusCreated {
		t.Fatalf("first PUT: %d", resp.StatusCode)
	}
	if resp, _ := do(t, http.MethodPut, url, blob); resp.StatusCode != http.StatusOK {
		t.Fatalf("the same upload again is harmless: %d", resp.StatusCode)
	}
	resp, body := do(t, http.MethodGet, url, nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, blob) || resp.Header.Get("ETag") != `"sha256:`+digestOf(blob)+`"` {
		t.Fatalf("GET: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	if resp, _ := do(t, http.MethodHead, url, nil); resp.StatusCode != http.StatusOK || resp.ContentLength != int64(len(blob)) {
		t.Fatalf("HEAD after upload: %d length %d", resp.StatusCode, resp.ContentLength)
	}
}

func TestMismatchIsRefusedAndLeavesNothing(t *testing.T) {
	store, srv := newStore(t)
	claimed := digestOf([]byte("what I hashed"))
	resp, body := do(t, http.MethodPut, srv.URL+"/v1/artifacts/sha256/"+claimed, []byte("something else"))
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var e map[string]string
	if err := json.Unmarshal(body, &e); err != nil || e["errorType"] != "DigestMismatch" || !strings.Contains(e["errorMessage"], digestOf([]byte("something else"))) {
		t.Fatalf("want a JSON DigestMismatch naming the actual digest, got %s", body)
	}
	entries, _ := os.ReadDir(filepath.Join(store.Dir, "sha256"))
	if len(entries) != 0 {
		t.Errorf("a refused upload left %d files", len(entries))
	}
	if resp, _ := do(t, http.MethodGet, srv.URL+"/v1/artifacts/sha256/"+claimed, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("a refused upload must not be served: %d", resp.StatusCode)
	}
}

func TestBadDigestAndNotFoundAreJSON(t *testing.T) {
	_, srv := newStore(t)
	for _, tc := range []struct {
		method, digest string
		status         int
		errType        string
	}{
		{http.MethodGet, "abc", http.StatusBadRequest, "InvalidDigest"},
		{http.MethodPut, strings.Repeat("G", 64), http.StatusBadRequest, "InvalidDigest"},
		{http.MethodGet, strings.Repeat("0", 64), http.StatusNotFound, "ArtifactNotFound"},
	} {
		resp, body := do(t, tc.method, srv.URL+"/v1/artifacts/sha256/"+tc.digest, []byte("x"))
		var e map[string]string
		if resp.StatusCode != tc.status || json.Unmarshal(body, &e) != nil || e["errorType"] != tc.errType || e["errorMessage"] == "" {
			t.Errorf("%s %s: %d %s", tc.method, tc.digest, resp.StatusCode, body)
		}
	}
}

func TestTooLargeIsRefused(t *testing.T) {
	_, srv := newStore(t)
	big := make([]byte, MaxArtifactBytes+1)
	resp, body := do(t, http.MethodPut, srv.URL+"/v1/artifacts/sha256/"+digestOf(big), big)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "ArtifactTooLarge") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

func TestConcurrentUploadsOfOneBlob(t *testing.T) {
	store, srv := newStore(t)
	blob := bytes.Repeat([]byte("abc"), 100000)
	url := srv.URL + "/v1/artifacts/sha256/" + digestOf(blob)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if resp, _ := do(t, http.MethodPut, url, blob); resp.StatusCode >= 300 {
				t.Errorf("concurrent PUT: %d", resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	if _, body := do(t, http.MethodGet, url, nil); !bytes.Equal(body, blob) {
		t.Error("the stored blob is not the upload")
	}
	entries, _ := os.ReadDir(filepath.Join(store.Dir, "sha256"))
	if len(entries) != 1 {
		t.Errorf("want exactly the blob in the store, found %d entries", len(entries))
	}
}

func TestLeftoverUploadsAreNeverServed(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "sha256"), 0o755); err != nil {
		t.Fatal(err)
	}
	// What a crash mid-upload leaves behind.
	partial := filepath.Join(dir, "sha256", ".upload-123")
	if err := os.WriteFile(partial, []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := NewStore(dir, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(partial); !os.IsNotExist(err) {
		t.Error("a restarted store removes partial uploads")
	}
}

func put(t *testing.T, srv *httptest.Server, digest string, b []byte) storeAnswer {
	t.Helper()
	a, _ := do(t, http.MethodPut, srv.URL+"/v1/artifacts/sha256/"+digest, b)
	return a
}

func get(t *testing.T, srv *httptest.Server, digest string) storeAnswer {
	t.Helper()
	a, _ := do(t, http.MethodGet, srv.URL+"/v1/artifacts/sha256/"+digest, nil)
	return a
}

// The store does not grow without bound: a blob no function references is
// collected once past the grace period; a referenced one, or a young one
// (uploaded for a deployment under way), stays. Until the gateway knows
// every function, nothing is collected.
func TestUnreferencedArtifactsAreCollected(t *testing.T) {
	store, srv := newStore(t)
	blobs := map[string][]byte{"used": []byte("used code"), "old": []byte("old code"), "young": []byte("young code")}
	digests := map[string]string{}
	for name, b := range blobs {
		digests[name] = digestOf(b)
		if a := put(t, srv, digests[name], b); a.StatusCode != http.StatusCreated {
			t.Fatalf("upload %s: %d", name, a.StatusCode)
		}
	}
	past := time.Now().Add(-48 * time.Hour)
	for _, name := range []string{"used", "old"} {
		if err := os.Chtimes(store.path(digests[name]), past, past); err != nil {
			t.Fatal(err)
		}
	}
	known := false
	store.Limits = StoreLimits{Grace: 24 * time.Hour, Referenced: func() (map[string]bool, bool) {
		return map[string]bool{digests["used"]: true}, known
	}}
	if removed, _ := store.GC(); removed != 0 {
		t.Fatalf("collected %d blobs before the gateway knew its functions", removed)
	}
	known = true
	if removed, freed := store.GC(); removed != 1 || freed != int64(len(blobs["old"])) {
		t.Fatalf("collected %d blobs (%d bytes), want the old unreferenced one", removed, freed)
	}
	for name, want := range map[string]int{"used": http.StatusOK, "young": http.StatusOK, "old": http.StatusNotFound} {
		if a := get(t, srv, digests[name]); a.StatusCode != want {
			t.Errorf("%s after collection: %d, want %d", name, a.StatusCode, want)
		}
	}
}

// An upload that would take the store past its quota is refused with 507
// and what to do, after a collection could not make room; one that fits
// once unreferenced blobs are gone is accepted.
func TestStoreQuota(t *testing.T) {
	store, srv := newStore(t)
	first := bytes.Repeat([]byte("a"), 600)
	if a := put(t, srv, digestOf(first), first); a.StatusCode != http.StatusCreated {
		t.Fatalf("first upload: %d", a.StatusCode)
	}
	referenced := true
	store.Limits = StoreLimits{Quota: 1000, Grace: time.Nanosecond, Referenced: func() (map[string]bool, bool) {
		return map[string]bool{digestOf(first): referenced}, true
	}}
	second := bytes.Repeat([]byte("b"), 600)
	req, _ := http.NewRequest(http.MethodPut, srv.URL+"/v1/artifacts/sha256/"+digestOf(second), bytes.NewReader(second))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusInsufficientStorage || body["errorType"] != "ArtifactStoreFull" || !strings.Contains(body["errorMessage"], "-store-quota-mb") {
		t.Fatalf("an upload past the quota: %d %v; want 507 ArtifactStoreFull naming the setting", resp.StatusCode, body)
	}
	referenced = false // the function moved on to other code
	if a := put(t, srv, digestOf(second), second); a.StatusCode != http.StatusCreated {
		t.Fatalf("the upload after the old blob lost its function: %d; want it collected and the upload accepted", a.StatusCode)
	}
}
