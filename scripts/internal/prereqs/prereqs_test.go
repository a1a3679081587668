package prereqs

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// binaries: the path the script checks for each package.
var binaries = map[string]string{
	"python3":         "/usr/bin/python3",
	"nodejs":          "/usr/bin/node",
	"nftables":        "/usr/sbin/nft",
	"iproute2":        "/usr/sbin/ip",
	"rabbitmq-server": "/usr/lib/rabbitmq/bin/rabbitmq-server",
}

const (
	debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n"
	fedora = "NAME=\"Fedora Linux\"\nID=fedora\n"
	// nobody is the uid and gid the not-root runs use.
	nobody = "65534"
	// realAptGet is what the script runs on a real machine.
	realAptGet = "/usr/bin/apt-get"
)

// fixture is a fake root for NIMBUS_PREREQS_ROOT, a copy of the script and
// a fake apt-get, all readable by nobody.
type fixture struct {
	script string // a copy of scripts/prereqs.sh
	root   string // the fake root
	aptLog string // each apt-get run appends "DEBIAN_FRONTEND=… args" here
	trip   string // the tripwire that replaces the real apt-get in root runs
}

// newFixture makes a fake root whose /etc/os-release is osRelease, holding
// every binary the script checks but the missing packages' ones.
func newFixture(t *testing.T, osRelease string, missing ...string) *fixture {
	t.Helper()
	dir := t.TempDir()
	// t.TempDir makes its directories 0700; the not-root runs need in.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script, err := os.ReadFile("../../prereqs.sh")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{
		script: filepath.Join(dir, "prereqs.sh"),
		root:   filepath.Join(dir, "root"),
		aptLog: filepath.Join(dir, "apt", "log"),
		trip:   filepath.Join(dir, "tripwire"),
	}
	write(t, f.script, string(script), 0o755)
	write(t, filepath.Join(f.root, "etc/os-release"), osRelease, 0o644)
	for pkg, bin := range binaries {
		if !slices.Contains(missing, pkg) {
			write(t, filepath.Join(f.root, bin), "", 0o755)
		}
	}
	// The fake apt-get logs what it is asked and, for install, puts the
	// packages' binaries in place as the real one would.
	var cases strings.Builder
	for pkg, bin := range binaries {
		fmt.Fprintf(&cases, "  %s) f='%s' ;;\n", pkg, filepath.Join(f.root, bin))
	}
	write(t, filepath.Join(f.root, realAptGet), fmt.Sprintf(`#!/bin/sh
echo "DEBIAN_FRONTEND=$DEBIAN_FRONTEND $*" >>'%s'
[ "$1" = install ] || exit 0
for a; do
  case $a in
%s  *) continue ;;
  esac
  mkdir -p "$(dirname "$f")" && : >"$f" && chmod 755 "$f"
done
`, f.aptLog, cases.String()), 0o755)
	// The apt log's directory is writable by nobody, so that a not-root
	// run that did call apt-get would be seen.
	if err := os.Mkdir(filepath.Dir(f.aptLog), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(f.aptLog), 0o777); err != nil {
		t.Fatal(err)
	}
	write(t, f.trip, fmt.Sprintf("#!/bin/sh\necho \"REAL %s $*\" >>'%s'\nexit 1\n", realAptGet, f.aptLog), 0o755)
	return f
}

func write(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

type user int

const (
	// asRoot runs the script as root, in a mount namespace of its own where
	// the real apt-get is replaced by a tripwire: whatever the script does,
	// the real apt-get cannot run. Skips the test unless this process is root.
	asRoot user = iota
	// asNobody runs it as uid 65534 (through setpriv when this process is
	// root), or as this process's user when that is not root.
	asNobody
	// asAnyone is asRoot when this process is root, else asNobody.
	asAnyone
)

var unshareErr struct {
	once sync.Once
	err  error
}

// unshareWorks says whether unshare can make a mount namespace here.
func unshareWorks(unshare string) error {
	unshareErr.once.Do(func() {
		if out, err := exec.Command(unshare, "--mount", "--propagation", "private", "true").CombinedOutput(); err != nil {
			unshareErr.err = fmt.Errorf("unshare --mount fails (%v: %s)", err, out)
		}
	})
	return unshareErr.err
}

// run runs the script with args and extra environment, returning its
// output and exit status.
func (f *fixture) run(t *testing.T, who user, env []string, args ...string) (string, int) {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash:", err)
	}
	root := os.Geteuid() == 0
	if who == asAnyone {
		who = asNobody
		if root {
			who = asRoot
		}
	}
	argv := append([]string{bash, f.script}, args...)
	switch {
	case who == asRoot && !root:
		t.Skip("runs the script as root, and this test is not root")
	case who == asRoot:
		if _, err := os.Stat(realAptGet); err == nil {
			unshare, err := exec.LookPath("unshare")
			if err != nil {
				t.Skip("no unshare (util-linux) to keep the real apt-get out of reach:", err)
			}
			if err := unshareWorks(unshare); err != nil {
				t.Skipf("%v: cannot keep the real apt-get out of reach", err)
			}
			argv = append([]string{unshare, "--mount", "--propagation", "private",
				"sh", "-c", `mount --bind "$0" ` + realAptGet + ` && exec "$@"`, f.trip}, argv...)
		}
	case who == asNobody && root:
		setpriv, err := exec.LookPath("setpriv")
		if err != nil {
			t.Skip("no setpriv (util-linux) to run the script as uid 65534:", err)
		}
		drop := []string{"--reuid=" + nobody, "--regid=" + nobody, "--clear-groups"}
		if out, err := exec.Command(setpriv, append(drop, "test", "-r", f.script)...).CombinedOutput(); err != nil {
			t.Skipf("uid 65534 cannot read %s (%v: %s); is TMPDIR searchable by all?", f.script, err, out)
		}
		argv = append(append([]string{setpriv}, drop...), argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "NIMBUS_") && !strings.HasPrefix(e, "DEBIAN_FRONTEND=") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.Env = append(cmd.Env, "NIMBUS_PREREQS_ROOT="+f.root)
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	}
	t.Fatalf("%v: %v\n%s", argv, err, out)
	return "", 0
}

// snapshot describes every file under dir: mode, and a hash of the content
// or the link's target.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	s := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		var body []byte
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			l, err := os.Readlink(path)
			if err != nil {
				return err
			}
			body = []byte(l)
		case info.Mode().IsRegular():
			if body, err = os.ReadFile(path); err != nil {
				return err
			}
		}
		s[path] = fmt.Sprintf("%v %x", info.Mode(), sha256.Sum256(body))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// unchanged runs the script and checks that it changed nothing: the fake
// root is as it was, and no apt-get ran.
func (f *fixture) unchanged(t *testing.T, who user, env []string, args ...string) (string, int) {
	t.Helper()
	before := snapshot(t, f.root)
	out, code := f.run(t, who, env, args...)
	t.Logf("exit %d:\n%s", code, out)
	if after := snapshot(t, f.root); !maps.Equal(before, after) {
		t.Errorf("the fake root changed:\nbefore %v\nafter  %v", before, after)
	}
	if log, err := os.ReadFile(f.aptLog); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("apt-get ran (%v):\n%s", err, log)
	}
	return out, code
}

// reasonLine is the line that names a missing package and why.
func reasonLine(pkg string) string {
	return "\n  " + pkg + " (" + binaries[pkg]
}

// Not root: the script installs nothing, names what is missing and the
// exact command, and stops make.
func TestNotRootChangesNothing(t *testing.T) {
	for _, c := range []struct {
		cmd     string
		missing []string
	}{
		{"demo", []string{"nftables"}},
		{"test", []string{"nftables", "rabbitmq-server"}},
	} {
		t.Run(c.cmd, func(t *testing.T) {
			f := newFixture(t, debian, c.missing...)
			out, code := f.unchanged(t, asNobody, nil, c.cmd)
			if code != 3 {
				t.Errorf("exit %d, want 3", code)
			}
			want := "\n  sudo apt-get install -y " + strings.Join(c.missing, " ") + "\n"
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q", want)
			}
			for pkg := range binaries {
				if has := strings.Contains(out, reasonLine(pkg)); has != slices.Contains(c.missing, pkg) {
					t.Errorf("output names %s: %v, want %v", pkg, has, !has)
				}
			}
		})
	}
}

// Root, but NIMBUS_NO_INSTALL=1: the same, with the command for root.
func TestNoInstallAsRoot(t *testing.T) {
	f := newFixture(t, debian, "nftables", "rabbitmq-server")
	out, code := f.unchanged(t, asRoot, []string{"NIMBUS_NO_INSTALL=1"}, "test")
	if code != 3 {
		t.Errorf("exit %d, want 3", code)
	}
	for _, want := range []string{
		reasonLine("nftables"),
		reasonLine("rabbitmq-server"),
		"NIMBUS_NO_INSTALL=1",
		"\n  apt-get install -y nftables rabbitmq-server\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// Not Debian or Ubuntu: no apt-get, even as root; the commands and where
// they must be instead.
func TestNotDebian(t *testing.T) {
	f := newFixture(t, fedora, "nftables")
	out, code := f.unchanged(t, asAnyone, nil, "demo")
	if code != 3 {
		t.Errorf("exit %d, want 3", code)
	}
	for _, want := range []string{reasonLine("nftables"), "package manager", "\n  nft, at /usr/sbin/nft\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out, "apt-get install") {
		t.Error("output suggests apt-get on Fedora")
	}
}

// Nothing missing: nothing printed, exit 0.
func TestAllPresent(t *testing.T) {
	for _, c := range []struct {
		name, cmd string
		missing   []string
		env       []string
	}{
		{"demo", "demo", nil, nil},
		{"test", "test", nil, nil},
		{"demo needs no rabbitmq-server", "demo", []string{"rabbitmq-server"}, nil},
		{"test with NIMBUS_RABBITMQ_SERVER_BIN", "test", []string{"rabbitmq-server"}, []string{"NIMBUS_RABBITMQ_SERVER_BIN=/opt/rabbitmq/sbin/rabbitmq-server"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, debian, c.missing...)
			out, code := f.unchanged(t, asAnyone, c.env, c.cmd)
			if code != 0 || out != "" {
				t.Errorf("exit %d with output %q, want 0 and none", code, out)
			}
		})
	}
}

// Root on Debian: says what it installs and why, then runs apt-get (here
// the fake one) and says when done.
func TestInstallsAsRoot(t *testing.T) {
	f := newFixture(t, debian, "nftables", "rabbitmq-server")
	out, code := f.run(t, asRoot, nil, "test")
	t.Logf("exit %d:\n%s", code, out)
	if code != 0 {
		t.Errorf("exit %d, want 0", code)
	}
	done := strings.Index(out, "installed nftables rabbitmq-server\n")
	if done < 0 {
		t.Errorf("output lacks that it installed them")
	}
	for _, pkg := range []string{"nftables", "rabbitmq-server"} {
		if i := strings.Index(out, reasonLine(pkg)); i < 0 || i > done {
			t.Errorf("output does not name %s and why before installing", pkg)
		}
	}
	log, err := os.ReadFile(f.aptLog)
	if err != nil {
		t.Fatal(err)
	}
	want := "DEBIAN_FRONTEND= update -qq\nDEBIAN_FRONTEND=noninteractive install -y -qq nftables rabbitmq-server\n"
	if string(log) != want {
		t.Errorf("apt-get ran as\n%s\nwant\n%s", log, want)
	}
}
