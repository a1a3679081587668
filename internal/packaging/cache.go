package packaging

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"
)

// racyWindow: a file modified this recently may change again within the
// same modification time, unseen by a fingerprint, so a tree holding one
// is packaged every time (git treats its index the same way).
const racyWindow = 2 * time.Second

var digestPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Cache remembers packages by a cheap fingerprint of their source: the
// paths, types, permissions, sizes and modification times of its files.
// An unchanged tree then costs a walk of its directory entries instead of
// reading, zipping and hashing every file: a plan of many functions that
// share one large package packages it once, and a later plan not at all.
//
// Digests also go to Dir, when set, so that separate runs (each plan and
// apply is a new provider process) share them. Zips stay in memory, for
// one process only: an apply always zips what it uploads, and its digest
// replaces a stale one.
type Cache struct {
	Dir string

	mu       sync.Mutex
	packages map[string]*Package // fingerprint → package
	hits     int
}

// NewCache returns a cache that keeps digests in dir ("" for memory only).
func NewCache(dir string) *Cache { return &Cache{Dir: dir, packages: map[string]*Package{}} }

// Digest is the sha256 of the package that source makes, from the cache
// when the source has not changed since it was last packaged.
func (c *Cache) Digest(source string) (string, error) {
	fp, stable, err := fingerprint(source)
	if err == nil {
		if digest, ok := c.lookup(fp); ok {
			return digest, nil
		}
	}
	pkg, err := c.build(source, fp, stable && err == nil)
	if err != nil {
		return "", err
	}
	return pkg.SHA256, nil
}

// Package packages source, once per process for an unchanged source.
func (c *Cache) Package(source string) (*Package, error) {
	fp, stable, err := fingerprint(source)
	if err == nil {
		c.mu.Lock()
		pkg, ok := c.packages[fp]
		if ok {
			c.hits++
		}
		c.mu.Unlock()
		if ok {
			return pkg, nil
		}
	}
	return c.build(source, fp, stable && err == nil)
}

// Hits counts the answers the cache gave without packaging.
func (c *Cache) Hits() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits
}

func (c *Cache) lookup(fp string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if pkg, ok := c.packages[fp]; ok {
		c.hits++
		return pkg.SHA256, true
	}
	if c.Dir == "" {
		return "", false
	}
	b, err := os.ReadFile(filepath.Join(c.Dir, fp))
	if err != nil || !digestPattern.Match(b) {
		return "", false
	}
	c.hits++
	return string(b), true
}

// build packages source and remembers it under fp when the tree is
// stable (no file modified within racyWindow).
func (c *Cache) build(source, fp string, stable bool) (*Package, error) {
	pkg, err := FromPath(source)
	if err != nil || !stable {
		return pkg, err
	}
	c.mu.Lock()
	c.packages[fp] = pkg
	c.mu.Unlock()
	if c.Dir != "" {
		// The cache only saves work: a digest it cannot keep is packaged
		// again next time.
		_ = writeAtomic(filepath.Join(c.Dir, fp), []byte(pkg.SHA256))
	}
	return pkg, nil
}

// fingerprint hashes what identifies a source's content cheaply: its
// absolute path and, for every entry, its path, type and permissions,
// size and modification time. stable is false when an entry was modified
// within racyWindow (or in the future).
func fingerprint(source string) (fp string, stable bool, err error) {
	abs, err := filepath.Abs(source)
	if err != nil {
		return "", false, err
	}
	h := sha256.New()
	fmt.Fprintf(h, "nimbus-package-fingerprint-v2\x00%s\x00", abs)
	now := time.Now()
	stable = true
	add := func(rel string, info fs.FileInfo) {
		fmt.Fprintf(h, "%s\x00%d\x00%d\x00%d\x00", rel, uint32(info.Mode()), info.Size(), info.ModTime().UnixNano())
		if now.Sub(info.ModTime()) < racyWindow {
			stable = false
		}
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", false, err
	}
	if !st.IsDir() {
		add(".", st)
		return hex.EncodeToString(h.Sum(nil)), stable, nil
	}
	err = filepath.WalkDir(abs, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(abs, p)
		add(filepath.ToSlash(rel), info)
		return nil
	})
	if err != nil {
		return "", false, err
	}
	return hex.EncodeToString(h.Sum(nil)), stable, nil
}

func writeAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
