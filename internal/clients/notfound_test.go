package clients

import (
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	nomadapi "github.com/hashicorp/nomad/api"
)

func TestNomadNotFoundChecksTheStatusCode(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/job/missing" {
			http.Error(w, "job not found", http.StatusNotFound)
			return
		}
		http.Error(w, "boom 404", http.StatusInternalServerError)
	}))
	defer srv.Close()
	info := func(addr, job string) error {
		c, err := nomadapi.NewClient(&nomadapi.Config{Address: addr})
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = c.Jobs().Info(job, nil)
		return err
	}
	if err := info(srv.URL, "missing"); !NomadNotFound(err) {
		t.Errorf("a 404 answer is not found: %v", err)
	}
	if err := info(srv.URL, "broken"); err == nil || NomadNotFound(err) {
		t.Errorf("a 500 whose text holds 404 is not 'not found': %v", err)
	}
	// A closed port, and a path holding "404": a connection error.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	_ = ln.Close()
	if err := info(closed, "job-404"); err == nil || NomadNotFound(err) {
		t.Errorf("a connection error is not 'not found': %v", err)
	}
}
