# Nomad policy of the deployer: the Terraform provider, run by `terraform
# apply` or `tofu apply`. Create a token with it for your pipeline:
#   nomad acl policy apply -description "Nimbus deployer" nimbus-deployer deployer.hcl
#   nomad acl token create -name nimbus-deployer -policy nimbus-deployer
#
# Nomad grants job rights per namespace, not per job name. Give Nimbus a
# namespace of its own so that these rights cover only nimbus-* jobs; the
# local stack uses "default".
namespace "default" {
  capabilities = [
    # Register, update and purge function jobs (nimbus-fn-*), canary jobs
    # (nimbus-canary-*) and schedules' periodic jobs (nimbus-sched-*); plan
    # a function's new version (does it replace running instances?), and
    # revert a job whose blue/green deployment failed.
    "submit-job",
    # Read those jobs back (drift detection), their allocations (wait for
    # a canary to become healthy) and their deployments.
    "read-job",
    # Find a schedule's past runs (nimbus-sched-<name>/periodic-*) to purge
    # them with the schedule.
    "list-jobs",
    # Quote the last lines of a failed canary's log in the apply error.
    "read-logs",
  ]

  # Check at apply that a function's secrets exist, by path only: list
  # shows paths, never values.
  variables {
    path "nomad/jobs/nimbus-fn-*" {
      capabilities = ["list"]
    }
  }
}

# Function jobs mount nimbus-host (and, for python3 and nodejs, the
# interpreters in /usr) read-only from the clients' host volumes. Nomad
# checks the submitter's right to each volume a job mounts.
host_volume "nimbus-runtime" {
  policy = "read"
}
host_volume "nimbus-usr" {
  policy = "read"
}

# data "nimbus_cluster" counts ready nodes with a healthy exec driver.
node {
  policy = "read"
}

# data "nimbus_cluster" reads the agent's region and version, and each
# client's max_kill_timeout from its own agent (so does a function's plan).
agent {
  policy = "read"
}
