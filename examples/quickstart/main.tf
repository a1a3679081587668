# Nimbus quickstart. `make demo` applies this against the local stack that
# `make dev` starts; the provider reads NOMAD_ADDR and CONSUL_HTTP_ADDR.
terraform {
  required_providers {
    nimbus = {
      source = "nimbus-faas/nimbus"
    }
  }
}

provider "nimbus" {}

data "nimbus_cluster" "local" {}

output "cluster" {
  value = {
    nomad         = "${data.nimbus_cluster.local.nomad_address} (Nomad ${data.nimbus_cluster.local.nomad_version}, region ${data.nimbus_cluster.local.nomad_region})"
    consul        = "${data.nimbus_cluster.local.consul_address} (Consul ${data.nimbus_cluster.local.consul_version}, datacenter ${data.nimbus_cluster.local.consul_datacenter})"
    exec_nodes    = data.nimbus_cluster.local.exec_nodes
    ready_to_host = data.nimbus_cluster.local.exec_driver_healthy
  }
}
