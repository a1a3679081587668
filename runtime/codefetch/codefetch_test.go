package codefetch

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

func testZip(t *testing.T, files map[string]string) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, body := range files {
		hdr := &zip.FileHeader{Name: name, Method: zip.Deflate}
		hdr.SetMode(0o644)
		if name == "bootstrap" {
			hdr.SetMode(0o755)
		}
		w, err := zw.CreateHeader(hdr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = w.Write([]byte(body))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	return buf.Bytes(), hex.EncodeToString(sum[:])
}

// store serves data at any path that carries a signature, like the
// gateway's signed URLs, and counts requests.
func store(t *testing.T, data []byte, status int) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Query().Get("X-Nimbus-Signature") != "sig" {
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"message":"the signature does not match"}`))
			return
		}
		if status != http.StatusOK {
			w.WriteHeader(status)
			_, _ = w.Write([]byte(`{"message":"try later"}`))
			return
		}
		_, _ = w.Write(data)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func TestFetchVerifiesAndUnpacks(t *testing.T) {
	data, digest := testZip(t, map[string]string{"bootstrap": "#!/bin/sh\n", "lib/util.py": "x = 1\n"})
	srv, _ := store(t, data, http.StatusOK)
	dir := filepath.Join(t.TempDir(), "function")
	res, err := Fetch(context.Background(), Request{URL: srv.URL + "/v1/artifacts/sha256/" + digest + "?X-Nimbus-Signature=sig", SHA256: digest, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if res.Bytes != len(data) || strings.Contains(res.From, "sig") {
		t.Errorf("result %+v: want %d bytes and a URL without its signature", res, len(data))
	}
	st, err := os.Stat(filepath.Join(dir, "bootstrap"))
	if err != nil || st.Mode().Perm()&0o111 == 0 {
		t.Errorf("bootstrap should be unpacked executable: %v %v", st, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "lib", "util.py")); err != nil || string(b) != "x = 1\n" {
		t.Errorf("lib/util.py: %q %v", b, err)
	}
}

func TestFetchRefusesATamperedPackage(t *testing.T) {
	_, digest := testZip(t, map[string]string{"bootstrap": "good"})
	tampered, _ := testZip(t, map[string]string{"bootstrap": "evil"})
	srv, _ := store(t, tampered, http.StatusOK)
	dir := filepath.Join(t.TempDir(), "function")
	_, err := Fetch(context.Background(), Request{URL: srv.URL + "/p?X-Nimbus-Signature=sig", SHA256: digest, Dir: dir})
	if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "not sha256:"+digest) || !strings.Contains(err.Error(), "apply again") {
		t.Fatalf("want a clear refusal of the tampered package, got %v", err)
	}
	if strings.Contains(err.Error(), "sig") {
		t.Errorf("the error shows the URL's signature: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("nothing of a tampered package may be unpacked: %v", err)
	}
}

// The function listener comes first; a listener that refuses (an older
// gateway without signed downloads there) leaves the URL itself.
func TestFetchPrefersTheFunctionListenerAndFallsBack(t *testing.T) {
	data, digest := testZip(t, map[string]string{"bootstrap": "x"})
	main, mainHits := store(t, data, http.StatusOK)
	fnListener, fnHits := store(t, data, http.StatusOK)
	u := main.URL + "/v1/artifacts/sha256/" + digest + "?X-Nimbus-Signature=sig"
	res, err := Fetch(context.Background(), Request{URL: u, SHA256: digest, FunctionGateway: fnListener.URL, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if fnHits.Load() != 1 || mainHits.Load() != 0 || !strings.HasPrefix(res.From, fnListener.URL) {
		t.Errorf("want the function listener only: listener %d, main %d, from %s", fnHits.Load(), mainHits.Load(), res.From)
	}

	refusing := httptest.NewServer(http.NotFoundHandler())
	defer refusing.Close()
	res, err = Fetch(context.Background(), Request{URL: u, SHA256: digest, FunctionGateway: refusing.URL, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.From, main.URL) || res.FailedAttempts != 1 {
		t.Errorf("want the URL itself after the listener refused: %+v", res)
	}
}

func TestFetchRetriesAFailingStoreAndReportsARefusal(t *testing.T) {
	data, digest := testZip(t, map[string]string{"bootstrap": "x"})
	failing, hits := store(t, data, http.StatusServiceUnavailable)
	_, err := Fetch(context.Background(), Request{URL: failing.URL + "/p?X-Nimbus-Signature=sig", SHA256: digest, Dir: t.TempDir(), Attempts: 3})
	if err == nil || hits.Load() != 3 || !strings.Contains(err.Error(), "try later") {
		t.Fatalf("want 3 attempts and the store's message, got %d attempts: %v", hits.Load(), err)
	}
	forbidden, hits := store(t, data, http.StatusOK)
	_, err = Fetch(context.Background(), Request{URL: forbidden.URL + "/p?X-Nimbus-Signature=forged", SHA256: digest, Dir: t.TempDir()})
	if err == nil || hits.Load() != 1 || !strings.Contains(err.Error(), "signature does not match") {
		t.Fatalf("a refused signature is not retried and its reason is shown: %d attempts: %v", hits.Load(), err)
	}
}

// A store that cannot be reached is named, and its signature is not.
func TestFetchErrorsKeepTheSignatureOut(t *testing.T) {
	_, digest := testZip(t, map[string]string{"bootstrap": "x"})
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	_, err := Fetch(context.Background(), Request{URL: closed.URL + "/p?X-Nimbus-Signature=secret", SHA256: digest, Dir: t.TempDir(), Attempts: 1})
	if err == nil || !strings.Contains(err.Error(), closed.URL+"/p") || strings.Contains(err.Error(), "secret") {
		t.Fatalf("want the URL without its signature in %v", err)
	}
}

func TestFetchRejectsBadRequests(t *testing.T) {
	for _, req := range []Request{
		{URL: "not a url", SHA256: strings.Repeat("a", 64)},
		{URL: "http://127.0.0.1:1/p", SHA256: "abc"},
	} {
		if _, err := Fetch(context.Background(), req); err == nil {
			t.Errorf("%+v: want an error", req)
		}
	}
}

// A body cut short of its announced length is refused, and nothing of it
// is unpacked.
func TestShortBodyIsRefused(t *testing.T) {
	data, digest := testZip(t, map[string]string{"bootstrap": strings.Repeat("x", 64<<10)})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		_, _ = w.Write(data[:len(data)/2])
	}))
	defer srv.Close()
	dir := filepath.Join(t.TempDir(), "function")
	_, err := Fetch(context.Background(), Request{URL: srv.URL + "/v1/artifacts/sha256/" + digest + "?X-Nimbus-Signature=sig", SHA256: digest, Dir: dir, Attempts: 1})
	if err == nil || !strings.Contains(err.Error(), "bytes it announced") {
		t.Fatalf("got %v, want a refusal of the short body", err)
	}
	if _, statErr := os.Stat(dir); !errors.Is(statErr, os.ErrNotExist) {
		t.Errorf("something was unpacked from a short body: %v", statErr)
	}
}
