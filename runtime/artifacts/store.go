// Package artifacts is the gateway's store of function packages: uploads
// verified against their sha256, downloads by signed URL, a quota and the
// collection of what no function references. It decides nothing about
// callers itself (Uploaders does) and reads no KV.
package artifacts

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/refusal"
)

// uploadTimeout bounds the reading of one upload: 50 MB at 200 KB/s.
const uploadTimeout = 4 * time.Minute

// MaxArtifactBytes bounds an upload: the packaging limit.
const MaxArtifactBytes = 50 * 1024 * 1024

var hexDigest = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Store keeps function packages in a directory, named by their
// sha256. A blob becomes visible only complete and verified: it is written
// to a temporary file, synced, and renamed into place.
type Store struct {
	Dir    string
	Log    *slog.Logger
	Limits StoreLimits
	// Auth admits uploads and reads by access keys with upload_artifacts;
	// URLs signs the URLs Nomad clients fetch with. Without them (tests of
	// the store alone) everyone may do everything.
	Auth Uploaders
	URLs *URLSigner
}

// Uploaders decides who may upload and read packages: the holders of
// access keys with upload_artifacts (the gateway's authentication).
type Uploaders interface {
	MayUpload(r *http.Request, digest string) *refusal.Error
}

// mayUpload refuses a caller without upload_artifacts; without Auth,
// everyone may.
func (s *Store) mayUpload(r *http.Request, digest string) *refusal.Error {
	if s.Auth == nil {
		return nil
	}
	return s.Auth.MayUpload(r, digest)
}

// NewStore prepares dir and removes temporary files a crash left.
func NewStore(dir string, log *slog.Logger) (*Store, error) {
	if err := os.MkdirAll(filepath.Join(dir, "sha256"), 0o755); err != nil {
		return nil, err
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, "sha256", ".upload-*"))
	for _, p := range leftovers {
		_ = os.Remove(p)
	}
	if log == nil {
		log = slog.Default()
	}
	return &Store{Dir: dir, Log: log}, nil
}

func (s *Store) path(digest string) string {
	return filepath.Join(s.Dir, "sha256", digest)
}

// ErrDigestMismatch is returned when the content does not hash to the name.
var ErrDigestMismatch = errors.New("content does not match its sha256")

// Put stores r as digest. It returns created=false when the blob was
// already there (uploads are idempotent).
func (s *Store) Put(digest string, r io.Reader) (created bool, err error) {
	if _, err := os.Stat(s.path(digest)); err == nil {
		// Drain so the client's upload completes cleanly. The upload
		// counts as new: a deployment is under way, and its grace period
		// starts again.
		_, _ = io.Copy(io.Discard, r)
		now := time.Now()
		_ = os.Chtimes(s.path(digest), now, now)
		return false, nil
	}
	tmp, err := os.CreateTemp(filepath.Join(s.Dir, "sha256"), ".upload-*")
	if err != nil {
		return false, err
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	if _, err = io.Copy(io.MultiWriter(tmp, h), r); err != nil {
		return false, err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != digest {
		return false, fmt.Errorf("%w: the upload hashes to %s", ErrDigestMismatch, got)
	}
	if err = tmp.Sync(); err != nil {
		return false, err
	}
	if err = tmp.Close(); err != nil {
		return false, err
	}
	if err = os.Chmod(tmp.Name(), 0o444); err != nil {
		return false, err
	}
	if err = os.Rename(tmp.Name(), s.path(digest)); err != nil {
		return false, err
	}
	return true, nil
}

// Open returns the blob for reading.
func (s *Store) Open(digest string) (*os.File, error) {
	return os.Open(s.path(digest))
}

// Handler serves PUT, GET and HEAD on /v1/artifacts/sha256/{digest}.
func (s *Store) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/artifacts/sha256/{digest}", s.servePut)
	mux.HandleFunc("GET /v1/artifacts/sha256/{digest}", s.serveGet)
	mux.HandleFunc("HEAD /v1/artifacts/sha256/{digest}", s.serveGet)
	mux.HandleFunc("POST /v1/artifacts/sha256/{digest}/url", s.serveSignURL)
	return mux
}

func (s *Store) servePut(w http.ResponseWriter, r *http.Request) {
	digest, ok := s.uploaderDigest(w, r)
	if !ok {
		return
	}
	if r.ContentLength > MaxArtifactBytes {
		refusal.Write(w, refusal.Native, refusal.New(http.StatusRequestEntityTooLarge, "ArtifactTooLarge", fmt.Sprintf("the artifact is %d bytes; at most %d are accepted", r.ContentLength, MaxArtifactBytes)))
		return
	}
	// An upload streams to disk, so it holds no memory, but a client that
	// sends slowly must not hold its connection for ever either.
	if _, err := os.Stat(s.path(digest)); err != nil {
		size := r.ContentLength
		if size < 0 {
			size = MaxArtifactBytes
		}
		if full := s.roomFor(size); full != nil {
			refusal.Write(w, refusal.Native, full)
			return
		}
	}
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(uploadTimeout))
	body := http.MaxBytesReader(w, r.Body, MaxArtifactBytes)
	created, err := s.Put(digest, body)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.Is(err, ErrDigestMismatch):
		refusal.Write(w, refusal.Native, refusal.New(http.StatusBadRequest, "DigestMismatch", fmt.Sprintf("refused: %v, not %s; upload the exact bytes you hashed", err, digest)))
		return
	case errors.As(err, &tooLarge):
		refusal.Write(w, refusal.Native, refusal.New(http.StatusRequestEntityTooLarge, "ArtifactTooLarge", fmt.Sprintf("at most %d bytes are accepted", MaxArtifactBytes)))
		return
	case err != nil:
		s.Log.Error("storing artifact", "digest", digest, "err", err)
		refusal.Write(w, refusal.Native, refusal.New(http.StatusInternalServerError, "StoreError", "the gateway could not store the artifact; retry later"))
		return
	}
	w.Header().Set("Location", r.URL.Path)
	if created {
		s.Log.Info("artifact stored", "digest", digest)
		w.WriteHeader(http.StatusCreated)
	} else {
		w.WriteHeader(http.StatusOK)
	}
}

// SignedDownloads serves packages to signed URLs only, and nothing else
// of the store: the function listener offers it to instances, whose host
// fetches its own package with the URL its job names.
func (s *Store) SignedDownloads() http.Handler {
	mux := http.NewServeMux()
	serve := func(w http.ResponseWriter, r *http.Request) {
		digest, ok := digestParam(w, r)
		if !ok {
			return
		}
		refused := refusal.New(http.StatusForbidden, "AccessDeniedException", "this listener serves packages only to signed URLs (the one in the function's job)")
		if q := r.URL.Query(); q.Has(querySignature) && s.URLs != nil {
			refused = s.URLs.check(digest, q)
		}
		if refused != nil {
			refusal.Write(w, refusal.Native, refused)
			return
		}
		s.serveBlob(w, r, digest)
	}
	mux.HandleFunc("GET /v1/artifacts/sha256/{digest}", serve)
	mux.HandleFunc("HEAD /v1/artifacts/sha256/{digest}", serve)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		refusal.Write(w, refusal.Native, refusal.New(http.StatusNotFound, "ResourceNotFoundException",
			r.Method+" "+r.URL.Path+" is not served to functions: this listener serves packages only to GET with a signed URL; upload on the gateway's main listener"))
	})
	return mux
}

func (s *Store) serveGet(w http.ResponseWriter, r *http.Request) {
	digest, ok := digestParam(w, r)
	if !ok {
		return
	}
	// Nomad clients and instances come with a signed URL; the provider,
	// checking a package, with its key.
	var refused *refusal.Error
	if q := r.URL.Query(); q.Has(querySignature) && s.URLs != nil {
		refused = s.URLs.check(digest, q)
	} else {
		refused = s.mayUpload(r, digest)
	}
	if refused != nil {
		refusal.Write(w, refusal.Native, refused)
		return
	}
	s.serveBlob(w, r, digest)
}

// serveBlob sends a stored package to a caller already checked.
func (s *Store) serveBlob(w http.ResponseWriter, r *http.Request, digest string) {
	f, err := s.Open(digest)
	if errors.Is(err, os.ErrNotExist) {
		refusal.Write(w, refusal.Native, refusal.New(http.StatusNotFound, "ArtifactNotFound", fmt.Sprintf("no artifact sha256:%s; upload it with PUT first", digest)))
		return
	}
	if err != nil {
		refusal.Write(w, refusal.Native, refusal.New(http.StatusInternalServerError, "StoreError", err.Error()))
		return
	}
	defer func() { _ = f.Close() }()
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("ETag", `"sha256:`+digest+`"`)
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	http.ServeContent(w, r, "", time.Time{}, f)
}

// serveSignURL gives a caller that may upload a signed URL of a stored
// artifact, for the function's job.
func (s *Store) serveSignURL(w http.ResponseWriter, r *http.Request) {
	digest, ok := s.uploaderDigest(w, r)
	if !ok {
		return
	}
	if _, err := os.Stat(s.path(digest)); err != nil {
		refusal.Write(w, refusal.Native, refusal.New(http.StatusNotFound, "ArtifactNotFound", fmt.Sprintf("no artifact sha256:%s to sign a URL for; upload it with PUT first", digest)))
		return
	}
	if s.URLs == nil {
		refusal.WriteJSON(w, http.StatusOK, map[string]string{"path": r.URL.Path[:len(r.URL.Path)-len("/url")]})
		return
	}
	query, expires := s.URLs.Sign(digest)
	refusal.WriteJSON(w, http.StatusOK, map[string]string{
		"path":    "/v1/artifacts/sha256/" + digest + "?" + query,
		"expires": expires.UTC().Format(time.RFC3339),
	})
}

// uploaderDigest reads the digest of a request that needs
// upload_artifacts, or refuses the request.
func (s *Store) uploaderDigest(w http.ResponseWriter, r *http.Request) (string, bool) {
	digest, ok := digestParam(w, r)
	if !ok {
		return "", false
	}
	if refused := s.mayUpload(r, digest); refused != nil {
		refusal.Write(w, refusal.Native, refused)
		return "", false
	}
	return digest, true
}

func digestParam(w http.ResponseWriter, r *http.Request) (string, bool) {
	d := r.PathValue("digest")
	if !hexDigest.MatchString(d) {
		refusal.Write(w, refusal.Native, refusal.New(http.StatusBadRequest, "InvalidDigest", fmt.Sprintf("%q is not a sha256 digest: use 64 lowercase hex characters", d)))
		return "", false
	}
	return d, true
}
