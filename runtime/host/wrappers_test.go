package host_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Handlers are process trees: Lambda's custom runtimes start through a
// bootstrap script that execs the real binary, interpreters are reached
// through wrappers such as pyenv's shims (two layers of bash, each exec'ing
// the next), and some wrappers fork the handler and wait for it. Whatever
// the tree, the host must recover after a timeout and a crash, including a
// timeout that strikes while a slow wrapper is still starting the handler.

// Each wrapper sleeps for the seconds in $WRAPPER_DELAY_FILE, when that file
// exists, before it starts the handler: the test makes init slow on purpose.
const delayPrologue = `if [ -f "$WRAPPER_DELAY_FILE" ]; then sleep "$(cat "$WRAPPER_DELAY_FILE")"; fi
`

// execBootstrap is Lambda's convention: set up, then exec the handler.
const execBootstrap = `#!/bin/bash
set -e
` + delayPrologue + `exec "$LAMBDA_TASK_ROOT/handler"
`

// forkBootstrap runs the handler as a child, waits, and passes on its exit
// status. It also starts a process that leaves the handler's process group
// and session and holds its output pipes open, as daemonising helpers do.
const forkBootstrap = `#!/bin/bash
` + delayPrologue + `setsid sleep 300 &
echo $! > "$ESCAPED_PID_FILE"
"$LAMBDA_TASK_ROOT/handler"
status=$?
echo "wrapper: the handler exited with status $status" >&2
exit $status
`

// pyenvShim and pyenvExec mimic a pyenv shim: bash that execs bash that
// execs the interpreter the functions' image uses.
const pyenvShim = `#!/usr/bin/env bash
set -e
` + delayPrologue + `exec "${0%/*}/pyenv" exec "${0##*/}" "$@"
`

const pyenvExec = `#!/usr/bin/env bash
set -e
shift 2 # "exec python3"
exec /usr/bin/python3 "$@"
`

func writeExecutable(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}

// providedWithBootstrap makes a task root holding the aws-lambda-go handler
// as "handler" and script as its "bootstrap".
func providedWithBootstrap(t *testing.T, script string) string {
	t.Helper()
	root := t.TempDir()
	writeExecutable(t, filepath.Join(root, "bootstrap"), script)
	if err := os.Symlink(bins.lambdago, filepath.Join(root, "handler")); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestBootstrapThatExecsRecovers(t *testing.T) {
	delay := filepath.Join(t.TempDir(), "delay")
	root := providedWithBootstrap(t, execBootstrap)
	h := launchReady(t, functionVariables("WRAPPER_DELAY_FILE="+delay),
		"-function", "execwrap", "-runtime", "provided", "-handler", "bootstrap", "-task-root", root)
	exerciseRecovery(t, h, delay)
}

func TestBootstrapThatForksRecovers(t *testing.T) {
	dir := t.TempDir()
	delay, escaped := filepath.Join(dir, "delay"), filepath.Join(dir, "escaped.pid")
	root := providedWithBootstrap(t, forkBootstrap)
	h := launchReady(t, functionVariables("WRAPPER_DELAY_FILE="+delay, "ESCAPED_PID_FILE="+escaped),
		"-function", "forkwrap", "-runtime", "provided", "-handler", "bootstrap", "-task-root", root)

	// The handler is the wrapper's child; it reports its own pid.
	before := h.invoke(t, `{"action":"env"}`, "X-Nimbus-Deadline-Ms", deadlineIn(10*time.Second)).json(t)
	handlerPID := int(before["pid"].(float64))
	escapedPID := readPID(t, escaped)

	r := h.invoke(t, `{"action":"sleep","n":5000}`, "X-Nimbus-Deadline-Ms", deadlineIn(300*time.Millisecond))
	wantFunctionError(t, r, "Sandbox.Timedout", "Task timed out")
	after := h.invoke(t, `{"action":"env"}`, "X-Nimbus-Deadline-Ms", deadlineIn(10*time.Second)).json(t)
	if int(after["pid"].(float64)) == handlerPID {
		t.Fatalf("after a timeout the handler must be a new process; pid %d answered again", handlerPID)
	}
	for name, pid := range map[string]int{"the timed-out handler": handlerPID, "the process that left the handler's group": escapedPID} {
		if !gone(pid) {
			t.Errorf("%s (pid %d) outlived its process tree's timeout", name, pid)
		}
	}
	exerciseRecovery(t, h, delay)
}

func TestPythonThroughAShimRecovers(t *testing.T) {
	dir := t.TempDir()
	delay := filepath.Join(dir, "delay")
	writeExecutable(t, filepath.Join(dir, "python3"), pyenvShim)
	writeExecutable(t, filepath.Join(dir, "pyenv"), pyenvExec)
	root, _ := filepath.Abs("testdata/python")
	h := launchReady(t, functionVariables("WRAPPER_DELAY_FILE="+delay),
		"-function", "pyshim", "-runtime", "python3", "-handler", "app.handler", "-task-root", root,
		"-python", filepath.Join(dir, "python3"))
	exerciseRecovery(t, h, delay)
}

// exerciseRecovery times a handler out, crashes it, and times out an
// invocation that waits for a slow restart; after each the next invocation
// must succeed. Both test handlers (aws-lambda-go and python) understand the
// same echo, sleep and exit actions.
func exerciseRecovery(t *testing.T, h *runningHost, delayFile string) {
	t.Helper()
	echo := func(step string) {
		t.Helper()
		r := h.invoke(t, `{"action":"echo","value":"`+step+`"}`, "X-Nimbus-Deadline-Ms", deadlineIn(15*time.Second))
		if r.status != http.StatusOK || r.header.Get("X-Nimbus-Function-Error") != "" || r.json(t)["echo"] != step {
			t.Fatalf("%s: want the handler's echo, got %d %s", step, r.status, r.body)
		}
	}
	echo("first")

	r := h.invoke(t, `{"action":"sleep","n":5000}`, "X-Nimbus-Deadline-Ms", deadlineIn(300*time.Millisecond))
	wantFunctionError(t, r, "Sandbox.Timedout", "Task timed out")
	echo("after a timeout")

	wantFunctionError(t, h.invoke(t, `{"action":"exit","n":3}`), "Runtime.ExitError", "exit status 3")
	echo("after a crash")

	// The replacement now takes a second to start; an invocation with a
	// shorter deadline times out while it waits, and the host kills the
	// starting tree. The next invocation must get a fresh, working handler,
	// not the news of that kill.
	if err := os.WriteFile(delayFile, []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantFunctionError(t, h.invoke(t, `{"action":"exit","n":4}`), "Runtime.ExitError", "exit status 4")
	r = h.invoke(t, `{"action":"echo","value":"too late"}`, "X-Nimbus-Deadline-Ms", deadlineIn(300*time.Millisecond))
	wantFunctionError(t, r, "Sandbox.Timedout", "Task timed out")
	if err := os.Remove(delayFile); err != nil {
		t.Fatal(err)
	}
	echo("after a timeout during init")
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	for range 200 {
		if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) != "" {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			return pid
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the wrapper never wrote %s", path)
	return 0
}

// gone reports whether pid has ended (allowing a moment for the kill).
func gone(pid int) bool {
	for range 100 {
		if err := syscall.Kill(pid, 0); err != nil {
			return true
		}
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && strings.Contains(string(st), ") Z ") {
			return true // a zombie runs nothing
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}
