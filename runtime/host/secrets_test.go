package host

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
)

func TestLoadSecrets(t *testing.T) {
	dir := t.TempDir()
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, protocol.SecretsFile), []byte(content), 0o400); err != nil {
			t.Fatal(err)
		}
	}
	refs, err := protocol.SecretRefs(map[string]string{protocol.EnvSecrets: `{"DB_PASSWORD":{"path":"nomad/jobs/nimbus-fn-a","key":"password"},"TOKEN":{"path":"nomad/jobs/nimbus-fn-a/fn","key":"token"}}`})
	if err != nil {
		t.Fatal(err)
	}

	write(`{"nomad/jobs/nimbus-fn-a": {"password": "p\"w=\n2", "user": "u"}, "nomad/jobs/nimbus-fn-a/fn": {"token": "t"}}`)
	env, err := LoadSecrets(refs, dir)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(env, "|") != "DB_PASSWORD=p\"w=\n2|TOKEN=t" {
		t.Errorf("got %q", env)
	}

	// A missing key is named with the keys that exist, never their values.
	write(`{"nomad/jobs/nimbus-fn-a": {"pass": "hunter2"}, "nomad/jobs/nimbus-fn-a/fn": {"token": "t"}}`)
	_, err = LoadSecrets(refs, dir)
	if err == nil || !strings.Contains(err.Error(), `has no key "password" (its keys: pass)`) || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("missing key: %v", err)
	}

	// A file that does not parse is reported without quoting it.
	write(`{"nomad/jobs/nimbus-fn-a": {"password": hunter2}}`)
	_, err = LoadSecrets(refs, dir)
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("invalid file: %v", err)
	}

	// No rendered file: say what should have rendered it.
	_ = os.Remove(filepath.Join(dir, protocol.SecretsFile))
	if _, err = LoadSecrets(refs, dir); err == nil || !strings.Contains(err.Error(), "template") {
		t.Errorf("no file: %v", err)
	}
}
