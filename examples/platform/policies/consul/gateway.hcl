# Consul policy of the gateway. In the gateway job its token comes from the
# Nomad variable nomad/jobs/nimbus-gateway, rendered by a template:
#   consul acl policy create -name nimbus-gateway -rules @gateway.hcl
#   consul acl token create -description nimbus-gateway -policy-name nimbus-gateway \
#     -policy-name nimbus-gateway-triggers
#   nomad var put nomad/jobs/nimbus-gateway consul_token=<secret id>

# Read what the deployer declared: functions, routes, limits and KV
# triggers. Read only: a gateway cannot change the platform.
key_prefix "nimbus/functions/" {
  policy = "read"
}
key_prefix "nimbus/routes/" {
  policy = "read"
}
key_prefix "nimbus/limits/" {
  policy = "read"
}
key_prefix "nimbus/triggers/" {
  policy = "read"
}
key_prefix "nimbus/pools/" {
  policy = "read"
}

key_prefix "nimbus/async/" {
  policy = "read"
}

# The event sources it consumes.
key_prefix "nimbus/event-sources/" {
  policy = "read"
}

# Access keys (nimbus_access_key): the gateway verifies callers' SigV4
# signatures and tokens with their secrets. No other principal reads them.
key_prefix "nimbus/access-keys/" {
  policy = "read"
}

# Write only the gateway's own records: KV triggers' progress, the locks
# that let one gateway deliver each trigger, dead letters, and the state of
# the aliases' deployments.
key_prefix "nimbus/trigger-state/" {
  policy = "write"
}
key_prefix "nimbus/trigger-locks/" {
  policy = "write"
}
key_prefix "nimbus/dead-letter/" {
  policy = "write"
}

# The aliases' deployments (nimbus_alias's deployment block): the gateway
# that holds an alias's lock shifts its weights step by step and records
# where it stands, so that any gateway routes by it and resumes it.
key_prefix "nimbus/deployments/" {
  policy = "write"
}
key_prefix "nimbus/deployment-locks/" {
  policy = "write"
}

# The locks above hold Consul sessions, created on the gateway's node.
session_prefix "" {
  policy = "write"
}

# Find function instances and their health. Consul filters health results
# by node as well, hence node read.
service_prefix "nimbus-fn-" {
  policy = "read"
}
# ...and the idle instances of warm pools (nimbus_warm_pool).
service_prefix "nimbus-pool-" {
  policy = "read"
}
node_prefix "" {
  policy = "read"
}

# Each KV trigger's watched prefix is granted on its own, in a second
# policy (nimbus-gateway-triggers), one rule per prefix you declare:
#   key_prefix "orders/" { policy = "read" }
# The gateway reads nothing else of your data.
