package model

import (
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"

	"strings"
	"testing"
	"time"
)

func valid() Function {
	return Function{Name: "resize-images", Runtime: RuntimePython, Handler: "app.handler"}.WithDefaults()
}

func TestDefaults(t *testing.T) {
	f := Function{Name: "f", Runtime: RuntimeProvided}.WithDefaults()
	if f.Handler != "bootstrap" || f.MemoryMB != 128 || f.Timeout != 3*time.Second || f.Concurrency != 1 ||
		f.MinInstances != 0 || f.MaxInstances != 10 || f.IdleTimeout != 5*time.Minute || f.BillingGranularity != time.Millisecond {
		t.Errorf("defaults: %+v", f)
	}
	if err := f.Validate(); err != nil {
		t.Errorf("defaults must be valid: %v", err)
	}
	if f.EffectiveCPUMHz() != 128 {
		t.Errorf("CPU follows memory: %d", f.EffectiveCPUMHz())
	}
	f.MemoryMB = 64
	if f.EffectiveCPUMHz() != MinCPUMHz {
		t.Errorf("CPU has a floor: %d", f.EffectiveCPUMHz())
	}
	f.CPUMHz = 700
	if f.EffectiveCPUMHz() != 700 {
		t.Errorf("cpu_mhz wins: %d", f.EffectiveCPUMHz())
	}
}

func TestEveryRule(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Function)
		field  string
		says   string // part of the message telling what is allowed
	}{
		{"empty name", func(f *Function) { f.Name = "" }, "name", "required"},
		{"uppercase name", func(f *Function) { f.Name = "Resize" }, "name", "DNS label"},
		{"name with underscore", func(f *Function) { f.Name = "resize_images" }, "name", "lowercase letters, digits and '-'"},
		{"name ending in dash", func(f *Function) { f.Name = "resize-" }, "name", "starting and ending"},
		{"long name", func(f *Function) { f.Name = strings.Repeat("a", 64) }, "name", "at most 63"},
		{"unknown runtime", func(f *Function) { f.Runtime = "ruby" }, "runtime", "provided, python3, nodejs, http"},
		{"python handler without function", func(f *Function) { f.Handler = "app" }, "handler", "module.function"},
		{"node handler without export", func(f *Function) { f.Runtime, f.Handler = RuntimeNode, "index" }, "handler", "file.export"},
		{"executable escaping the source", func(f *Function) { f.Runtime, f.Handler = RuntimeProvided, "../bin/sh" }, "handler", "inside the source"},
		{"memory too small", func(f *Function) { f.MemoryMB = 32 }, "memory_mb", "64 to 10240"},
		{"memory too large", func(f *Function) { f.MemoryMB = 20000 }, "memory_mb", "64 to 10240"},
		{"cpu too small", func(f *Function) { f.CPUMHz = 10 }, "cpu_mhz", "minimum of 100"},
		{"timeout too short", func(f *Function) { f.Timeout = 500 * time.Millisecond }, "timeout", "1s to 15m"},
		{"timeout over 15 minutes", func(f *Function) { f.Timeout = 16 * time.Minute }, "timeout", "1s to 15m"},
		{"reserved variable", func(f *Function) { f.Environment = map[string]string{"AWS_LAMBDA_FUNCTION_NAME": "x"} }, "environment", "reserved"},
		{"reserved prefix", func(f *Function) { f.Environment = map[string]string{"NOMAD_TOKEN": "x"} }, "environment", "NOMAD_"},
		{"bad variable name", func(f *Function) { f.Environment = map[string]string{"1X": "x"} }, "environment", "not a valid variable name"},
		{"environment too large", func(f *Function) { f.Environment = map[string]string{"BIG": strings.Repeat("x", 4094)} }, "environment", "at most 4096 bytes"},
		{"secret of another function", func(f *Function) {
			f.Secrets = map[string]protocol.SecretRef{"DB": {Path: SecretsRoot("other"), Key: "password"}}
		}, "secrets", "not readable by the function's instances"},
		{"secret below the job's paths", func(f *Function) {
			f.Secrets = map[string]protocol.SecretRef{"DB": {Path: SecretsRoot(f.Name) + "/db", Key: "password"}}
		}, "secrets", "nomad var put " + SecretsRoot("resize-images") + " password="},
		{"secret not a variable path", func(f *Function) {
			f.Secrets = map[string]protocol.SecretRef{"DB": {Path: "nomad/jobs/../x", Key: "k"}}
		}, "secrets", "not a Nomad Variable path"},
		{"secret without key", func(f *Function) {
			f.Secrets = map[string]protocol.SecretRef{"DB": {Path: SecretsRoot(f.Name)}}
		}, "secrets", "not a variable key"},
		{"secret named like the runtime's", func(f *Function) {
			f.Secrets = map[string]protocol.SecretRef{"NIMBUS_X": {Path: SecretsRoot(f.Name), Key: "k"}}
		}, "secrets", "reserved"},
		{"secret also in environment", func(f *Function) {
			f.Environment = map[string]string{"DB": "plain"}
			f.Secrets = map[string]protocol.SecretRef{"DB": {Path: SecretsRoot(f.Name), Key: "k"}}
		}, "secrets", "also in environment"},
		{"concurrency zero", func(f *Function) { f.Concurrency = 0 }, "concurrency", "1 to 1000"},
		{"concurrency without http", func(f *Function) { f.Concurrency = 4 }, "concurrency", "needs runtime \"http\""},
		{"negative min", func(f *Function) { f.MinInstances = -1 }, "min_instances", "0 (scale to zero)"},
		{"min above max", func(f *Function) { f.MinInstances, f.MaxInstances = 5, 2 }, "min_instances", "above max_instances (2)"},
		{"max zero", func(f *Function) { f.MaxInstances = -3 }, "max_instances", "below 1"},
		{"idle too short", func(f *Function) { f.IdleTimeout = time.Second }, "idle_timeout", "10s to 24h"},
		{"odd billing", func(f *Function) { f.BillingGranularity = 10 * time.Millisecond }, "billing_granularity", `"1ms" or "100ms"`},
		{"long description", func(f *Function) { f.Description = strings.Repeat("d", 300) }, "description", "at most 256"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := valid()
			tc.mutate(&f)
			errs := AsFieldErrors(f.Validate())
			if len(errs) != 1 {
				t.Fatalf("want exactly one error, got %v", errs)
			}
			if errs[0].Field != tc.field || !strings.Contains(errs[0].Message, tc.says) {
				t.Errorf("got %q on %s; want field %s saying %q", errs[0].Message, errs[0].Field, tc.field, tc.says)
			}
		})
	}
}

func TestValidSettingsPass(t *testing.T) {
	for _, f := range []Function{
		{Name: "a", Runtime: RuntimeProvided, Handler: "bin/server"},
		{Name: "web", Runtime: RuntimeHTTP, Concurrency: 50},
		{Name: "js", Runtime: RuntimeNode, Handler: "src/index.handler"},
		{Name: "py", Runtime: RuntimePython, Handler: "pkg.mod.handler", MemoryMB: 10240, Timeout: 15 * time.Minute,
			Environment: map[string]string{"LOG_LEVEL": "debug", "AWS_ACCESS_KEY_ID": "x"}, MinInstances: 2, MaxInstances: 2,
			BillingGranularity: 100 * time.Millisecond},
	} {
		if err := f.WithDefaults().Validate(); err != nil {
			t.Errorf("%s: %v", f.Name, err)
		}
	}
}

func TestAllProblemsReportedAtOnce(t *testing.T) {
	f := Function{Name: "Bad_Name", Runtime: RuntimePython, Handler: "x", MemoryMB: 1, Timeout: time.Hour}.WithDefaults()
	if n := len(AsFieldErrors(f.Validate())); n != 4 {
		t.Errorf("want 4 errors (name, handler, memory, timeout), got %d: %v", n, f.Validate())
	}
}

func TestParseBillingGranularity(t *testing.T) {
	for in, want := range map[string]time.Duration{"": time.Millisecond, "1ms": time.Millisecond, "100ms": 100 * time.Millisecond} {
		if got, err := ParseBillingGranularity(in); err != nil || got != want {
			t.Errorf("%q: %v %v", in, got, err)
		}
	}
	if _, err := ParseBillingGranularity("1s"); err == nil || !strings.Contains(err.Error(), `"100ms"`) {
		t.Errorf("1s must be refused with the allowed values: %v", err)
	}
}
