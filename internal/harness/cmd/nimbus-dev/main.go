// Command nimbus-dev runs the local stack: `nimbus-dev up` (make dev) and
// `nimbus-dev down` (make dev-down).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/agents"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/devstack"
)

func main() {
	if len(os.Args) != 2 || (os.Args[1] != "up" && os.Args[1] != "down") {
		fmt.Fprintln(os.Stderr, "usage: nimbus-dev up|down")
		os.Exit(2)
	}
	root, err := agents.RepoRoot()
	if err != nil {
		fail(err)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	defer cancelTimeout()

	stack := devstack.Stack{Dir: filepath.Join(root, ".nimbus"), Out: os.Stdout}
	if os.Args[1] == "up" {
		err = stack.Up(ctx)
	} else {
		err = stack.Down(ctx)
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "nimbus-dev: %v\n", err)
	os.Exit(1)
}
