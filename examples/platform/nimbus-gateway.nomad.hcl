# The Nimbus gateway as a Nomad job. It runs nimbus-gateway from the
# clients' read-only "nimbus-runtime" host volume, keeps its artifact store
# on the writable "nimbus-gateway-data" host volume, and registers itself in
# Consul as "nimbus-gateway". `make dev` and `make demo` run this job.
job "nimbus-gateway" {
  type        = "service"
  datacenters = ["*"]

  meta = {
    "nimbus.managed_by" = "nimbus"
  }

  group "gateway" {
    count = 1

    network {
      port "http" {
        static = 8080
      }
    }

    volume "runtime" {
      type      = "host"
      source    = "nimbus-runtime"
      read_only = true
    }

    volume "data" {
      type   = "host"
      source = "nimbus-gateway-data"
    }

    # The gateway drains invocations in flight on SIGTERM.
    update {
      max_parallel = 1
      health_check = "checks"
      # Nomad wants the deadline to cover the task's kill_timeout.
      progress_deadline = "17m"
    }

    task "gateway" {
      driver = "exec"

      config {
        command = "/opt/nimbus/bin/nimbus-gateway"
        # The function listener serves only the invoke APIs, to instances in
        # their network namespaces: the "nimbus" CNI network's bridge
        # address and the port its firewall lets through (cni/nimbus.conflist:
        # subnet 172.30.0.0/20, gatewayPorts 9650). Clients name it to the
        # functions with the node meta nimbus.gateway_url.
        args = ["-listen", "${NOMAD_ADDR_http}", "-data-dir", "/data",
        "-function-listen", "172.30.0.1:9650"]
      }

      volume_mount {
        volume      = "runtime"
        destination = "/opt/nimbus"
        read_only   = true
      }

      volume_mount {
        volume      = "data"
        destination = "/data"
      }

      env {
        # Point these at your agents.
        NOMAD_ADDR       = "http://127.0.0.1:4646"
        CONSUL_HTTP_ADDR = "http://127.0.0.1:8500"
        # Go's heap may grow to twice what is live before it collects; the
        # soft limit keeps the gateway, whose request bodies are bounded by
        # -body-budget-mb (64), well inside its 256 MB.
        GOMEMLIMIT = "192MiB"
      }

      # The Nomad API: the task's workload identity becomes NOMAD_TOKEN. The
      # nimbus-gateway policy (policies/nomad/gateway.hcl) is attached to
      # this job, so no Nomad token exists anywhere to leak or rotate.
      identity {
        env = true
      }

      # The gateway's secrets live in the Nomad variable
      # nomad/jobs/nimbus-gateway, which only this job's identity can read.
      # Never in the job spec or Consul KV:
      #   - consul_token: its Consul token (policies/consul/gateway.hcl);
      #   - operator_key: the operator's access key, a bearer token with every
      #     right, which the provider can upload with before any
      #     nimbus_access_key exists (make one: nimbus-gateway keygen);
      #   - signing_key: signs the artifact URLs in function jobs; every
      #     gateway must share it (openssl rand -hex 32);
      #   - nats_url, nats_user, nats_password: the NATS servers with
      #     JetStream where asynchronous invocations are stored, and the
      #     gateway's user (nats/gateway-permissions.conf). Without them
      #     the gateway holds Event invocations in memory and a restart
      #     loses them.
      #   nomad var put nomad/jobs/nimbus-gateway consul_token=<secret id> \
      #     operator_key=<token> signing_key=<64 hex characters> \
      #     nats_url=nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222 \
      #     nats_user=nimbus-gateway nats_password=<secret>
      template {
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/nimbus-gateway" }}CONSUL_HTTP_TOKEN={{ .consul_token }}
          NIMBUS_GATEWAY_OPERATOR_KEY={{ .operator_key }}
          NIMBUS_GATEWAY_SIGNING_KEY={{ .signing_key }}
          {{ if .nats_url }}NIMBUS_GATEWAY_NATS_URL={{ .nats_url }}
          NIMBUS_GATEWAY_NATS_USER={{ .nats_user }}
          NIMBUS_GATEWAY_NATS_PASSWORD={{ .nats_password }}{{ end }}{{ end }}
        EOT
        destination = "secrets/gateway.env"
        env         = true
        # A rotated secret restarts the gateway, which drains first.
        change_mode = "restart"
      }

      resources {
        cpu    = 500
        memory = 256
      }

      # On SIGTERM the gateway lets invocations in flight finish for up to
      # -drain-timeout (16m: the longest function timeout, 15m, and a
      # margin), then exits. Nomad caps kill_timeout at the client's
      # max_kill_timeout, 30s unless raised: set it to 17m on the clients
      # (nomad-client.hcl), or a restart cuts long invocations short.
      kill_timeout = "16m30s"

      service {
        name     = "nimbus-gateway"
        port     = "http"
        provider = "consul"
        tags     = ["nimbus"]

        check {
          type     = "http"
          path     = "/healthz"
          interval = "2s"
          timeout  = "1s"
        }
      }
    }
  }
}
