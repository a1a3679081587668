package testenv

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
)

// The package-wide environment: started by the first test that asks, so a
// package's pure unit tests do not pay for agents, and stopped by Main.
var (
	shared      *Env
	sharedErr   error
	once        sync.Once
	options     Options
	failedTests []string // the tests on the shared environment that failed
	mu          sync.Mutex
)

// Main runs the package's tests and then stops the shared environment. On
// failure it prints the agents' logs. opts are used if a test calls Get.
// It returns instead of exiting, so TestMain's deferred cleanups run; the
// test binary exits with m.Run's code.
func Main(m *testing.M, opts ...Options) {
	if len(opts) > 0 {
		options = opts[0]
	}
	code := m.Run()
	mu.Lock()
	failed := len(failedTests) > 0 || code != 0
	mu.Unlock()
	if shared != nil {
		if failed {
			fmt.Fprintf(os.Stderr, "\n===== agent logs (testenv %s) =====\n", shared.ID)
			shared.WriteLogs(os.Stderr)
			fmt.Fprintf(os.Stderr, "===== end of agent logs =====\n")
			// Repeated after the logs, which are long, so that the end of
			// a CI log names what failed.
			if len(failedTests) > 0 {
				fmt.Fprintf(os.Stderr, "FAIL: these tests failed (their output is above the agent logs): %s\n", strings.Join(failedTests, ", "))
			}
		}
		shared.Stop()
		// The package fails when its allocations left anything on the
		// host; exiting skips TestMain's deferred cleanups, which matter
		// less than the report.
		if len(shared.Leftovers) > 0 {
			fmt.Fprintf(os.Stderr, "FAIL: testenv: the allocations left these on the host:\n  %s\n", strings.Join(shared.Leftovers, "\n  "))
			os.Exit(1)
		}
	}
}

// Get returns the package's shared environment, starting it on first use.
// If the agents cannot start (the binaries are missing, say), the test
// fails with the reason; it never skips.
func Get(t testing.TB) *Env {
	t.Helper()
	once.Do(func() { shared, sharedErr = Start(options) })
	if sharedErr != nil {
		t.Fatalf("testenv: %v", sharedErr)
	}
	t.Cleanup(func() {
		if t.Failed() {
			mu.Lock()
			failedTests = append(failedTests, t.Name())
			mu.Unlock()
		}
	})
	return shared
}
