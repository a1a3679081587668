// Package packaging turns a function's source (a directory or a zip file)
// into the zip that instances run, reproducibly: the same input gives the
// same bytes and so the same sha256 on every machine, and a change of code
// is a change of digest.
package packaging

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// MaxZipBytes is the largest package accepted: 50 MB zipped.
const MaxZipBytes = 50 * 1024 * 1024

// epoch is the fixed modification time of every entry: the earliest time a
// zip can hold, so no clock or checkout time leaks into the digest.
var epoch = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)

// Package is a function's zip and its digest.
type Package struct {
	Zip    []byte
	SHA256 string // lowercase hex
}

// FromPath packages a directory, or checks and hashes an existing zip.
func FromPath(source string) (*Package, error) {
	st, err := os.Stat(source)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", source, err)
	}
	if st.IsDir() {
		return ZipDir(source)
	}
	if st.Size() > MaxZipBytes {
		return nil, tooLarge(st.Size())
	}
	data, err := os.ReadFile(source)
	if err != nil {
		return nil, err
	}
	if err := CheckZip(data); err != nil {
		return nil, fmt.Errorf("source %s: %w", source, err)
	}
	return &Package{Zip: data, SHA256: Digest(data)}, nil
}

// ZipDir zips a directory reproducibly: entries sorted by path, fixed
// timestamps, and each file's permission bits kept (the executable bit of a
// `provided` bootstrap matters).
//
// Entries are stored, not compressed, whenever the package still fits
// MaxZipBytes that way: an instance then writes its code out at disk speed
// instead of inflating it, which for a 12 MB Go binary is 40 ms of every
// cold start against a few more megabytes on the cluster's network. A
// source too large to fit stored is deflated instead, so that any source
// that fits zipped still fits.
func ZipDir(dir string) (*Package, error) {
	entries, err := sourceFiles(dir)
	if err != nil {
		return nil, fmt.Errorf("source directory %s: %w", dir, err)
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("source directory %s holds no files", dir)
	}
	data, err := zipFiles(entries, zip.Store)
	if errors.Is(err, errTooLarge) {
		data, err = zipFiles(entries, zip.Deflate)
	}
	if errors.Is(err, errTooLarge) {
		return nil, tooLarge(int64(len(data)))
	}
	if err != nil {
		return nil, err
	}
	return &Package{Zip: data, SHA256: Digest(data)}, nil
}

// sourceFile is one file of a source directory, to be zipped.
type sourceFile struct {
	rel  string // slash-separated, relative to the source directory
	abs  string
	mode fs.FileMode
}

// sourceFiles lists a directory's files sorted by path, refusing what an
// instance could not unpack.
func sourceFiles(dir string) ([]sourceFile, error) {
	var entries []sourceFile
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("%s is a symbolic link; replace it with the file it points to", rel)
		case d.IsDir():
			return nil
		case !info.Mode().IsRegular():
			return fmt.Errorf("%s is not a regular file", rel)
		}
		entries = append(entries, sourceFile{rel: rel, abs: p, mode: info.Mode().Perm()})
		return nil
	})
	sort.Slice(entries, func(i, j int) bool { return entries[i].rel < entries[j].rel })
	return entries, err
}

// errTooLarge: the zip grew past MaxZipBytes; zipFiles then returns what
// it had written, for the message.
var errTooLarge = errors.New("package too large")

// zipFiles writes the entries with one compression method.
func zipFiles(entries []sourceFile, method uint16) ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		hdr := &zip.FileHeader{Name: e.rel, Method: method, Modified: epoch}
		// Only the executable bit varies; other bits would make the digest
		// depend on the checkout's umask.
		mode := fs.FileMode(0o644)
		if e.mode&0o111 != 0 {
			mode = 0o755
		}
		hdr.SetMode(mode)
		w, err := zw.CreateHeader(hdr)
		if err != nil {
			return nil, err
		}
		f, err := os.Open(e.abs)
		if err != nil {
			return nil, err
		}
		_, err = io.Copy(w, f)
		_ = f.Close()
		if err != nil {
			return nil, err
		}
		if buf.Len() > MaxZipBytes {
			return buf.Bytes(), errTooLarge
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	if buf.Len() > MaxZipBytes {
		return buf.Bytes(), errTooLarge
	}
	return buf.Bytes(), nil
}

// CheckZip refuses archives that are not zips, are too large, or hold
// entries that would land outside the function's directory or are not
// plain files or directories (symbolic links, devices).
func CheckZip(data []byte) error {
	if len(data) > MaxZipBytes {
		return tooLarge(int64(len(data)))
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return fmt.Errorf("not a valid zip file: %w", err)
	}
	if len(zr.File) == 0 {
		return errors.New("the zip file is empty")
	}
	var unzipped uint64
	for _, f := range zr.File {
		if err := checkEntryName(f.Name); err != nil {
			return err
		}
		// The entries' sizes as their headers state them; Extract counts
		// what it writes.
		if unzipped += f.UncompressedSize64; unzipped > MaxUnzippedBytes {
			return fmt.Errorf("the package unpacks to more than %d MB; Lambda's limit for a function's code is 250 MB too: move large assets out of the source", MaxUnzippedBytes>>20)
		}
		if mode := f.Mode(); !mode.IsRegular() && !mode.IsDir() {
			return fmt.Errorf("zip entry %q is not a regular file or a directory (%s); instances unpack only files and directories: put the file itself in the zip", f.Name, mode.Type())
		}
	}
	return nil
}

func checkEntryName(name string) error {
	clean := strings.ReplaceAll(name, `\`, "/")
	switch {
	case strings.HasPrefix(clean, "/") || (len(clean) > 1 && clean[1] == ':'):
		return fmt.Errorf("zip entry %q has an absolute path; entries must be relative to the function's root", name)
	case clean == ".." || strings.HasPrefix(clean, "../") || strings.Contains(clean, "/../") || strings.HasSuffix(clean, "/.."):
		return fmt.Errorf("zip entry %q contains \"..\" and would be extracted outside the function's directory", name)
	case path.Clean(clean) != strings.TrimSuffix(clean, "/") && !strings.HasSuffix(clean, "/"):
		return fmt.Errorf("zip entry %q is not a clean relative path", name)
	}
	return nil
}

// Digest is the lowercase hex sha256 of data.
func Digest(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func tooLarge(size int64) error {
	return fmt.Errorf("the package is %.1f MB zipped; at most %d MB is allowed: move large assets out of the source", float64(size)/(1<<20), MaxZipBytes>>20)
}
