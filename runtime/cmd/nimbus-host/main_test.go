package main

import (
	"strings"
	"testing"
	"time"
)

func TestConfigFromNomadEnvironment(t *testing.T) {
	env := map[string]string{
		"NOMAD_PORT_http": "25001", "NOMAD_IP_http": "127.0.0.1", "NOMAD_MEMORY_LIMIT": "256",
		"NOMAD_TASK_DIR": "/local", "NOMAD_REGION": "eu",
		"NIMBUS_FUNCTION_NAME": "resize", "NIMBUS_RUNTIME": "python3", "NIMBUS_HANDLER": "app.handler",
		"NIMBUS_TIMEOUT": "30s", "NIMBUS_BILLING_GRANULARITY": "100ms",
	}
	cfg, listen, err := parseConfig(nil, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if listen != "127.0.0.1:25001" {
		t.Errorf("listen %q, want Nomad's http port", listen)
	}
	if cfg.FunctionName != "resize" || cfg.Runtime != "python3" || cfg.Handler != "app.handler" || cfg.MemoryMB != 256 ||
		cfg.TaskRoot != "/local/function" || cfg.Region != "eu" || cfg.Timeout != 30*time.Second || cfg.BillingGranularity != 100*time.Millisecond {
		t.Errorf("config from the environment: %+v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("valid configuration refused: %v", err)
	}
}

func TestFlagsOverrideEnvironment(t *testing.T) {
	env := map[string]string{"NIMBUS_FUNCTION_NAME": "a", "NOMAD_MEMORY_LIMIT": "256", "NOMAD_PORT_http": "1"}
	cfg, listen, err := parseConfig([]string{"-function", "b", "-memory-mb", "512", "-listen", "127.0.0.1:9"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.FunctionName != "b" || cfg.MemoryMB != 512 || listen != "127.0.0.1:9" {
		t.Errorf("flags must win: %+v listen=%s", cfg, listen)
	}
}

func TestBadNumbersAreRefused(t *testing.T) {
	for _, args := range [][]string{
		{"-listen", ":1", "-memory-mb", "lots"},
		{"-listen", ":1", "-memory-mb", "-5"},
		{"-listen", ":1", "-concurrency", "x"},
		{"-listen", ":1", "-timeout", "0s"},
	} {
		if _, _, err := parseConfig(args, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), args[3]) {
			t.Errorf("%v: want an error quoting %q, got %v", args, args[3], err)
		}
	}
}
