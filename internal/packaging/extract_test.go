package packaging

import (
	"archive/zip"
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type zipEntry struct {
	name string
	mode fs.FileMode
	body string
}

func zipWith(t *testing.T, entries ...zipEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		hdr := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		hdr.SetMode(e.mode)
		w, err := zw.CreateHeader(hdr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = w.Write([]byte(e.body))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// What ZipDir packs, Extract unpacks as it was: contents, directories and
// the executable bit.
func TestExtractRoundTripsZipDir(t *testing.T) {
	src := t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "lib", "deep"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"bootstrap": "#!/bin/sh\n", "lib/deep/data.txt": "data\n"}
	for name, body := range files {
		mode := fs.FileMode(0o644)
		if name == "bootstrap" {
			mode = 0o755
		}
		if err := os.WriteFile(filepath.Join(src, name), []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	pkg, err := ZipDir(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "function")
	if err := Extract(pkg.Zip, dst); err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		b, err := os.ReadFile(filepath.Join(dst, name))
		if err != nil || string(b) != body {
			t.Errorf("%s: %q %v", name, b, err)
		}
	}
	if st, err := os.Stat(filepath.Join(dst, "bootstrap")); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("bootstrap mode %v %v, want 0755", st.Mode(), err)
	}
	if st, err := os.Stat(filepath.Join(dst, "lib", "deep", "data.txt")); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("data.txt mode %v %v, want 0644", st.Mode(), err)
	}
}

func TestExtractRefusesWhatCouldEscapeOrIsNotAFile(t *testing.T) {
	cases := map[string]struct {
		data []byte
		want string
	}{
		"parent":   {zipWith(t, zipEntry{"../evil", 0o644, "x"}), `contains ".."`},
		"absolute": {zipWith(t, zipEntry{"/etc/evil", 0o644, "x"}), "absolute path"},
		"symlink":  {zipWith(t, zipEntry{"link", fs.ModeSymlink | 0o777, "/etc/passwd"}), "not a regular file"},
		"not zip":  {[]byte("PK not a zip"), "not a valid zip"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			parent := t.TempDir()
			dst := filepath.Join(parent, "function")
			err := Extract(tc.data, dst)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error with %q, got %v", tc.want, err)
			}
			if _, err := os.Stat(filepath.Join(parent, "evil")); err == nil {
				t.Error("an entry landed outside the function's directory")
			}
		})
	}
}

// A small zip must not fill the disk: what is written counts, whatever
// the entries' headers claim.
func TestExtractStopsAtItsBudget(t *testing.T) {
	data := zipWith(t, zipEntry{"a", 0o644, strings.Repeat("0", 600)}, zipEntry{"b", 0o644, strings.Repeat("0", 600)})
	err := extract(data, filepath.Join(t.TempDir(), "function"), 1000)
	if err == nil || !strings.Contains(err.Error(), "unpacks to more than") {
		t.Fatalf("want the budget refused, got %v", err)
	}
	if err := extract(data, filepath.Join(t.TempDir(), "function"), 1200); err != nil {
		t.Fatalf("exactly the budget fits: %v", err)
	}
}
