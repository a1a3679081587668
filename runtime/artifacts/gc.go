package artifacts

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/refusal"
)

// Defaults of the store's limits.
const (
	DefaultStoreQuota    = 10 << 30 // bytes
	DefaultArtifactGrace = 24 * time.Hour
)

// StoreLimits keeps the artifact store from growing without bound: blobs
// that no function references are deleted once older than Grace (an
// upload comes before the function record that names it, and the grace
// covers that), and an upload that would take the store past Quota is
// refused after such a collection cannot make room.
type StoreLimits struct {
	Quota int64         // bytes; 0: no quota
	Grace time.Duration // 0: DefaultArtifactGrace
	// Referenced lists the digests that functions use; ok is false while
	// the gateway does not know all functions (then nothing is collected).
	Referenced func() (digests map[string]bool, ok bool)
	// URLTTL is how long signed URLs stay valid; 0: DefaultArtifactURLTTL.
	URLTTL time.Duration
}

type blob struct {
	digest string
	size   int64
	mtime  time.Time
}

// blobs lists the stored blobs and their total size.
func (s *Store) blobs() ([]blob, int64, error) {
	entries, err := os.ReadDir(filepath.Join(s.Dir, "sha256"))
	if err != nil {
		return nil, 0, err
	}
	var out []blob
	var total int64
	for _, e := range entries {
		if !hexDigest.MatchString(e.Name()) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		out = append(out, blob{e.Name(), info.Size(), info.ModTime()})
		total += info.Size()
	}
	return out, total, nil
}

// GC deletes the blobs that no function references and that are older
// than the grace period.
func (s *Store) GC() (removed int, freed int64) {
	if s.Limits.Referenced == nil {
		return 0, 0
	}
	refs, ok := s.Limits.Referenced()
	if !ok {
		return 0, 0
	}
	grace := s.Limits.Grace
	if grace <= 0 {
		grace = DefaultArtifactGrace
	}
	list, _, err := s.blobs()
	if err != nil {
		s.Log.Warn("cannot list the artifact store", "err", err)
		return 0, 0
	}
	for _, b := range list {
		if refs[b.digest] || time.Since(b.mtime) < grace {
			continue
		}
		if err := os.Remove(s.path(b.digest)); err != nil {
			s.Log.Warn("cannot delete an unreferenced artifact", "digest", b.digest, "err", err)
			continue
		}
		s.Log.Info("artifact deleted: no function references it", "digest", b.digest, "bytes", b.size, "age", time.Since(b.mtime).Round(time.Second))
		removed++
		freed += b.size
	}
	return removed, freed
}

// roomFor makes room for an upload of n bytes under the quota, collecting
// first if it must; the refusal says what to do.
func (s *Store) roomFor(n int64) *refusal.Error {
	if s.Limits.Quota <= 0 {
		return nil
	}
	_, total, err := s.blobs()
	if err == nil && total+n > s.Limits.Quota {
		s.GC()
		_, total, err = s.blobs()
	}
	if err != nil || total+n <= s.Limits.Quota {
		return nil
	}
	return refusal.New(http.StatusInsufficientStorage, "ArtifactStoreFull", fmt.Sprintf(
		"the artifact store holds %d MB of its %d MB quota (-store-quota-mb), all of it used by functions or younger than %s (-artifact-grace); delete unused functions, or raise the quota",
		total>>20, s.Limits.Quota>>20, s.Limits.Grace))
}
