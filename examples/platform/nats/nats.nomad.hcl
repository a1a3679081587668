# A 3-node NATS cluster with JetStream, where the Nimbus gateways store
# asynchronous invocations (streams NIMBUS_EVENTS and NIMBUS_DEAD, 3
# replicas each: NIMBUS_GATEWAY_NATS_REPLICAS=3 in the gateway's variable).
# An event's 202 comes once a majority of the three servers stored it, so
# losing one server loses nothing and stops nothing.
#
# Sizing:
#   - Storage: the events stream holds at most 1 GiB by default (the
#     gateway refuses new events with 429 beyond it, never drops stored
#     ones) plus the dead letters of 14 days. Each server keeps a full
#     copy: give each host volume 2 GiB, or more if you raise the limit.
#   - Memory: JetStream keeps indexes, not messages, in memory; 256 MB per
#     server carries thousands of events per second.
#   - Placement: one server per client (distinct_hosts), on clients with the
#     "nats-data" host volume, so that a client's loss costs one replica.
#
# The servers' configuration comes from the Nomad variable
# nomad/jobs/nimbus-nats, which only this job reads: the gateway's user and
# password, the admin's, and the password the servers' cluster routes
# present to each other. Without route authorization, anyone who reaches
# port 6222 (a function on another client, say) could join the cluster as
# a route, past every user's permissions, and read or publish any event.
#   nomad var put nomad/jobs/nimbus-nats gateway_password=<secret> admin_password=<secret> route_password=<secret>
# The gateways also sign each event they store and run only events that
# verify (their shared NIMBUS_GATEWAY_SIGNING_KEY), so an event published
# by anyone else never runs. Put the cluster port on a network only the
# NATS servers reach, or add TLS (cluster { tls { ... } }) where the
# clients' network is not trusted.
job "nimbus-nats" {
  type        = "service"
  datacenters = ["*"]

  group "nats" {
    count = 3

    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    network {
      port "client" {
        static = 4222
      }
      port "cluster" {
        static = 6222
      }
    }

    volume "data" {
      type   = "host"
      source = "nats-data"
    }

    # One server at a time, each healthy before the next: JetStream keeps
    # a majority through a rolling restart.
    update {
      max_parallel     = 1
      health_check     = "checks"
      min_healthy_time = "10s"
    }

    service {
      name     = "nimbus-nats"
      port     = "client"
      provider = "consul"
      check {
        type     = "tcp"
        interval = "5s"
        timeout  = "2s"
      }
    }

    task "nats" {
      driver = "exec"

      config {
        # nats-server on the clients' "nimbus-runtime" volume beside the
        # gateway's binary: a NATS release, v2.10 or later (make tools
        # builds the pinned v2.12.1 into .tools/bin).
        command = "/opt/nimbus/bin/nats-server"
        args    = ["-c", "${NOMAD_TASK_DIR}/nats.conf"]
      }

      volume_mount {
        volume      = "data"
        destination = "/data"
      }

      template {
        destination = "local/gateway-permissions.conf"
        # The gateway's permissions, read from this directory when the job
        # is submitted: run `nomad job run nats.nomad.hcl` from here.
        data = file("gateway-permissions.conf")
      }

      template {
        destination = "local/nats.conf"
        change_mode = "restart"
        data        = <<-EOT
          server_name: {{ env "node.unique.name" }}
          listen: 0.0.0.0:4222
          jetstream {
            store_dir: /data/jetstream
            max_file_store: 2G
            max_memory_store: 64M
          }
          cluster {
            name: nimbus
            listen: 0.0.0.0:6222
            {{ with nomadVar "nomad/jobs/nimbus-nats" }}authorization {
              user: route
              password: "{{ .route_password }}"
            }
            routes: [{{ $password := .route_password }}{{ range service "nimbus-nats-cluster" }}
              nats://route:{{ $password }}@{{ .Address }}:6222{{ end }}
            ]{{ end }}
          }
          include ./gateway-permissions.conf
          authorization {
            users = [
              {{ with nomadVar "nomad/jobs/nimbus-nats" }}{ user: nimbus-gateway, password: "{{ .gateway_password }}", permissions: $NIMBUS_GATEWAY_PERMISSIONS }
              { user: admin, password: "{{ .admin_password }}" }{{ end }}
            ]
          }
        EOT
      }

      service {
        name     = "nimbus-nats-cluster"
        port     = "cluster"
        provider = "consul"
      }

      resources {
        cpu    = 500
        memory = 256
      }
    }
  }
}
