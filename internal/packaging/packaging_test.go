package packaging

import (
	"archive/zip"
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, "bootstrap") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestZipDirIsReproducible(t *testing.T) {
	files := map[string]string{"bootstrap": "#!/bin/sh\n", "lib/a.py": "a", "lib/b.py": "b", "z.txt": "z"}
	a, err := ZipDir(writeTree(t, files))
	if err != nil {
		t.Fatal(err)
	}
	// Another copy, written in another order at another time, with another umask.
	dir := writeTree(t, files)
	future := time.Now().Add(72 * time.Hour)
	_ = filepath.Walk(dir, func(p string, _ os.FileInfo, _ error) error { return os.Chtimes(p, future, future) })
	_ = os.Chmod(filepath.Join(dir, "z.txt"), 0o600)
	b, err := ZipDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a.SHA256 != b.SHA256 || !bytes.Equal(a.Zip, b.Zip) {
		t.Fatal("the same files must give the same zip and digest")
	}

	zr, err := zip.NewReader(bytes.NewReader(a.Zip), int64(len(a.Zip)))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
		if f.Name == "bootstrap" && f.Mode().Perm()&0o111 == 0 {
			t.Error("the executable bit of bootstrap must survive packaging")
		}
		if f.Name == "z.txt" && f.Mode().Perm() != 0o644 {
			t.Errorf("non-executables are stored as 0644, got %v", f.Mode())
		}
	}
	if strings.Join(names, ",") != "bootstrap,lib/a.py,lib/b.py,z.txt" {
		t.Errorf("entries %v are not sorted", names)
	}

	files["lib/a.py"] = "changed"
	c, err := ZipDir(writeTree(t, files))
	if err != nil {
		t.Fatal(err)
	}
	if c.SHA256 == a.SHA256 {
		t.Error("a code change must change the digest")
	}
}

func zipOf(t *testing.T, names ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, n := range names {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: n})
		if err != nil {
			t.Fatal(err)
		}
		_, _ = w.Write([]byte("x"))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestCheckZipRefusesEscapes(t *testing.T) {
	for name, want := range map[string]string{
		"../etc/passwd":  `contains ".."`,
		"a/../../x":      `contains ".."`,
		`..\windows`:     `contains ".."`,
		"/etc/passwd":    "absolute path",
		`C:\x`:           "absolute path",
		"ok/../../../..": `contains ".."`,
	} {
		err := CheckZip(zipOf(t, "fine.txt", name))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want an error saying %q", name, err, want)
		}
	}
	if err := CheckZip(zipOf(t, "a.txt", "dir/", "dir/b.txt")); err != nil {
		t.Errorf("a normal zip: %v", err)
	}
	if err := CheckZip([]byte("not a zip")); err == nil || !strings.Contains(err.Error(), "not a valid zip") {
		t.Errorf("garbage: %v", err)
	}
}

func TestSizeLimitGivesActualSize(t *testing.T) {
	dir := t.TempDir()
	noise := make([]byte, MaxZipBytes+(1<<20)) // random data does not compress
	_, _ = rand.Read(noise)
	if err := os.WriteFile(filepath.Join(dir, "blob.bin"), noise, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := ZipDir(dir)
	if err == nil || !strings.Contains(err.Error(), "at most 50 MB") || !strings.Contains(err.Error(), "MB zipped") {
		t.Fatalf("got %v", err)
	}
}

func TestFromPath(t *testing.T) {
	dir := writeTree(t, map[string]string{"app.py": "def handler(e, c): return e\n"})
	fromDir, err := FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	zipPath := filepath.Join(t.TempDir(), "fn.zip")
	if err := os.WriteFile(zipPath, fromDir.Zip, 0o644); err != nil {
		t.Fatal(err)
	}
	fromZip, err := FromPath(zipPath)
	if err != nil || fromZip.SHA256 != fromDir.SHA256 {
		t.Fatalf("a zip is used as it is: %v", err)
	}
	if _, err := FromPath(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing source: %v", err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if _, err := FromPath(dir); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("symlink: %v", err)
	}
}

// A source that fits stored is stored, so an instance unpacks it at disk
// speed; one that fits only compressed is deflated and still accepted, and
// both unpack to the source's bytes.
func TestZipDirStoresWhatFitsAndDeflatesTheRest(t *testing.T) {
	for _, tc := range []struct {
		name   string
		size   int
		method uint16
	}{
		{"small source", 3 << 20, zip.Store},
		{"source over the limit that compresses", MaxZipBytes + (4 << 20), zip.Deflate},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			content := bytes.Repeat([]byte("nimbus "), tc.size/7)
			if err := os.WriteFile(filepath.Join(dir, "bootstrap"), content, 0o755); err != nil {
				t.Fatal(err)
			}
			pkg, err := ZipDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			zr, err := zip.NewReader(bytes.NewReader(pkg.Zip), int64(len(pkg.Zip)))
			if err != nil {
				t.Fatal(err)
			}
			if got := zr.File[0].Method; got != tc.method {
				t.Errorf("entry method %d, want %d", got, tc.method)
			}
			out := filepath.Join(t.TempDir(), "fn")
			if err := Extract(pkg.Zip, out); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(out, "bootstrap"))
			if err != nil || !bytes.Equal(got, content) {
				t.Fatalf("unpacked %d bytes (err %v), want the source's %d", len(got), err, len(content))
			}
		})
	}
}
