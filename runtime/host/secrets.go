package host

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
)

// LoadSecrets resolves the references in refsJSON (the job's EnvSecrets)
// against the file that the job's template rendered in secretsDir, and
// returns "NAME=value" entries for the handler's environment. Errors name
// variables, paths and keys, never values.
func LoadSecrets(refs map[string]protocol.SecretRef, secretsDir string) ([]string, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	file := filepath.Join(secretsDir, protocol.SecretsFile)
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("the function has secrets but %s was not rendered (%w): the job's template must render it from Nomad Variables", file, err)
	}
	var vars map[string]map[string]string
	if err := json.Unmarshal(data, &vars); err != nil {
		return nil, fmt.Errorf("%s is not valid JSON (%v); it is rendered by the job's template", file, jsonErrorWithoutData(err))
	}
	names := make([]string, 0, len(refs))
	for name := range refs {
		names = append(names, name)
	}
	sort.Strings(names)
	env := make([]string, 0, len(refs))
	var missing []string
	for _, name := range names {
		ref := refs[name]
		items, ok := vars[ref.Path]
		if !ok {
			missing = append(missing, fmt.Sprintf("%s: Nomad Variable %s was not rendered", name, ref.Path))
			continue
		}
		value, ok := items[ref.Key]
		if !ok {
			keys := make([]string, 0, len(items))
			for k := range items {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			missing = append(missing, fmt.Sprintf("%s: Nomad Variable %s has no key %q (its keys: %s)", name, ref.Path, ref.Key, strings.Join(keys, ", ")))
			continue
		}
		env = append(env, name+"="+value)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("secrets not found: %s; put them with `nomad var put <path> <key>=<value>`", strings.Join(missing, "; "))
	}
	return env, nil
}

// jsonErrorWithoutData keeps a JSON error's kind and offset but drops any
// quoted input, which could be part of a secret.
func jsonErrorWithoutData(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	}
	return "not the expected shape"
}
