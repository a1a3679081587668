package protocol

// The environment a function job gives nimbus-host: the job rendering
// (internal/nomadjob) sets these, nimbus-host reads them, and the provider
// reads them back from the job to detect drift. nimbus-host never passes a
// variable with EnvPrefix on to the handler.
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
	EnvTaskRoot           = "NIMBUS_TASK_ROOT"
	EnvRegion             = "NIMBUS_REGION"
)

// The environment of a schedule's run (a Nomad periodic job running
// `nimbus-gateway deliver`): which function gets which event.
const (
	EnvScheduleFunction = "NIMBUS_FUNCTION"
	EnvScheduleName     = "NIMBUS_SCHEDULE"
	EnvSchedulePayload  = "NIMBUS_PAYLOAD_JSON"
	EnvGatewayURL       = "NIMBUS_GATEWAY_URL"
)
