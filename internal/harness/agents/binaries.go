package agents

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
)

// Binary names the pinned component and the variable that overrides it.
type Binary struct {
	Name   string // nomad, consul, tofu
	EnvVar string // NIMBUS_NOMAD_BIN, ...
	// Default is where a system package installs it, for the components
	// that come from Debian rather than `make tools`.
	Default string
}

// The pinned components that `make tools` builds into .tools/bin.
var (
	Nomad  = Binary{Name: "nomad", EnvVar: "NIMBUS_NOMAD_BIN"}
	Consul = Binary{Name: "consul", EnvVar: "NIMBUS_CONSUL_BIN"}
	Tofu   = Binary{Name: "tofu", EnvVar: "NIMBUS_TOFU_BIN"}
)

// Path finds the binary: the override variable if set, else .tools/bin in
// the repository root. The error says how to get it.
func (b Binary) Path() (string, error) {
	if p := os.Getenv(b.EnvVar); p != "" {
		if err := isExecutable(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w; unset it to use the pinned build from `make tools`", b.EnvVar, p, err)
		}
		return p, nil
	}
	if b.Default != "" {
		if err := isExecutable(b.Default); err != nil {
			return "", fmt.Errorf("%s not found at %s: install Debian's rabbitmq-server package (apt-get install rabbitmq-server; `.ci/run` does), or set %s", b.Name, b.Default, b.EnvVar)
		}
		return b.Default, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, ".tools", "bin", b.Name)
	if err := isExecutable(p); err != nil {
		return "", fmt.Errorf("%s binary not found at %s: run `make tools` to build the pinned version, or set %s to an existing binary", b.Name, p, b.EnvVar)
	}
	return p, nil
}

// Version runs the binary's own `version` command and returns the version it
// names ("1.6.0"), independently of any API the agent serves.
func (b Binary) Version() (string, error) {
	p, err := b.Path()
	if err != nil {
		return "", err
	}
	out, err := exec.Command(p, "version").Output()
	if err != nil {
		return "", fmt.Errorf("%s version: %w", p, err)
	}
	m := versionLine.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("%s version printed no version: %q", p, out)
	}
	return string(m[1]), nil
}

// versionLine matches the first line of `nomad version`, `consul version`
// and `tofu version`: "Nomad v1.6.0", "Consul v1.13.9", "OpenTofu v1.10.6".
var versionLine = regexp.MustCompile(`^\S+ v(\d+\.\d+\.\d+\S*)`)

func isExecutable(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return errors.New("not an executable file")
	}
	return nil
}

// RepoRoot walks up from the working directory to the directory holding the
// module's go.mod. NIMBUS_ROOT overrides it.
func RepoRoot() (string, error) {
	if r := os.Getenv("NIMBUS_ROOT"); r != "" {
		return r, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && isOurModule(data) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find the repository root (go.mod of github.com/nimbus-faas/terraform-provider-nimbus) above the working directory; set NIMBUS_ROOT")
		}
		dir = parent
	}
}

func isOurModule(gomod []byte) bool {
	const want = "module github.com/nimbus-faas/terraform-provider-nimbus\n"
	return len(gomod) >= len(want) && string(gomod[:len(want)]) == want
}
