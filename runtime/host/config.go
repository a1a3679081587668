package host

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
)

// Runtimes the host can run.
const (
	RuntimeProvided = "provided"
	RuntimePython   = "python3"
	RuntimeNode     = "nodejs"
	RuntimeHTTP     = "http"
)

// Config is one function instance's settings. cmd/nimbus-host fills it from
// flags and the environment that the Nomad job sets.
type Config struct {
	FunctionName    string
	FunctionVersion string
	Runtime         string
	// Handler names the entry point: an executable for provided and http
	// (default "bootstrap"), module.function for python3, file.export for
	// nodejs.
	Handler  string
	TaskRoot string // the function's code
	MemoryMB int
	// Timeout applies when the gateway sends no deadline.
	Timeout time.Duration
	// BillingGranularity rounds billed durations up: 1ms or 100ms.
	BillingGranularity time.Duration
	// Concurrency is how many invocations the http runtime serves at once.
	// Runtime API handlers serve one at a time.
	Concurrency int
	Region      string
	// Python and Node name the interpreters.
	Python, Node string
	// RuntimeDir receives the shipped bootstraps.
	RuntimeDir string
	// Env is the function's own variables ("NAME=value"), the only ones
	// besides its secrets and Lambda's that the handler sees.
	Env []string
	// Secrets are "NAME=value" entries for the handler only, from Nomad
	// Variables (LoadSecrets). The host never logs them.
	Secrets []string
	// GatewayURL is where the handler reaches the Nimbus gateway's
	// function listener; it becomes the Lambda endpoint of AWS SDKs
	// (AWS_ENDPOINT_URL_LAMBDA) unless the function sets its own.
	GatewayURL string
	// InstanceKey, when set, is the key every POST /invoke must carry
	// (protocol.HeaderInstanceKey): only the gateway, which reads it from
	// the allocation through Nomad, may invoke the instance.
	InstanceKey string
	// EnforceMemory has the host itself hold the handler to MemoryMB, for
	// a sandbox whose own limit is larger (a warm pool's instance of a
	// larger memory class): a handler whose resident memory passes
	// MemoryMB is killed and the invocation reports Runtime.OutOfMemory,
	// as the cgroup would at its limit.
	EnforceMemory bool
}

// withDefaults fills what is unset.
func (c Config) withDefaults() Config {
	if c.FunctionVersion == "" {
		c.FunctionVersion = "$LATEST"
	}
	if c.Handler == "" && (c.Runtime == RuntimeProvided || c.Runtime == RuntimeHTTP) {
		c.Handler = "bootstrap"
	}
	if c.MemoryMB == 0 {
		c.MemoryMB = 128
	}
	if c.Timeout == 0 {
		c.Timeout = model.DefaultTimeout
	}
	if c.BillingGranularity == 0 {
		c.BillingGranularity = time.Millisecond
	}
	if c.Concurrency == 0 {
		c.Concurrency = 1
	}
	if c.Region == "" {
		c.Region = "local"
	}
	if c.Python == "" {
		c.Python = "python3"
	}
	if c.Node == "" {
		c.Node = "node"
	}
	return c
}

// Validate reports settings the host cannot run with, after defaults.
func (c Config) Validate() error { return c.withDefaults().validate() }

// validate reports settings the host cannot run with.
func (c Config) validate() error {
	var errs []error
	if c.FunctionName == "" {
		errs = append(errs, errors.New("function name is required (-function or AWS_LAMBDA_FUNCTION_NAME)"))
	}
	switch c.Runtime {
	case RuntimeProvided, RuntimePython, RuntimeNode, RuntimeHTTP:
	default:
		errs = append(errs, fmt.Errorf("runtime %q is not one of provided, python3, nodejs, http", c.Runtime))
	}
	if c.Handler == "" && c.Runtime != "" {
		errs = append(errs, fmt.Errorf("the %s runtime needs a handler", c.Runtime))
	}
	if c.TaskRoot == "" {
		errs = append(errs, errors.New("task root (the function's code directory) is required"))
	}
	if c.BillingGranularity != time.Millisecond && c.BillingGranularity != 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("billing granularity %s is not 1ms or 100ms", c.BillingGranularity))
	}
	if c.Concurrency > 1 && c.Runtime != RuntimeHTTP {
		errs = append(errs, fmt.Errorf("concurrency %d needs the http runtime; Runtime API handlers take one invocation at a time", c.Concurrency))
	}
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("concurrency %d must be at least 1", c.Concurrency))
	}
	return errors.Join(errs...)
}

// EnvList turns variables into Env's form, sorted by name.
func EnvList(vars map[string]string) []string {
	env := make([]string, 0, len(vars))
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return env
}
