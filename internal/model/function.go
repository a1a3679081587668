// Package model holds the function, trigger and limits specifications that
// the provider and the gateway share, with their defaults and validation.
// Every rule reports the field, what is wrong and what is allowed, so the
// provider can turn it into a plan-time diagnostic.
package model

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
)

// Runtimes a function can use.
const (
	RuntimeProvided = "provided"
	RuntimePython   = "python3"
	RuntimeNode     = "nodejs"
	RuntimeHTTP     = "http"
)

// Runtimes lists the valid runtimes in the order docs show them.
var Runtimes = []string{RuntimeProvided, RuntimePython, RuntimeNode, RuntimeHTTP}

// Limits of a function's settings.
const (
	MaxNameLength     = 63
	MinMemoryMB       = 64
	MaxMemoryMB       = 10240
	DefaultMemoryMB   = 128
	MinTimeout        = time.Second
	MaxTimeout        = 15 * time.Minute
	DefaultTimeout    = 3 * time.Second
	MaxEnvironment    = 4096 // bytes of keys and values together
	DefaultMaxInst    = 10
	DefaultIdle       = 5 * time.Minute
	MinIdle           = 10 * time.Second
	MaxIdle           = 24 * time.Hour
	MaxDescription    = 256
	MinCPUMHz         = 100
	MaxConcurrency    = 1000
	DefaultBilling    = time.Millisecond
	CoarseBilling     = 100 * time.Millisecond
	DefaultConcurrent = 1
)

// Function is one function's specification.
type Function struct {
	Name        string
	Description string
	Runtime     string
	Handler     string
	MemoryMB    int
	CPUMHz      int // 0: follows memory
	Timeout     time.Duration
	Environment map[string]string
	// Secrets maps handler variable names to Nomad Variables; only the
	// references are configuration, never the values.
	Secrets            map[string]protocol.SecretRef
	Concurrency        int
	MinInstances       int
	MaxInstances       int
	IdleTimeout        time.Duration
	BillingGranularity time.Duration
	// Egress is what the function's instances may connect to: EgressPublic
	// or EgressNone. It takes effect where instances run in their own
	// network namespace (not with host networking).
	Egress string
}

// Egress choices. Whatever the choice, an instance never reaches the host's
// ports (but the gateway's function listener), other instances, or
// link-local addresses.
const (
	// EgressPublic lets instances open connections to any other
	// destination and to the gateway, as Lambda functions outside a VPC.
	EgressPublic = "public"
	// EgressNone lets instances open no connection at all; they only
	// answer the gateway.
	EgressNone = "none"
)

// WithDefaults fills unset fields with their documented defaults.
func (f Function) WithDefaults() Function {
	if f.Handler == "" && (f.Runtime == RuntimeProvided || f.Runtime == RuntimeHTTP) {
		f.Handler = "bootstrap"
	}
	orDefault(&f.MemoryMB, DefaultMemoryMB)
	orDefault(&f.Timeout, DefaultTimeout)
	orDefault(&f.Concurrency, DefaultConcurrent)
	orDefault(&f.MaxInstances, DefaultMaxInst)
	orDefault(&f.IdleTimeout, DefaultIdle)
	orDefault(&f.BillingGranularity, DefaultBilling)
	orDefault(&f.Egress, EgressPublic)
	return f
}

// EffectiveCPUMHz is the CPU the function's instances reserve: cpu_mhz
// when set, else 1 MHz per MB of memory, at least MinCPUMHz.
func (f Function) EffectiveCPUMHz() int {
	if f.CPUMHz > 0 {
		return f.CPUMHz
	}
	return max(f.MemoryMB, MinCPUMHz)
}

// FieldError is one invalid setting.
type FieldError struct {
	Field   string // the Terraform attribute name, e.g. "memory_mb"
	Message string // what is wrong and what is allowed
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

// FieldErrors collects every invalid setting, so users fix them in one pass.
type FieldErrors []*FieldError

func (es FieldErrors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

// err returns nil for no errors, so callers can test err != nil.
func (es FieldErrors) err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

var (
	dnsLabel   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	envName    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	pyHandler  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\.[A-Za-z_][A-Za-z0-9_]*$`)
	jsHandler  = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_./-]*\.[A-Za-z_$][A-Za-z0-9_$]*$`)
	execHandle = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_./-]*$`)
)

// reservedEnv are names the runtime sets; a function may not override them.
var reservedEnv = map[string]bool{
	"_HANDLER": true, "_X_AMZN_TRACE_ID": true, "AWS_REGION": true, "AWS_DEFAULT_REGION": true,
	"AWS_EXECUTION_ENV": true, "LAMBDA_TASK_ROOT": true, "LAMBDA_RUNTIME_DIR": true, "TZ": true, "PORT": true,
}

// reservedEnvPrefixes are families of names the runtime or Nomad owns.
var reservedEnvPrefixes = []string{"AWS_LAMBDA_", protocol.EnvPrefix, "NOMAD_"}

// ValidateName checks a function name on its own (the provider checks it
// at plan time even when other fields are unknown).
func ValidateName(name string) *FieldError {
	switch {
	case name == "":
		return &FieldError{"name", "is required"}
	case len(name) > MaxNameLength:
		return &FieldError{"name", fmt.Sprintf("%q is %d characters; at most %d are allowed", name, len(name), MaxNameLength)}
	case !dnsLabel.MatchString(name):
		return &FieldError{"name", fmt.Sprintf("%q is not a DNS label: use lowercase letters, digits and '-', starting and ending with a letter or digit (for example \"resize-images\")", name)}
	}
	return nil
}

// ValidateEnvironment checks names and total size.
func ValidateEnvironment(env map[string]string) FieldErrors {
	var errs FieldErrors
	keys := make([]string, 0, len(env))
	size := 0
	for k, v := range env {
		keys = append(keys, k)
		size += len(k) + len(v)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !envName.MatchString(k) {
			errs = append(errs, &FieldError{"environment", fmt.Sprintf("%q is not a valid variable name: use letters, digits and '_', not starting with a digit", k)})
			continue
		}
		if reason := reservedReason(k); reason != "" {
			errs = append(errs, &FieldError{"environment", fmt.Sprintf("%q is reserved: %s; choose another name", k, reason)})
		}
	}
	if size > MaxEnvironment {
		errs = append(errs, &FieldError{"environment", fmt.Sprintf("variables take %d bytes; at most %d bytes of names and values are allowed", size, MaxEnvironment)})
	}
	return errs
}

func reservedReason(k string) string {
	if reservedEnv[k] {
		return "the runtime sets it"
	}
	for _, p := range reservedEnvPrefixes {
		if strings.HasPrefix(k, p) {
			return fmt.Sprintf("names starting with %s belong to the runtime", p)
		}
	}
	return ""
}

// Validate checks every field of a specification (after WithDefaults) and
// returns FieldErrors listing each problem, or nil.
func (f Function) Validate() error {
	var errs FieldErrors
	if e := ValidateName(f.Name); e != nil {
		errs = append(errs, e)
	}
	if len(f.Description) > MaxDescription {
		errs = append(errs, &FieldError{"description", fmt.Sprintf("is %d characters; at most %d are allowed", len(f.Description), MaxDescription)})
	}
	errs = append(errs, f.validateRuntime()...)
	if f.MemoryMB < MinMemoryMB || f.MemoryMB > MaxMemoryMB {
		errs = append(errs, &FieldError{"memory_mb", fmt.Sprintf("%d is out of range: use %d to %d", f.MemoryMB, MinMemoryMB, MaxMemoryMB)})
	}
	if f.CPUMHz != 0 && f.CPUMHz < MinCPUMHz {
		errs = append(errs, &FieldError{"cpu_mhz", fmt.Sprintf("%d is below the minimum of %d MHz (leave it unset to follow memory_mb)", f.CPUMHz, MinCPUMHz)})
	}
	if f.Timeout < MinTimeout || f.Timeout > MaxTimeout {
		errs = append(errs, &FieldError{"timeout", fmt.Sprintf("%s is out of range: use %s to %s", f.Timeout, MinTimeout, "15m")})
	}
	errs = append(errs, ValidateEnvironment(f.Environment)...)
	errs = append(errs, f.validateSecrets()...)
	if f.Egress != EgressPublic && f.Egress != EgressNone {
		errs = append(errs, &FieldError{"egress", fmt.Sprintf("%q is not an egress choice: use %q (any destination but the host, other instances and link-local addresses) or %q (no outgoing connections)", f.Egress, EgressPublic, EgressNone)})
	}
	switch {
	case f.Concurrency < 1 || f.Concurrency > MaxConcurrency:
		errs = append(errs, &FieldError{"concurrency", fmt.Sprintf("%d is out of range: use 1 to %d", f.Concurrency, MaxConcurrency)})
	case f.Concurrency > 1 && f.Runtime != RuntimeHTTP && f.Runtime != "":
		errs = append(errs, &FieldError{"concurrency", fmt.Sprintf("%d needs runtime \"http\": Lambda-style handlers take one invocation at a time per instance", f.Concurrency)})
	}
	if f.MinInstances < 0 {
		errs = append(errs, &FieldError{"min_instances", fmt.Sprintf("%d is negative: use 0 (scale to zero) or more", f.MinInstances)})
	}
	if f.MaxInstances < 1 {
		errs = append(errs, &FieldError{"max_instances", fmt.Sprintf("%d is below 1", f.MaxInstances)})
	} else if f.MinInstances > f.MaxInstances {
		errs = append(errs, &FieldError{"min_instances", fmt.Sprintf("%d is above max_instances (%d)", f.MinInstances, f.MaxInstances)})
	}
	if f.IdleTimeout < MinIdle || f.IdleTimeout > MaxIdle {
		errs = append(errs, &FieldError{"idle_timeout", fmt.Sprintf("%s is out of range: use %s to %s", f.IdleTimeout, MinIdle, "24h")})
	}
	if f.BillingGranularity != DefaultBilling && f.BillingGranularity != CoarseBilling {
		errs = append(errs, &FieldError{"billing_granularity", fmt.Sprintf("%s is not allowed: use \"1ms\" or \"100ms\"", f.BillingGranularity)})
	}
	return errs.err()
}

// JobPrefix starts every function's Nomad job id (nimbus-fn-<name>).
const JobPrefix = "nimbus-fn-"

// SecretsRoot is the Nomad Variable that holds a function's secrets, one
// key each. Nomad lets a job's workload identity read exactly
// nomad/jobs/<job>, nomad/jobs/<job>/<group> and
// nomad/jobs/<job>/<group>/<task>, so only that job's instances can read it.
func SecretsRoot(function string) string { return "nomad/jobs/" + JobPrefix + function }

// SecretPaths are the variable paths a function's instances may read (the
// job's group is "fn" and its task "host").
func SecretPaths(function string) []string {
	root := SecretsRoot(function)
	return []string{root, root + "/fn", root + "/fn/host"}
}

// variablePath and variableKey are what Nomad accepts for a variable's
// path and what a template can render for a key.
var (
	variablePath = regexp.MustCompile(`^[a-zA-Z0-9_~/-]{1,128}$`)
	variableKey  = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)
)

func (f Function) validateSecrets() FieldErrors {
	var errs FieldErrors
	names := make([]string, 0, len(f.Secrets))
	for name := range f.Secrets {
		names = append(names, name)
	}
	sort.Strings(names)
	root := SecretsRoot(f.Name)
	readable := SecretPaths(f.Name)
	for _, name := range names {
		ref := f.Secrets[name]
		switch {
		case !envName.MatchString(name):
			errs = append(errs, &FieldError{"secrets", fmt.Sprintf("%q is not a valid variable name: use letters, digits and '_', not starting with a digit", name)})
		case reservedReason(name) != "":
			errs = append(errs, &FieldError{"secrets", fmt.Sprintf("%q is reserved: %s; choose another name", name, reservedReason(name))})
		case hasKey(f.Environment, name):
			errs = append(errs, &FieldError{"secrets", fmt.Sprintf("%q is also in environment: a variable comes from one or the other", name)})
		}
		switch {
		case !variablePath.MatchString(ref.Path) || strings.Contains(ref.Path, "//") || strings.HasSuffix(ref.Path, "/"):
			errs = append(errs, &FieldError{"secrets", fmt.Sprintf("%s: path %q is not a Nomad Variable path (letters, digits and -_~/, at most 128)", name, ref.Path)})
		case !slices.Contains(readable, ref.Path):
			errs = append(errs, &FieldError{"secrets", fmt.Sprintf("%s: path %q is not readable by the function's instances. Nomad lets a job read only its own variables (%s); store the secret as a key of %s, for example `nomad var put %s %s=...`",
				name, ref.Path, strings.Join(readable, ", "), root, root, keyOrDefault(ref.Key))})
		}
		if !variableKey.MatchString(ref.Key) {
			errs = append(errs, &FieldError{"secrets", fmt.Sprintf("%s: key %q is not a variable key (letters, digits and _.-)", name, ref.Key)})
		}
	}
	return errs
}

func hasKey(m map[string]string, k string) bool {
	_, ok := m[k]
	return ok
}

func keyOrDefault(k string) string {
	if k == "" {
		return "value"
	}
	return k
}

func (f Function) validateRuntime() FieldErrors {
	switch f.Runtime {
	case RuntimeProvided, RuntimeHTTP:
		if !execHandle.MatchString(f.Handler) || strings.Contains(f.Handler, "..") {
			return FieldErrors{{"handler", fmt.Sprintf("%q is not a path to an executable inside the source (for example \"bootstrap\" or \"bin/server\")", f.Handler)}}
		}
	case RuntimePython:
		if !pyHandler.MatchString(f.Handler) {
			return FieldErrors{{"handler", fmt.Sprintf("%q is not module.function (for example \"app.handler\")", f.Handler)}}
		}
	case RuntimeNode:
		if !jsHandler.MatchString(f.Handler) || strings.Contains(f.Handler, "..") {
			return FieldErrors{{"handler", fmt.Sprintf("%q is not file.export (for example \"index.handler\")", f.Handler)}}
		}
	default:
		return FieldErrors{{"runtime", fmt.Sprintf("%q is not supported: use one of %s", f.Runtime, strings.Join(Runtimes, ", "))}}
	}
	return nil
}

// AsFieldErrors unwraps a Validate error.
func AsFieldErrors(err error) FieldErrors {
	var fe FieldErrors
	if errors.As(err, &fe) {
		return fe
	}
	return nil
}

// ParseBillingGranularity accepts "1ms" or "100ms".
func ParseBillingGranularity(s string) (time.Duration, error) {
	switch s {
	case "", "1ms":
		return DefaultBilling, nil
	case "100ms":
		return CoarseBilling, nil
	}
	return 0, &FieldError{"billing_granularity", fmt.Sprintf("%q is not allowed: use \"1ms\" or \"100ms\"", s)}
}

// orDefault sets an unset (zero) field to its default.
func orDefault[T comparable](field *T, def T) {
	var zero T
	if *field == zero {
		*field = def
	}
}
