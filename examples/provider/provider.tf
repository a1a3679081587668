terraform {
  required_providers {
    nimbus = {
      source = "nimbus-faas/nimbus"
    }
  }
}

# Every setting is optional and falls back to the environment variables the
# Nomad and Consul CLIs read (NOMAD_ADDR, NOMAD_TOKEN, CONSUL_HTTP_ADDR, ...).
provider "nimbus" {
  gateway_url = "http://127.0.0.1:8080" # or NIMBUS_GATEWAY_URL

  nomad {
    address   = "https://nomad.service.consul:4646"
    region    = "global"
    namespace = "functions"
    ca_file   = "/etc/nomad.d/tls/ca.pem"
  }

  consul {
    address    = "https://consul.service.consul:8501"
    datacenter = "dc1"
    ca_file    = "/etc/consul.d/tls/ca.pem"
  }
}
