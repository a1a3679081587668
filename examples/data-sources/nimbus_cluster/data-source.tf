# Check connectivity before deploying functions.
data "nimbus_cluster" "this" {}

output "cluster" {
  value = data.nimbus_cluster.this
}

# Fail the plan early when no Nomad node can run function instances.
check "exec_driver" {
  assert {
    condition     = data.nimbus_cluster.this.exec_driver_healthy
    error_message = "No Nomad node has a healthy exec driver: Nimbus needs Linux clients running as root."
  }
}
