package testenv_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testkit"
)

const chrootBin = "/opt/nimbus-test"

func TestMain(m *testing.M) {
	binDir, err := os.MkdirTemp("", "nimbus-httpecho-")
	if err != nil {
		panic(err)
	}
	if err := testenv.BuildStatic(map[string]string{filepath.Join(binDir, "httpecho"): "./internal/harness/testenv/testdata/httpecho"}); err != nil {
		panic(err)
	}
	defer func() { _ = os.RemoveAll(binDir) }()
	// Other tests start environments of their own with the same binary.
	_ = os.Setenv("NIMBUS_TEST_HTTPECHO", filepath.Join(binDir, "httpecho"))
	testenv.Main(m, testenv.Options{ChrootEnv: map[string]string{binDir: chrootBin}})
}

// echoJob is a one-group exec job with a Consul-registered HTTP service
// that scales between 0 and 3.
func echoJob(name string, count int) *nomadapi.Job {
	return testkit.ServiceJob{Name: name, Count: count, MaxCount: 3, Command: chrootBin + "/httpecho"}.Job()
}

func TestExecJobRegistersHealthyServiceAndScalesToZeroAndBack(t *testing.T) {
	env := testenv.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const name = "echo-scale"
	if _, _, err := env.Nomad.Jobs().Register(echoJob(name, 1), nil); err != nil {
		t.Fatalf("register: %v", err)
	}

	entry := testkit.WaitInstances(ctx, t, env.Consul, name, 1)
	body := get(t, fmt.Sprintf("http://%s:%d/", entry.Service.Address, entry.Service.Port))
	if !strings.Contains(body, "hello from") || !strings.Contains(body, "uid 65534") {
		t.Errorf("instance answered %q; want it to run sandboxed as nobody (uid 65534)", body)
	}

	for _, count := range []int{0, 1} {
		resp, _, err := env.Nomad.Jobs().Scale(name, "main", testkit.Ptr(count), fmt.Sprintf("test: scale to %d", count), false, nil, nil)
		if err != nil {
			t.Fatalf("scale to %d: %v", count, err)
		}
		if resp.EvalID == "" {
			t.Fatalf("scale to %d created no evaluation", count)
		}
		testkit.WaitInstances(ctx, t, env.Consul, name, count)
	}

	deployments, _, err := env.Nomad.Jobs().Deployments(name, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(deployments) != 0 {
		t.Errorf("job created %d deployments; it must not, so that scaling is never blocked", len(deployments))
	}
	events, _, err := env.Nomad.Jobs().ScaleStatus(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := events.TaskGroups["main"].Desired; got != 1 {
		t.Errorf("desired count %d after scaling back, want 1", got)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url) //nolint:noctx // bounded by the test's own timeout
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
