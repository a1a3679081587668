package testenv_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testkit"
)

// A second, private environment runs a job and is stopped; nothing of it
// may remain: no process, no mount, no state directory.
func TestStopLeavesNothingBehind(t *testing.T) {
	testenv.Get(t) // builds confidence the shared env coexists with a second one
	binDir := t.TempDir()
	if err := os.Link(os.Getenv("NIMBUS_TEST_HTTPECHO"), filepath.Join(binDir, "httpecho")); err != nil {
		t.Fatal(err)
	}
	env, err := testenv.Start(testenv.Options{ChrootEnv: map[string]string{binDir: chrootBin}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := env.Nomad.Jobs().Register(echoJob("echo-teardown", 1), nil); err != nil {
		env.Stop()
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	testkit.WaitInstances(ctx, t, env.Consul, "echo-teardown", 1)
	if len(mountsUnder(t, env.Dir)) == 0 {
		t.Fatal("a running exec task should have mounts under the state dir; the check below would prove nothing")
	}

	env.Stop()

	if _, err := os.Stat(env.Dir); !os.IsNotExist(err) {
		t.Errorf("state dir %s still exists (err=%v)", env.Dir, err)
	}
	if m := mountsUnder(t, env.Dir); len(m) > 0 {
		t.Errorf("mounts left behind: %v", m)
	}
	if p := processesMentioning(t, env.Dir); len(p) > 0 {
		t.Errorf("processes left behind: %v", p)
	}
}

func TestMissingBinaryFailsWithInstructions(t *testing.T) {
	t.Setenv("NIMBUS_ROOT", t.TempDir())
	t.Setenv("NIMBUS_CONSUL_BIN", "")
	_, err := testenv.Start(testenv.Options{})
	if err == nil || !strings.Contains(err.Error(), "make tools") || !strings.Contains(err.Error(), "NIMBUS_CONSUL_BIN") {
		t.Fatalf("want an error telling to run make tools or set NIMBUS_CONSUL_BIN, got %v", err)
	}

	t.Setenv("NIMBUS_CONSUL_BIN", filepath.Join(t.TempDir(), "consul"))
	_, err = testenv.Start(testenv.Options{})
	if err == nil || !strings.Contains(err.Error(), "NIMBUS_CONSUL_BIN=") {
		t.Fatalf("want an error naming the bad override, got %v", err)
	}
}

func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	return out
}

func processesMentioning(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		root, _ := os.Readlink(filepath.Join("/proc", e.Name(), "root"))
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if strings.HasPrefix(root, dir) || strings.Contains(string(cmd), dir+"/") {
			out = append(out, e.Name()+": "+strings.ReplaceAll(string(cmd), "\x00", " "))
		}
	}
	return out
}
