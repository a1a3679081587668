package protocol

import (
	"maps"
	"testing"
)

func TestFunctionVariablesRoundTrip(t *testing.T) {
	task := map[string]string{EnvFunctionName: "orders", EnvListen: "0.0.0.0:1"}
	own := map[string]string{"TABLE": "orders", "EMPTY": "", EnvListen: "not the host's"}
	SetFunctionVariables(task, own)
	if got := task[EnvFunctionVariables]; got != "EMPTY,TABLE" {
		t.Errorf("%s = %q, want the function's names sorted, without the host's own setting", EnvFunctionVariables, got)
	}
	if task[EnvListen] != "0.0.0.0:1" {
		t.Errorf("a function variable replaced the host's setting %s", EnvListen)
	}
	// What the instance sees: the task's variables and the client agent's.
	running := maps.Clone(task)
	running["MAKEFLAGS"], running["NOMAD_ALLOC_ID"], running["TF_CLI_CONFIG_FILE"] = "-j2", "a", "/root/.tofurc"
	vars, named := FunctionVariables(running)
	if !named || !maps.Equal(vars, map[string]string{"TABLE": "orders", "EMPTY": ""}) {
		t.Errorf("FunctionVariables = %v (named %v), want exactly the function's own", vars, named)
	}
}

func TestFunctionVariablesNoneNamed(t *testing.T) {
	task := map[string]string{}
	SetFunctionVariables(task, nil)
	task["HOME"] = "/root"
	if vars, named := FunctionVariables(task); !named || len(vars) != 0 {
		t.Errorf("a function without variables got %v (named %v)", vars, named)
	}
}

func TestFunctionVariablesOfAnOlderJob(t *testing.T) {
	vars, named := FunctionVariables(map[string]string{"TABLE": "orders", EnvFunctionName: "orders", "NOMAD_TASK_DIR": "/local"})
	if named || !maps.Equal(vars, map[string]string{"TABLE": "orders"}) {
		t.Errorf("an older job's variables read as %v (named %v)", vars, named)
	}
}

func TestEnvironMap(t *testing.T) {
	got := EnvironMap([]string{"A=1", "B=x=y", "broken"})
	if !maps.Equal(got, map[string]string{"A": "1", "B": "x=y"}) {
		t.Errorf("EnvironMap = %v", got)
	}
}

func TestSecretRefsRoundTrip(t *testing.T) {
	refs := map[string]SecretRef{"DB_PASSWORD": {Path: "nomad/jobs/nimbus-fn-a", Key: "password"}}
	task := map[string]string{}
	SetSecretRefs(task, refs)
	got, err := SecretRefs(task)
	if err != nil || !maps.Equal(got, refs) {
		t.Errorf("SecretRefs = %v, %v; want %v", got, err, refs)
	}
	if none, err := SecretRefs(map[string]string{}); none != nil || err != nil {
		t.Errorf("a task without secrets: %v, %v", none, err)
	}
	if _, err := SecretRefs(map[string]string{EnvSecrets: "{"}); err == nil {
		t.Error("an unreadable reference list must be an error")
	}
}
