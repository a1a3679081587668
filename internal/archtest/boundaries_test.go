package archtest

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/nimbus-faas/terraform-provider-nimbus"

func TestPlanesDoNotImportEachOther(t *testing.T) {
	rules := map[string]string{
		"./provider/...": module + "/runtime",
		"./runtime/...":  module + "/provider",
	}
	if len(listDeps(t, "./provider/...")) == 0 {
		t.Fatal("go list found no provider packages; this check would prove nothing")
	}
	for pattern, forbidden := range rules {
		for pkg, deps := range listDeps(t, pattern) {
			for _, dep := range deps {
				if dep == forbidden || strings.HasPrefix(dep, forbidden+"/") {
					t.Errorf("%s imports %s; provider/ and runtime/ must share code through internal/ only", pkg, dep)
				}
			}
		}
	}
}

// listDeps returns each package matching pattern with its transitive
// imports. A pattern matching no packages yet yields nothing.
func listDeps(t *testing.T, pattern string) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-json=ImportPath,Deps", pattern)
	cmd.Dir = "../.."
	out, err := cmd.Output()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("go list %s: %v", pattern, err)
	}
	result := map[string][]string{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p struct {
			ImportPath string
			Deps       []string
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		result[p.ImportPath] = p.Deps
	}
	return result
}
