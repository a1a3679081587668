package clients

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// fakeStore is a tiny in-memory stand-in for the gateway's store, enough
// to count what the client sends (the real store has its own tests).
type fakeStore struct {
	mu    sync.Mutex
	blobs map[string][]byte
	puts  int
}

func (f *fakeStore) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	digest := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
	switch r.Method {
	case http.MethodHead, http.MethodGet:
		b, ok := f.blobs[digest]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		_, _ = w.Write(b)
	case http.MethodPut:
		f.puts++
		b, _ := io.ReadAll(r.Body)
		f.blobs[digest] = b
		w.WriteHeader(http.StatusCreated)
	}
}

func TestEnsureUploadsOnlyWhenMissing(t *testing.T) {
	store := &fakeStore{blobs: map[string][]byte{}}
	srv := httptest.NewServer(store)
	defer srv.Close()
	a := Artifacts{BaseURL: srv.URL, HTTP: NewHTTPClient(fastRetries, nil, nil)}
	data := []byte("zip bytes")
	sum := sha256.Sum256(data)
	digest := hex.EncodeToString(sum[:])

	for i, wantUploaded := range []bool{true, false, false} {
		uploaded, err := a.Ensure(context.Background(), digest, data)
		if err != nil || uploaded != wantUploaded {
			t.Fatalf("call %d: uploaded=%v err=%v, want uploaded=%v", i, uploaded, err, wantUploaded)
		}
	}
	if store.puts != 1 {
		t.Errorf("%d uploads; HEAD should have prevented all but the first", store.puts)
	}
	if got, err := a.Verify(context.Background(), digest); err != nil || got != digest {
		t.Errorf("verify: %s %v", got, err)
	}
	store.blobs[digest] = []byte("tampered")
	if got, _ := a.Verify(context.Background(), digest); got == digest {
		t.Error("verify must notice that the stored bytes changed")
	}
}

func TestEnsureNamesTheGatewaySettingWhenUnreachable(t *testing.T) {
	a := Artifacts{BaseURL: "http://127.0.0.1:1", HTTP: NewHTTPClient(fastRetries, nil, nil)}
	_, err := a.Ensure(context.Background(), strings.Repeat("a", 64), []byte("x"))
	if err == nil || !strings.Contains(err.Error(), "NIMBUS_GATEWAY_URL") {
		t.Fatalf("got %v", err)
	}
}
