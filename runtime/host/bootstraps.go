package host

import (
	"embed"
	"os"
	"path/filepath"
)

// The language bootstraps ship inside the host binary, so an instance
// needs nothing beyond nimbus-host and the interpreter.
//
//go:embed bootstraps/bootstrap.py bootstraps/bootstrap.js
var bootstrapFS embed.FS

// writeBootstraps writes the runtime's bootstrap into dir (by default the
// Nomad task's local dir, else a new temp dir) and returns the directory
// and whether the host created it (and so removes it at shutdown).
func writeBootstraps(dir, runtime string) (string, bool, error) {
	var name string
	switch runtime {
	case RuntimePython:
		name = "bootstrap.py"
	case RuntimeNode:
		name = "bootstrap.js"
	default:
		return dir, false, nil
	}
	created := false
	if dir == "" {
		if taskDir := os.Getenv("NOMAD_TASK_DIR"); taskDir != "" {
			dir = filepath.Join(taskDir, "nimbus-runtime")
		} else {
			tmp, err := os.MkdirTemp("", "nimbus-runtime-")
			if err != nil {
				return "", false, err
			}
			dir, created = tmp, true
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", false, err
	}
	data, err := bootstrapFS.ReadFile("bootstraps/" + name)
	if err != nil {
		return "", false, err
	}
	return dir, created, os.WriteFile(filepath.Join(dir, name), data, 0o644)
}
