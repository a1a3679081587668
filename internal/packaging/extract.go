package packaging

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/klauspost/compress/flate"
)

// MaxUnzippedBytes bounds what a package may unpack to, as Lambda bounds
// a function's code (250 MB unzipped): a small zip of zeros must not
// fill the client's disk.
const MaxUnzippedBytes = 250 * 1024 * 1024

// Extract unpacks a package into dir, which it creates. Every entry must
// pass CheckZip's rules; files keep their executable bit. The writes go
// through an os.Root, so no entry, however named, lands outside dir.
func Extract(data []byte, dir string) error { return extract(data, dir, MaxUnzippedBytes) }

// extract is Extract with a budget of unzipped bytes.
func extract(data []byte, dir string, budget int64) error {
	if err := CheckZip(data); err != nil {
		return err
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return fmt.Errorf("not a valid zip file: %w", err)
	}
	// klauspost/compress inflates about a fifth faster than the standard
	// library: a 12 MB Go binary is most of a Go function's cold start
	// inside its instance.
	zr.RegisterDecompressor(zip.Deflate, func(r io.Reader) io.ReadCloser { return flate.NewReader(r) })
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer func() { _ = root.Close() }()
	limit := budget
	for _, f := range zr.File {
		name := strings.TrimSuffix(strings.ReplaceAll(f.Name, `\`, "/"), "/")
		if name == "" || name == "." {
			continue
		}
		if f.Mode().IsDir() || strings.HasSuffix(f.Name, "/") {
			if err := root.MkdirAll(name, 0o755); err != nil {
				return err
			}
			continue
		}
		if dir := path.Dir(name); dir != "." {
			if err := root.MkdirAll(dir, 0o755); err != nil {
				return err
			}
		}
		if budget, err = extractFile(root, f, name, budget); err != nil {
			return err
		}
		if budget < 0 {
			return fmt.Errorf("the package unpacks to more than %d MB: move large assets out of the source", limit>>20)
		}
	}
	return nil
}

// extractFile writes one entry and returns what is left of the budget of
// unzipped bytes.
func extractFile(root *os.Root, f *zip.File, name string, budget int64) (int64, error) {
	perm := fs.FileMode(0o644)
	if f.Mode().Perm()&0o111 != 0 {
		perm = 0o755
	}
	in, err := f.Open()
	if err != nil {
		return budget, fmt.Errorf("zip entry %q: %w", f.Name, err)
	}
	defer func() { _ = in.Close() }()
	out, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return budget, err
	}
	// Count what is written, not what the entry's header claims.
	n, err := io.Copy(out, io.LimitReader(in, budget+1))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return budget, fmt.Errorf("zip entry %q: %w", f.Name, err)
	}
	return budget - n, nil
}
