package protocol

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// The environment a function job gives nimbus-host: the job rendering
// (internal/nomadjob) sets these, nimbus-host reads them, and the provider
// reads them back from the job to detect drift. The handler sees none of
// them: only Lambda's variables and the function's own (see
// EnvFunctionVariables).
const (
	EnvPrefix             = "NIMBUS_"
	EnvFunctionName       = "NIMBUS_FUNCTION_NAME"
	EnvFunctionVersion    = "NIMBUS_FUNCTION_VERSION"
	EnvRuntime            = "NIMBUS_RUNTIME"
	EnvHandler            = "NIMBUS_HANDLER"
	EnvMemoryMB           = "NIMBUS_MEMORY_MB"
	EnvTimeout            = "NIMBUS_TIMEOUT"
	EnvBillingGranularity = "NIMBUS_BILLING_GRANULARITY"
	EnvConcurrency        = "NIMBUS_CONCURRENCY"
	EnvPython             = "NIMBUS_PYTHON"
	EnvNode               = "NIMBUS_NODE"
	EnvListen             = "NIMBUS_LISTEN"
	// EnvInstanceKeyFile is where the host writes its instance key
	// (InstanceKeyFile in the task's local directory); unset, the host
	// takes invocations from anyone who reaches it.
	EnvInstanceKeyFile = "NIMBUS_INSTANCE_KEY_FILE"
	EnvTaskRoot        = "NIMBUS_TASK_ROOT"
	// EnvPackageURL is the signed URL of the function's package in the
	// gateway's artifact store, and EnvPackageSHA256 its digest: the host
	// fetches the package itself (through the gateway's function listener
	// where the client names one), verifies it and unpacks it into the
	// task root before anything of it runs. Unset, the code is already in
	// the task root (a source_url, which Nomad fetches).
	EnvPackageURL    = "NIMBUS_PACKAGE_URL"
	EnvPackageSHA256 = "NIMBUS_PACKAGE_SHA256"
	// EnvPoolRuntime makes the host a warm pool's instance of that
	// runtime: it waits, without a function, for the gateway to hand it
	// one (POST PathSpecialize), and serves that function for the rest of
	// its life.
	EnvPoolRuntime = "NIMBUS_POOL_RUNTIME"
	EnvRegion      = "NIMBUS_REGION"
	// EnvGatewayForFunctions is the gateway's function listener as the
	// client's node meta NodeMetaGatewayURL gives it (unresolved when the
	// client sets none). nimbus-host passes it to the handler as
	// EnvLambdaEndpoint, where AWS SDKs look for the Lambda endpoint.
	EnvGatewayForFunctions = "NIMBUS_GATEWAY_FOR_FUNCTIONS"
	NodeMetaGatewayURL     = "nimbus.gateway_url"
	EnvLambdaEndpoint      = "AWS_ENDPOINT_URL_LAMBDA"
)

// The environment of a schedule's run (a Nomad periodic job running
// `nimbus-gateway deliver`): which function gets which event.
const (
	EnvScheduleFunction = "NIMBUS_FUNCTION"
	EnvScheduleName     = "NIMBUS_SCHEDULE"
	EnvSchedulePayload  = "NIMBUS_PAYLOAD_JSON"
	EnvGatewayURL       = "NIMBUS_GATEWAY_URL"
)

// Secrets reach the handler without ever being in the job spec: the job
// sets EnvSecrets to the references (JSON of map[string]SecretRef, no
// values), its template renders the referenced Nomad Variables into
// SecretsFile in the task's secrets dir (JSON of path → key → value), and
// nimbus-host puts each value in the handler's environment.
const (
	EnvSecrets  = "NIMBUS_SECRETS"
	SecretsFile = "nimbus-secrets.json"
)

// SecretRef names one secret: a key of a Nomad Variable.
type SecretRef struct {
	Path string `json:"path"`
	Key  string `json:"key"`
}

// EnvFunctionVariables names the function's own variables in its task's
// environment, comma-separated and sorted. Nomad's exec driver gives a
// task the client agent's whole environment too (whatever its operator's
// shell held), and nothing else tells the two apart: nimbus-host passes
// the handler exactly the variables named here, plus Lambda's own.
const EnvFunctionVariables = "NIMBUS_FUNCTION_VARIABLES"

// SetFunctionVariables writes a function's own variables into a task's
// environment and names them in EnvFunctionVariables. A name the task
// environment already holds (a host setting) is left as it is.
func SetFunctionVariables(env, own map[string]string) {
	names := make([]string, 0, len(own))
	for k, v := range own {
		if _, taken := env[k]; taken {
			continue
		}
		env[k] = v
		names = append(names, k)
	}
	sort.Strings(names)
	env[EnvFunctionVariables] = strings.Join(names, ",")
}

// FunctionVariables reads a function's own variables back from its task's
// environment. named is false for a job rendered before
// EnvFunctionVariables existed: its variables are then every one without
// the NIMBUS_ or NOMAD_ prefix, which on a running instance includes the
// client agent's environment.
func FunctionVariables(env map[string]string) (vars map[string]string, named bool) {
	vars = map[string]string{}
	list, named := env[EnvFunctionVariables]
	if !named {
		for k, v := range env {
			if !strings.HasPrefix(k, EnvPrefix) && !strings.HasPrefix(k, "NOMAD_") {
				vars[k] = v
			}
		}
		return vars, false
	}
	for _, k := range strings.Split(list, ",") {
		if v, ok := env[k]; ok && k != "" {
			vars[k] = v
		}
	}
	return vars, true
}

// EnvironMap is os.Environ's list as a map.
func EnvironMap(environ []string) map[string]string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// SetSecretRefs names a function's secrets in a task's environment
// (EnvSecrets): references only, never values.
func SetSecretRefs(env map[string]string, refs map[string]SecretRef) {
	if len(refs) == 0 {
		return
	}
	b, _ := json.Marshal(refs)
	env[EnvSecrets] = string(b)
}

// SecretRefs reads the references SetSecretRefs wrote; none when the task
// has no secrets.
func SecretRefs(env map[string]string) (map[string]SecretRef, error) {
	raw := env[EnvSecrets]
	if raw == "" {
		return nil, nil
	}
	var refs map[string]SecretRef
	if err := json.Unmarshal([]byte(raw), &refs); err != nil {
		return nil, fmt.Errorf("%s is not valid JSON: %w", EnvSecrets, err)
	}
	return refs, nil
}
