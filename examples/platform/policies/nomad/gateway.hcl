# Nomad policy of the gateway. In the gateway job it is attached to the
# job's workload identity (Nomad 1.6 and later), so no token exists to leak:
#   nomad acl policy apply -namespace default -job nimbus-gateway \
#     -description "Nimbus gateway" nimbus-gateway gateway.hcl
# A gateway run outside Nomad gets a token with this policy instead.
#
# Nomad grants these per namespace (see deployer.hcl): a dedicated
# namespace keeps the gateway away from other teams' jobs.
namespace "default" {
  capabilities = [
    # Read a function's job and allocations: each new instance is checked
    # against the allocation Nomad placed before it gets traffic.
    "read-job",
    # Scale function jobs from zero and back down when idle.
    "scale-job",
    "read-job-scaling",
    # Read the key each instance's host makes at start (local/
    # nimbus-instance-key), which every invocation must carry: only the
    # gateway may invoke an instance. Nomad never serves a task's secrets/
    # directory through this API.
    "read-fs",
    # Stop a warm pool's instance once its function no longer needs it
    # (nimbus_warm_pool): Nomad replaces it with a fresh allocation, so an
    # instance never serves a second function. Nomad grants this per
    # namespace, so it reaches every allocation of the namespace; a
    # dedicated namespace for Nimbus keeps it to Nimbus's.
    "alloc-lifecycle",
  ]
  # Read the credentials of RabbitMQ event sources (nimbus_event_source),
  # one Variable per source, and no other Variable.
  variables {
    path "nimbus/event-sources/*" {
      capabilities = ["read"]
    }
  }
}
# Not granted: submit-job (the gateway never registers or changes a job),
# other variables (it never reads a function's secrets), node and agent
# rights.
