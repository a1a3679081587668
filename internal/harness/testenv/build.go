package testenv

import (
	"fmt"
	"os"
	"os/exec"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/agents"
)

// BuildStatic builds each package (a path relative to the repository
// root) into its output path as a static binary, so it also runs inside an
// exec task's slim chroot.
func BuildStatic(outputs map[string]string) error {
	root, err := agents.RepoRoot()
	if err != nil {
		return err
	}
	for out, pkg := range outputs {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %w\n%s", pkg, err, b)
		}
	}
	return nil
}
