# Consul policy of the deployer (the Terraform provider):
#   consul acl policy create -name nimbus-deployer -rules @deployer.hcl
#   consul acl token create -description nimbus-deployer -policy-name nimbus-deployer

# Function records: what the gateway needs to serve each function, its
# published versions and its aliases.
key_prefix "nimbus/functions/" {
  policy = "write"
}

# Where the aliases' deployments stand, which the gateways write: read by
# wait_for_deployment and by a refresh (a rolled-back alias shows as
# drift), and deleted with the alias.
key_prefix "nimbus/deployments/" {
  policy = "write"
}

# HTTP routes (nimbus_http_route).
key_prefix "nimbus/routes/" {
  policy = "write"
}

# Namespace quotas (nimbus_limits).
key_prefix "nimbus/limits/" {
  policy = "write"
}

# Access keys (nimbus_access_key), with their secrets: keep this token
# as safe as the keys it can make.
key_prefix "nimbus/access-keys/" {
  policy = "write"
}

# Warm pools (nimbus_warm_pool): which pools exist, for the gateway.
key_prefix "nimbus/pools/" {
  policy = "write"
}

key_prefix "nimbus/async/" {
  policy = "write"
}

# Event sources (nimbus_event_source); their credentials are in Nomad
# Variables, never here.
key_prefix "nimbus/event-sources/" {
  policy = "write"
}

# KV trigger definitions (nimbus_kv_trigger). Their locks and dead
# letters belong to the gateway.
key_prefix "nimbus/triggers/" {
  policy = "write"
}

# A destroyed KV trigger's progress is deleted with it, so that a new
# trigger of the same name starts afresh instead of resuming.
key_prefix "nimbus/trigger-state/" {
  policy = "write"
}

# Wait for a canary (nimbus-canary-*) and a function's instances
# (nimbus-fn-*) to pass their health checks. Consul filters health results
# by node as well, hence node read.
service_prefix "nimbus-" {
  policy = "read"
}
node_prefix "" {
  policy = "read"
}

# data "nimbus_cluster" reads the agent's datacenter and version.
agent_prefix "" {
  policy = "read"
}
