// Package kvstore is the Consul KV layout that the provider writes and the
// gateway reads: everything lives under nimbus/.
package kvstore

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Prefix is the root of Nimbus's keys.
const Prefix = "nimbus/"

// OverlapsNimbus reports whether a KV prefix covers Nimbus's own keys or
// lies inside them: "nimbus", "n" and "" watch nimbus/ as surely as
// "nimbus/functions/" does. A KV trigger on such a prefix would see the
// progress it writes after every batch and invoke itself forever.
func OverlapsNimbus(prefix string) bool {
	return strings.HasPrefix(prefix, Prefix) || strings.HasPrefix(Prefix, prefix)
}

// FunctionsPrefix holds one record per function.
const FunctionsPrefix = Prefix + "functions/"

// FunctionKey is where a function's record lives: its mutable $LATEST.
func FunctionKey(name string) string { return FunctionsPrefix + name }

// VersionsPrefix holds the function's published versions, one immutable
// record each, under its own key, so that the deployer's and the gateway's
// rights on nimbus/functions/ cover them and deleting the function's tree
// deletes them.
func VersionsPrefix(name string) string { return FunctionKey(name) + "/versions/" }

// UnreferencedPrefix holds, for each published version that nothing
// references, when the deployer first found it so; the version is
// collected once its grace period has passed since.
func UnreferencedPrefix(name string) string { return FunctionKey(name) + "/unreferenced/" }

// AliasesPrefix holds the function's aliases (nimbus_alias).
func AliasesPrefix(name string) string { return FunctionKey(name) + "/aliases/" }

// AliasKey is where a function's alias lives.
func AliasKey(function, alias string) string { return AliasesPrefix(function) + alias }

// AliasRecord is an alias of a function: a name for one of its versions,
// with part of the traffic sent to other versions by weight, as Lambda's
// aliases.
type AliasRecord struct {
	Name     string `json:"name"`
	Function string `json:"function"`
	// FunctionVersion is the version the alias names: "$LATEST" or a
	// published version's number.
	FunctionVersion string `json:"function_version"`
	// AdditionalVersionWeights sends each version its share of the
	// invocations (0 to 1, less than 1 in all); FunctionVersion gets the
	// rest.
	AdditionalVersionWeights map[string]float64 `json:"additional_version_weights,omitempty"`
	Description              string             `json:"description,omitempty"`
	// Deployment, when set, has the gateways shift the alias's invocations
	// from PreviousVersion to FunctionVersion step by step, and roll back
	// when a condition trips; DeploymentID names this shift, so that a
	// new one starts afresh.
	Deployment      *AliasDeployment `json:"deployment,omitempty"`
	PreviousVersion string           `json:"previous_version,omitempty"`
	DeploymentID    string           `json:"deployment_id,omitempty"`
}

// Deploying reports whether the alias shifts its invocations from one
// version to another step by step.
func (a AliasRecord) Deploying() bool {
	return a.Deployment != nil && a.Deployment.Type != DeployAllAtOnce && a.DeploymentID != "" &&
		a.PreviousVersion != "" && a.PreviousVersion != a.FunctionVersion
}

// How an alias moves to a new version (AliasDeployment.Type).
const (
	DeployAllAtOnce = "all_at_once"
	// DeployCanary sends Percentage to the new version for Interval, then
	// everything.
	DeployCanary = "canary"
	// DeployLinear adds Percentage every Interval until everything.
	DeployLinear = "linear"
)

// AliasDeployment is how an alias moves to a new version, and when it
// moves back.
type AliasDeployment struct {
	Type       string  `json:"type"`
	Percentage float64 `json:"percentage"` // of the invocations, per step
	Interval   string  `json:"interval"`
	// Rollback conditions, judged on the new version's invocations over
	// Window once there are MinRequests of them: an error rate above
	// ErrorRateAbove percent, or a p99 latency above P99Above. Zero
	// values judge nothing.
	ErrorRateAbove float64 `json:"error_rate_above,omitempty"`
	P99Above       string  `json:"p99_above,omitempty"`
	Window         string  `json:"window"`
	MinRequests    int     `json:"min_requests"`
}

// Deployment states (DeploymentState.Status).
const (
	DeploymentRunning    = "running"
	DeploymentSucceeded  = "succeeded"
	DeploymentRolledBack = "rolled_back"
)

// DeploymentsPrefix holds the state of each alias's deployment, which the
// gateway that drives it writes, and the deployer reads (wait_for_deployment,
// and the drift of a rolled-back alias).
const DeploymentsPrefix = Prefix + "deployments/"

// DeploymentLocksPrefix holds the locks that let one gateway drive each
// alias's deployment.
const DeploymentLocksPrefix = Prefix + "deployment-locks/"

// DeploymentKey is where the state of an alias's deployment lives.
func DeploymentKey(function, alias string) string { return DeploymentsPrefix + function + "/" + alias }

// DeploymentState is where an alias's deployment stands.
type DeploymentState struct {
	ID       string `json:"id"` // the alias record's DeploymentID
	Function string `json:"function"`
	Alias    string `json:"alias"`
	From     string `json:"from"`
	To       string `json:"to"`
	Status   string `json:"status"`
	// Step counts from 1 to Steps; Weight is the share of the invocations
	// that To gets at this step (0 to 1).
	Step        int       `json:"step"`
	Steps       int       `json:"steps"`
	Weight      float64   `json:"weight"`
	Started     time.Time `json:"started"`
	StepStarted time.Time `json:"step_started"`
	// Reason says why it rolled back.
	Reason string `json:"reason,omitempty"`
	// What the driving gateway last observed of To's invocations over the
	// window.
	Requests  int       `json:"requests"`
	ErrorRate float64   `json:"error_rate"` // percent
	P99Ms     float64   `json:"p99_ms"`
	Updated   time.Time `json:"updated"`
}

// Encode serialises a state.
func (d DeploymentState) Encode() []byte { return encode(d) }

// DecodeDeployment parses a state.
func DecodeDeployment(b []byte) (DeploymentState, error) {
	return decode[DeploymentState](b, "deployment state")
}

// Encode serialises an alias.
func (a AliasRecord) Encode() []byte { return encode(a) }

// DecodeAlias parses an alias.
func DecodeAlias(b []byte) (AliasRecord, error) { return decode[AliasRecord](b, "alias record") }

// VersionKey is where version n of a function lives.
func VersionKey(name string, n int) string { return VersionsPrefix(name) + strconv.Itoa(n) }

// FunctionRecord is what the gateway needs to serve a function. The
// environment is left out: it can hold secrets and the gateway has no use
// for it.
type FunctionRecord struct {
	Name               string `json:"name"`
	Namespace          string `json:"namespace,omitempty"`
	JobID              string `json:"job_id"`
	Service            string `json:"service"`
	Runtime            string `json:"runtime"`
	Handler            string `json:"handler"`
	MemoryMB           int    `json:"memory_mb"`
	CPUMHz             int    `json:"cpu_mhz"`
	Timeout            string `json:"timeout"`
	Concurrency        int    `json:"concurrency"`
	MinInstances       int    `json:"min_instances"`
	MaxInstances       int    `json:"max_instances"`
	IdleTimeout        string `json:"idle_timeout"`
	BillingGranularity string `json:"billing_granularity"`
	SourceSHA256       string `json:"source_sha256"`
	Description        string `json:"description,omitempty"`
	// ReservedConcurrency guarantees and caps the function's in-flight
	// invocations; 0 means it shares the unreserved pool.
	ReservedConcurrency int `json:"reserved_concurrency,omitempty"`
	// Network is how the instances are networked: "isolated" (own
	// namespace) or "host"; empty in records from before it existed,
	// whose jobs had host networking.
	Network string `json:"network,omitempty"`
	// Egress is the function's egress choice (model.Egress*).
	Egress string `json:"egress,omitempty"`
	// EnvSHA256 digests the environment the function's job gives
	// nimbus-host (nomadjob.EnvDigest). A gateway that read the job's
	// environment once for a warm pool instance reuses it while the digest
	// still matches, instead of reading the job on every cold start.
	EnvSHA256 string `json:"env_sha256,omitempty"`
	// Version is the published version this record snapshots ("1", "2",
	// ...), empty in the function's own record, which is $LATEST.
	Version string `json:"version,omitempty"`
}

// ExecutedVersion is the version that runs an invocation of the record,
// as X-Amz-Executed-Version reports it.
func (r FunctionRecord) ExecutedVersion() string {
	if r.Version == "" {
		return "$LATEST"
	}
	return r.Version
}

// Encode serialises a record.
func (r FunctionRecord) Encode() []byte { return encode(r) }

// DecodeFunction parses a record.
func DecodeFunction(b []byte) (FunctionRecord, error) {
	return decode[FunctionRecord](b, "function record")
}

// Route is an HTTP route to a function.
type Route struct {
	ID       string   `json:"id"`
	Function string   `json:"function"`
	Host     string   `json:"host,omitempty"`
	Path     string   `json:"path"`
	Match    string   `json:"match"`   // "prefix" or "exact"
	Methods  []string `json:"methods"` // empty: any; no omitempty, so [] and null each round-trip
	// Authorization is who may call the route: RouteAuthNone,
	// RouteAuthIAM or RouteAuthAPIKey. Empty (records from before it
	// existed) counts as RouteAuthIAM, the default.
	Authorization string `json:"authorization,omitempty"`
}

// Route authorizations, named as API Gateway names them.
const (
	// RouteAuthNone lets anyone call the route.
	RouteAuthNone = "NONE"
	// RouteAuthIAM wants a SigV4 signature (service execute-api) by an
	// access key that may invoke the route's function.
	RouteAuthIAM = "AWS_IAM"
	// RouteAuthAPIKey wants an access key's token, in x-api-key or
	// Authorization: Bearer, that may invoke the route's function.
	RouteAuthAPIKey = "API_KEY"
)

// RouteAuthorizations lists the valid authorizations.
var RouteAuthorizations = []string{RouteAuthIAM, RouteAuthAPIKey, RouteAuthNone}

// EffectiveAuthorization is the route's authorization, the default when
// unset.
func (r Route) EffectiveAuthorization() string {
	if r.Authorization == "" {
		return RouteAuthIAM
	}
	return r.Authorization
}

// RoutesPrefix holds one key per route.
const RoutesPrefix = Prefix + "routes/"

// RouteKey is where a route lives; its id is readable, the key is a hash
// of it so that any host and path fit in a KV key.
func RouteKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return RoutesPrefix + hex.EncodeToString(sum[:12])
}

// RouteID names a route by what it matches: [host]path[*] [METHODS].
func RouteID(host, path, match string, methods []string) string {
	id := host + path
	if match == "prefix" {
		id += "*"
	}
	if len(methods) > 0 {
		sorted := append([]string(nil), methods...)
		sort.Strings(sorted)
		id += " " + strings.Join(sorted, ",")
	}
	return id
}

// Overlaps reports whether two routes can match the same request.
func (r Route) Overlaps(o Route) bool {
	if r.Host != o.Host || r.Path != o.Path || r.Match != o.Match {
		return false
	}
	if len(r.Methods) == 0 || len(o.Methods) == 0 {
		return true
	}
	for _, a := range r.Methods {
		for _, b := range o.Methods {
			if strings.EqualFold(a, b) {
				return true
			}
		}
	}
	return false
}

// Encode serialises a route.
func (r Route) Encode() []byte { return encode(r) }

// DecodeRoute parses a route.
func DecodeRoute(b []byte) (Route, error) { return decode[Route](b, "route record") }

// Limits are a namespace's quotas.
type Limits struct {
	Namespace      string `json:"namespace"`
	MaxConcurrency int    `json:"max_concurrency"`
	MaxInstances   int    `json:"max_instances,omitempty"` // 0: no limit
	MaxMemoryMB    int    `json:"max_memory_mb,omitempty"` // 0: no limit
}

// LimitsPrefix holds one key per namespace.
const LimitsPrefix = Prefix + "limits/"

// DefaultMaxConcurrency applies where no limits are set, as on Lambda.
const DefaultMaxConcurrency = 1000

// MinUnreserved is how much of max_concurrency reservations must leave.
const MinUnreserved = 100

// LimitsKey is where a namespace's limits live.
func LimitsKey(namespace string) string { return LimitsPrefix + namespace }

// Encode serialises limits.
func (l Limits) Encode() []byte { return encode(l) }

// DecodeLimits parses limits.
func DecodeLimits(b []byte) (Limits, error) { return decode[Limits](b, "limits record") }

// CheckReservations explains when reservations leave too little of
// max_concurrency unreserved; "" when they fit.
func CheckReservations(maxConcurrency int, reserved map[string]int) string {
	total := 0
	names := make([]string, 0, len(reserved))
	for name, r := range reserved {
		if r > 0 {
			total += r
			names = append(names, name)
		}
	}
	if total == 0 || maxConcurrency-total >= MinUnreserved {
		return ""
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s: %d", n, reserved[n])
	}
	return fmt.Sprintf("reservations total %d (%s) of max_concurrency %d, leaving %d unreserved; at least %d must stay unreserved: lower a reservation or raise max_concurrency to %d or more",
		total, strings.Join(parts, ", "), maxConcurrency, maxConcurrency-total, MinUnreserved, total+MinUnreserved)
}

// KVTrigger invokes a function when keys under a prefix change.
type KVTrigger struct {
	Name             string   `json:"name"`
	Function         string   `json:"function"`
	Prefix           string   `json:"prefix"`
	Events           []string `json:"events"` // "put", "delete"
	BatchSize        int      `json:"batch_size"`
	StartingPosition string   `json:"starting_position"` // "latest" or "existing"
	MaxRetries       int      `json:"max_retries"`
}

// Where triggers, their progress, locks and dead letters live.
const (
	KVTriggersPrefix    = Prefix + "triggers/kv/"
	KVTriggerState      = Prefix + "trigger-state/kv/"
	KVTriggerLocks      = Prefix + "trigger-locks/kv/"
	KVTriggerDeadPrefix = Prefix + "dead-letter/kv/"
)

// KVTriggerKey is where a trigger lives.
func KVTriggerKey(name string) string { return KVTriggersPrefix + name }

// Encode serialises a trigger.
func (t KVTrigger) Encode() []byte { return encode(t) }

// DecodeKVTrigger parses a trigger.
func DecodeKVTrigger(b []byte) (KVTrigger, error) { return decode[KVTrigger](b, "trigger record") }

// KVTriggerProgressKeys is the prefix under which the gateway keeps the
// keys a trigger has seen, in shards; its progress index is at
// KVTriggerState + name.
func KVTriggerProgressKeys(name string) string { return KVTriggerState + name + "/keys/" }

// AccessKeysPrefix holds one record per access key (nimbus_access_key).
// Only the deployer writes it and only the gateway reads it: the records
// hold the secrets that SigV4 verification needs.
const AccessKeysPrefix = Prefix + "access-keys/"

// AccessKeyKey is where an access key's record lives.
func AccessKeyKey(id string) string { return AccessKeysPrefix + id }

// AccessKey is an access key and what it may do.
type AccessKey struct {
	ID string `json:"id"`
	// Secret signs requests (SigV4) and is the second half of the key's
	// bearer token. The gateway needs it in clear to verify signatures,
	// as AWS does; ACLs keep the prefix to the deployer and the gateway.
	Secret      string `json:"secret"`
	Description string `json:"description,omitempty"`
	Enabled     bool   `json:"enabled"`
	// Invoke lists the functions the key may invoke and describe: names,
	// or patterns where * matches any run of characters ("orders-*", "*").
	Invoke []string `json:"invoke"` // no omitempty, so [] and null each round-trip
	// UploadArtifacts lets the key upload and read function packages.
	UploadArtifacts bool `json:"upload_artifacts,omitempty"`
	// ReadOperations lets the key read /metrics and /v1/usage.
	ReadOperations bool `json:"read_operations,omitempty"`
}

// Encode serialises an access key.
func (k AccessKey) Encode() []byte { return encode(k) }

// DecodeAccessKey parses an access key.
func DecodeAccessKey(b []byte) (AccessKey, error) { return decode[AccessKey](b, "access key record") }

// PoolsPrefix holds one record per warm pool (nimbus_warm_pool): the
// deployer writes it, the gateway reads it to find pool instances.
const PoolsPrefix = Prefix + "pools/"

// PoolKey is where a pool's record lives.
func PoolKey(jobID string) string { return PoolsPrefix + jobID }

// PoolRecord is a warm pool as the gateway needs it.
type PoolRecord struct {
	JobID     string `json:"job_id"` // also its Consul service
	Namespace string `json:"namespace,omitempty"`
	Runtime   string `json:"runtime"`
	MemoryMB  int    `json:"memory_mb"`
	Size      int    `json:"size"`
	// Network is how its instances are networked, as a function's
	// (nomadjob.Network*).
	Network string `json:"network"`
}

// Encode serialises a pool record.
func (r PoolRecord) Encode() []byte { return encode(r) }

// DecodePool parses a pool record.
func DecodePool(b []byte) (PoolRecord, error) { return decode[PoolRecord](b, "warm pool record") }

// encode serialises a record. The records are plain structs of strings,
// numbers and slices, which always marshal.
func encode(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// decode parses a record, naming what it is in the error.
func decode[T any](b []byte, what string) (T, error) {
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("%s is not valid JSON: %w", what, err)
	}
	return v, nil
}

// AsyncConfig is how a function's asynchronous invocations are handled
// (nimbus_function_event_invoke_config), as Lambda's event invoke config.
type AsyncConfig struct {
	Function           string       `json:"function"`
	MaxRetries         int          `json:"max_retries"`
	MaxEventAgeSeconds int          `json:"max_event_age_seconds"`
	OnSuccess          *Destination `json:"on_success,omitempty"`
	OnFailure          *Destination `json:"on_failure,omitempty"`
}

// Destination receives Lambda's destination record of an asynchronous
// invocation: another function (as an Event invocation) or a NATS subject
// (published to JetStream, under DestinationSubjectPrefix).
type Destination struct {
	Function    string `json:"function,omitempty"`
	NATSSubject string `json:"nats_subject,omitempty"`
}

// Lambda's defaults and bounds for asynchronous invocations.
const (
	DefaultAsyncRetries      = 2
	MaxAsyncRetries          = 2
	DefaultMaxEventAgeSecs   = 6 * 60 * 60
	MinMaxEventAgeSecs       = 60
	DestinationSubjectPrefix = "nimbus.destinations."
)

// AsyncPrefix holds one key per function.
const AsyncPrefix = Prefix + "async/"

// AsyncKey is where a function's asynchronous invocation config lives.
func AsyncKey(function string) string { return AsyncPrefix + function }

// Encode serialises the config.
func (a AsyncConfig) Encode() []byte { return encode(a) }

// DecodeAsync parses the config.
func DecodeAsync(b []byte) (AsyncConfig, error) {
	return decode[AsyncConfig](b, "asynchronous invocation config")
}

// EventSource is a broker-backed event source (nimbus_event_source), as
// Lambda's event source mapping: the gateways consume a NATS JetStream
// stream or a RabbitMQ queue and invoke the function with batches.
type EventSource struct {
	Name     string `json:"name"`
	Function string `json:"function"`
	Enabled  bool   `json:"enabled"`
	// BatchSize bounds the records of one invocation; a batch is sent once
	// it is full or MaxBatchingWindowSeconds after its first record.
	BatchSize                int `json:"batch_size"`
	MaxBatchingWindowSeconds int `json:"maximum_batching_window_in_seconds"`
	// MaxConcurrency bounds the source's invocations in flight.
	MaxConcurrency int `json:"maximum_concurrency"`
	// MaxRetries is how often a record the function failed is retried
	// before it goes to OnFailure, or to the dead letters.
	MaxRetries int          `json:"maximum_retry_attempts"`
	OnFailure  *Destination `json:"on_failure,omitempty"`

	NATS     *NATSSource     `json:"nats,omitempty"`
	RabbitMQ *RabbitMQSource `json:"rabbitmq,omitempty"`
}

// NATSSource is a JetStream stream on the gateways' NATS, read through a
// durable consumer that every gateway shares.
type NATSSource struct {
	Stream        string `json:"stream"`
	FilterSubject string `json:"filter_subject,omitempty"`
	// StartingPosition is TRIM_HORIZON (the stream's first message),
	// LATEST (messages stored from now on) or AT_TIMESTAMP.
	StartingPosition          string `json:"starting_position"`
	StartingPositionTimestamp string `json:"starting_position_timestamp,omitempty"`
}

// RabbitMQSource is a queue, consumed by competing consumers (one per
// gateway). The credentials are in the Nomad Variable
// EventSourceVariable(Name), never here.
type RabbitMQSource struct {
	// URL is amqp:// or amqps://, with host, port and virtual host, and
	// no user info.
	URL   string `json:"url"`
	Queue string `json:"queue"`
}

// Bounds and defaults of event sources, as Lambda's where it has them.
const (
	DefaultSourceBatchSize      = 10
	MaxSourceBatchSize          = 10000
	MaxSourceBatchingWindowSecs = 300
	MinSourceConcurrency        = 2
	MaxSourceConcurrency        = 1000
	DefaultSourceConcurrency    = 2
	DefaultSourceRetries        = 2
	MaxSourceRetries            = 100
)

// Starting positions of a NATS source.
const (
	StartTrimHorizon = "TRIM_HORIZON"
	StartLatest      = "LATEST"
	StartAtTimestamp = "AT_TIMESTAMP"
)

// EventSourcesPrefix holds one key per event source.
const EventSourcesPrefix = Prefix + "event-sources/"

// EventSourceKey is where an event source's record lives.
func EventSourceKey(name string) string { return EventSourcesPrefix + name }

// EventSourceVariable is the Nomad Variable that holds a RabbitMQ source's
// credentials (items username and password); the gateway's Nomad policy
// may read exactly these paths.
func EventSourceVariable(name string) string { return "nimbus/event-sources/" + name }

// Encode serialises the record.
func (s EventSource) Encode() []byte { return encode(s) }

// DecodeEventSource parses the record.
func DecodeEventSource(b []byte) (EventSource, error) {
	return decode[EventSource](b, "event source record")
}
