package clients

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var fastRetries = RetryPolicy{MaxRetries: 3, WaitMin: time.Millisecond, WaitMax: 5 * time.Millisecond, DialTimeout: time.Second}

func TestRetriesOnlyTransientStatuses(t *testing.T) {
	tests := []struct {
		status       int
		wantAttempts int32
	}{
		{http.StatusOK, 1},
		{http.StatusBadRequest, 1},
		{http.StatusForbidden, 1},
		{http.StatusNotFound, 1},
		{http.StatusConflict, 1},
		{http.StatusTooManyRequests, 4},
		{http.StatusInternalServerError, 4},
		{http.StatusBadGateway, 4},
		{http.StatusServiceUnavailable, 4},
	}
	for _, tc := range tests {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			var attempts atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				attempts.Add(1)
				w.WriteHeader(tc.status)
			}))
			defer srv.Close()

			resp, err := NewHTTPClient(fastRetries, nil, nil).Post(srv.URL, "application/json", strings.NewReader(`{"a":1}`))
			if err != nil {
				t.Fatalf("request: %v", err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want the server's last answer %d", resp.StatusCode, tc.status)
			}
			if got := attempts.Load(); got != tc.wantAttempts {
				t.Errorf("%d attempts, want %d", got, tc.wantAttempts)
			}
		})
	}
}

func TestRetryReplaysBodyAndRecovers(t *testing.T) {
	var attempts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 64)
		n, _ := r.Body.Read(buf)
		if string(buf[:n]) != "payload" {
			t.Errorf("attempt %d got body %q", attempts.Load(), buf[:n])
		}
		if attempts.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	defer srv.Close()

	resp, err := NewHTTPClient(fastRetries, nil, nil).Post(srv.URL, "text/plain", strings.NewReader("payload"))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || attempts.Load() != 3 {
		t.Fatalf("status %d after %d attempts, want 200 after 3", resp.StatusCode, attempts.Load())
	}
}

func TestConnectionRefusedIsBounded(t *testing.T) {
	// A port that was just closed refuses connections.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()

	resp, err := NewHTTPClient(fastRetries, nil, nil).Get("http://" + addr + "/v1/status/leader")
	if err == nil {
		_ = resp.Body.Close()
	}
	var opErr *net.OpError
	if !errors.As(err, &opErr) {
		t.Fatalf("want the connection error after bounded retries, got %v", err)
	}
}

func TestTLSFilesErrorsNameTheSetting(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		files TLSFiles
		want  string
	}{
		{"missing CA file", TLSFiles{CACert: filepath.Join(dir, "nope.pem")}, "nomad.ca_file"},
		{"CA file without PEM", TLSFiles{CACert: notPEM}, "holds no PEM certificate"},
		{"cert without key", TLSFiles{ClientCert: notPEM}, "nomad.key_file"},
		{"key without cert", TLSFiles{ClientKey: notPEM}, "nomad.cert_file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewNomad(NomadConfig{Address: DefaultNomadAddress, TLS: tc.files}, fastRetries, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

func TestSkipVerifyReachesTheTransport(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()

	strict := NewHTTPClient(fastRetries, nil, nil)
	if resp, err := strict.Get(srv.URL); err == nil {
		_ = resp.Body.Close()
		t.Fatal("a self-signed server must be refused without skip_verify")
	}
	cfg, err := TLSFiles{SkipVerify: true}.tlsConfig(nomadAttrTLS, nomadEnvTLS)
	if err != nil {
		t.Fatal(err)
	}
	lax := NewHTTPClient(fastRetries, cfg, nil)
	resp, err := lax.Get(srv.URL)
	if err != nil {
		t.Fatalf("skip_verify should accept the self-signed server: %v", err)
	}
	_ = resp.Body.Close()
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %x", cfg.MinVersion)
	}
}
