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

// importRules are the layout's dependency rules: packages matching from
// may not import (even indirectly, in non-test code) what starts with
// forbidden.
var importRules = []struct {
	from, forbidden, why string
}{
	{"./provider/...", "/runtime", "provider/ and runtime/ share code through internal/ only"},
	{"./runtime/...", "/provider", "provider/ and runtime/ share code through internal/ only"},
	{"./runtime/host/...", "/runtime/gateway", "the host and the gateway meet only in internal/protocol"},
	{"./runtime/gateway/...", "/runtime/host", "the host and the gateway meet only in internal/protocol"},
	{"./runtime/cni/...", "/runtime/gateway", "the CNI plugin's work depends on internal/cninet, not on the processes it networks"},
	{"./runtime/cni/...", "/runtime/host", "the CNI plugin's work depends on internal/cninet, not on the processes it networks"},
	{"./runtime/gateway/...", "/runtime/cni", "only the nimbus-cni plugin applies nftables rules and links; the others share internal/cninet"},
	{"./runtime/host/...", "/runtime/cni", "only the nimbus-cni plugin applies nftables rules and links; the others share internal/cninet"},
	{"./provider/...", "/internal/harness", "the test and dev harness is never part of what users run"},
	{"./runtime/...", "/internal/harness", "the test and dev harness is never part of what users run"},
	{"./internal/...", "/provider", "internal/ is shared by both planes and depends on neither"},
	{"./internal/...", "/runtime", "internal/ is shared by both planes and depends on neither"},
	{"./runtime/cmd/nimbus-host/...", "/internal/clients", "nimbus-host stays small: internal/clients links the Nomad and Consul APIs; build HTTP clients with internal/httpclient"},
}

func TestLayoutImportRules(t *testing.T) {
	if len(listDeps(t, "./provider/...")) == 0 || len(listDeps(t, "./runtime/host/...")) == 0 {
		t.Fatal("go list found no provider or host packages; this check would prove nothing")
	}
	for _, rule := range importRules {
		forbidden := module + rule.forbidden
		for pkg, deps := range listDeps(t, rule.from) {
			if strings.HasPrefix(pkg, module+"/internal/harness") && rule.from == "./internal/..." {
				continue // the harness builds and runs the binaries of both planes
			}
			for _, dep := range deps {
				if dep == forbidden || strings.HasPrefix(dep, forbidden+"/") {
					t.Errorf("%s imports %s: %s", pkg, dep, rule.why)
				}
			}
		}
	}
}

// listDeps returns each package matching pattern with its transitive
// imports. A pattern matching no packages yet yields nothing.
func listDeps(t *testing.T, pattern string) map[string][]string {
	return listPackages(t, pattern, "Deps")
}

// listImports returns each package matching pattern with its direct
// imports (non-test code).
func listImports(t *testing.T, pattern string) map[string][]string {
	return listPackages(t, pattern, "Imports")
}

// listPackages returns each package matching pattern with the list that
// go list's field names: Deps or Imports.
func listPackages(t *testing.T, pattern, field string) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-json=ImportPath,"+field, pattern)
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
			ImportPath    string
			Deps, Imports []string
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		result[p.ImportPath] = p.Deps
		if field == "Imports" {
			result[p.ImportPath] = p.Imports
		}
	}
	return result
}

// gatewayParts are the gateway's packages under runtime/, each with the
// other runtime/ packages it may import directly (non-test code). The
// lower parts know nothing of the higher ones: the chain (invoke) knows
// no queue or trigger, the pools know no chain, and only the composition
// root, runtime/gateway, knows them all. Nothing imports the root but the
// nimbus-gateway command.
var gatewayParts = map[string][]string{
	"refusal":     {},
	"workers":     {},
	"metering":    {"refusal"},
	"registry":    {"refusal"},
	"auth":        {"refusal", "auth/sigv4"},
	"auth/sigv4":  {},
	"artifacts":   {"refusal"},
	"instances":   {"metering", "registry"},
	"deployments": {"registry", "workers"},
	"invoke":      {"auth", "instances", "metering", "refusal", "registry"},
	"async":       {"auth", "eventq", "instances", "invoke", "metering", "refusal", "registry"},
	"triggers":    {"auth", "invoke", "registry", "workers"},
	"schedules":   {"auth", "instances", "invoke", "refusal"},
	"sources":     {"auth", "eventq", "eventsource", "invoke", "metering", "refusal", "registry", "workers"},
	"gateway": {"async", "auth", "deployments", "eventq", "eventsource", "instances", "invoke", "metering", "refusal",
		"registry", "schedules", "sources", "triggers"},
}

func TestGatewayPartsImportOnlyWhatTheyMay(t *testing.T) {
	imports := listImports(t, "./runtime/...")
	if len(imports) == 0 {
		t.Fatal("go list found no runtime packages; this check would prove nothing")
	}
	for part, allowed := range gatewayParts {
		pkg := module + "/runtime/" + part
		got, ok := imports[pkg]
		if !ok {
			t.Errorf("%s is listed as a part of the gateway but does not exist", pkg)
			continue
		}
		may := map[string]bool{}
		for _, a := range allowed {
			may[module+"/runtime/"+a] = true
		}
		for _, dep := range got {
			if strings.HasPrefix(dep, module+"/runtime/") && !may[dep] {
				t.Errorf("%s imports %s; the gateway's parts import only what gatewayParts allows (a part that needs another's work takes a narrow interface, wired by runtime/gateway)", pkg, dep)
			}
		}
	}
	for pkg, deps := range imports {
		for _, dep := range deps {
			if dep == module+"/runtime/gateway" && pkg != module+"/runtime/cmd/nimbus-gateway" {
				t.Errorf("%s imports the composition root runtime/gateway; only the nimbus-gateway command may", pkg)
			}
		}
	}
}
