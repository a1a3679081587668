package packaging

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// age sets every entry of dir to a time well outside the racy window, as
// a tree that nobody is editing has.
func age(t testing.TB, dir string, at time.Time) {
	t.Helper()
	_ = filepath.Walk(dir, func(p string, _ os.FileInfo, _ error) error { return os.Chtimes(p, at, at) })
}

func TestCacheAnswersForAnUnchangedTreeAndNoticesChanges(t *testing.T) {
	dir := writeTree(t, map[string]string{"bootstrap": "#!/bin/sh\necho v1\n", "lib/a.txt": "a"})
	age(t, dir, time.Now().Add(-time.Hour))
	disk := t.TempDir()
	c := NewCache(disk)
	want, err := ZipDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if d, err := c.Digest(dir); err != nil || d != want.SHA256 {
			t.Fatalf("digest %d: %s %v, want %s", i, d, err, want.SHA256)
		}
	}
	if c.Hits() != 2 {
		t.Errorf("%d hits for three digests of an unchanged tree, want 2", c.Hits())
	}
	// Another process (a later plan) finds the digest on disk.
	later := NewCache(disk)
	if d, err := later.Digest(dir); err != nil || d != want.SHA256 || later.Hits() != 1 {
		t.Errorf("a new cache on the same directory: %s %v, %d hits", d, err, later.Hits())
	}
	// An apply zips once per process and gives the same bytes.
	pkg, err := later.Package(dir)
	if err != nil || !bytes.Equal(pkg.Zip, want.Zip) {
		t.Fatalf("Package: %v", err)
	}
	if again, _ := later.Package(dir); again != pkg {
		t.Error("a second Package of the unchanged tree zipped again")
	}

	// An edit of the same size: its new modification time tells, as editors
	// and checkouts give one.
	if err := os.WriteFile(filepath.Join(dir, "lib/a.txt"), []byte("b"), 0o644); err != nil {
		t.Fatal(err)
	}
	age(t, dir, time.Now().Add(-30*time.Minute))
	changed, _ := ZipDir(dir)
	if d, err := NewCache(disk).Digest(dir); err != nil || d != changed.SHA256 || d == want.SHA256 {
		t.Errorf("after an edit: %s %v, want %s", d, err, changed.SHA256)
	}
	// A new file, then its removal, then a changed mode: each a new digest.
	for _, step := range []struct {
		name string
		edit func() error
	}{
		{"new file", func() error { return os.WriteFile(filepath.Join(dir, "lib/new.txt"), []byte("n"), 0o644) }},
		{"removed file", func() error { return os.Remove(filepath.Join(dir, "lib/new.txt")) }},
		{"mode", func() error { return os.Chmod(filepath.Join(dir, "lib/a.txt"), 0o755) }},
	} {
		name, edit := step.name, step.edit
		before, _ := NewCache(disk).Digest(dir)
		if err := edit(); err != nil {
			t.Fatal(err)
		}
		age(t, dir, time.Now().Add(-10*time.Minute).Add(time.Duration(len(name))*time.Second))
		fresh, _ := ZipDir(dir)
		if d, _ := NewCache(disk).Digest(dir); d != fresh.SHA256 {
			t.Errorf("%s: the cache answered %s, the tree packages to %s (before %s)", name, d, fresh.SHA256, before)
		}
	}
}

// A file written within the racy window may change again within the same
// modification time: such a tree is packaged every time, never cached.
func TestCacheDoesNotTrustRecentlyModifiedTrees(t *testing.T) {
	dir := writeTree(t, map[string]string{"bootstrap": "#!/bin/sh\n"})
	c := NewCache(t.TempDir())
	for i := 0; i < 2; i++ {
		if _, err := c.Digest(dir); err != nil {
			t.Fatal(err)
		}
	}
	if c.Hits() != 0 {
		t.Errorf("a tree written just now was answered from the cache (%d hits)", c.Hits())
	}
	entries, _ := os.ReadDir(c.Dir)
	if len(entries) != 0 {
		t.Errorf("a racy tree's digest was kept on disk: %v", entries)
	}
}

// Errors are the packaging's own, never cached.
func TestCacheReportsPackagingErrors(t *testing.T) {
	c := NewCache(t.TempDir())
	if _, err := c.Digest(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing source gave no error")
	}
	empty := t.TempDir()
	age(t, empty, time.Now().Add(-time.Hour))
	if _, err := c.Digest(empty); err == nil {
		t.Error("an empty directory gave no error")
	}
}

// bigTree is a 12 MB source of 40 files, like a Go function with assets.
func bigTree(b *testing.B) string {
	dir := b.TempDir()
	buf := make([]byte, 300<<10)
	for i := 0; i < 40; i++ {
		_, _ = rand.Read(buf)
		if err := os.WriteFile(filepath.Join(dir, "asset-"+string(rune('a'+i%26))+string(rune('a'+i/26))), buf, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	age(b, dir, time.Now().Add(-time.Hour))
	return dir
}

// BenchmarkFloorWalk is the least a plan must do to know the source did
// not change: walk its entries.
func BenchmarkFloorWalk(b *testing.B) {
	dir := bigTree(b)
	for b.Loop() {
		_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, _ error) error { _, _ = d.Info(); return nil })
	}
}

// BenchmarkDigestUncached is what every plan paid before the cache.
func BenchmarkDigestUncached(b *testing.B) {
	dir := bigTree(b)
	for b.Loop() {
		if _, err := FromPath(dir); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDigestCached is a plan of an unchanged source, digest on disk.
func BenchmarkDigestCached(b *testing.B) {
	dir := bigTree(b)
	disk := b.TempDir()
	if _, err := NewCache(disk).Digest(dir); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := NewCache(disk).Digest(dir); err != nil {
			b.Fatal(err)
		}
	}
}
