# Nomad client configuration for Nimbus function instances. Merge it into
# each client's configuration (Linux, Nomad running as root).

# No exec task gets a capability, whatever its job asks for: function
# instances, warm pools, schedule runs, the gateway and NATS all run as
# nobody and need none. (Nomad's default gives exec tasks CHOWN,
# DAC_OVERRIDE, SETUID, MKNOD and more as ambient capabilities.) The
# directories behind the writable host volumes must then belong to nobody:
# see docs/guides/platform.md.
plugin "exec" {
  config {
    allow_caps = []
  }
}

client {
  enabled = true

  # Nomad gives a stopping task at most this long to finish (30s by
  # default), whatever its kill_timeout. A function instance being replaced
  # or scaled away finishes the invocations it runs, which may take up to
  # 15m; the gateway drains for up to 16m. data "nimbus_cluster" reports
  # the value each client runs with.
  max_kill_timeout = "17m"

  options {
    # Function jobs use the exec driver only.
    "driver.allowlist" = "exec"
    # Cloud metadata probes fail off-cloud and can stop newer clients.
    "fingerprint.denylist" = "env_aws,env_gce,env_azure,env_digitalocean"
  }

  # A slim chroot: Nomad links every listed file into each task, so keeping
  # it small keeps cold starts short. Interpreters come from /usr through
  # the nimbus-usr volume instead.
  chroot_env {
    "/etc/passwd"                                    = "/etc/passwd"
    "/etc/group"                                     = "/etc/group"
    "/etc/nsswitch.conf"                             = "/etc/nsswitch.conf"
    "/etc/hosts"                                     = "/etc/hosts"
    "/etc/resolv.conf"                               = "/etc/resolv.conf"
    "/etc/ssl/certs/ca-certificates.crt"             = "/etc/ssl/certs/ca-certificates.crt"
    # The dynamic loader, by its real path (a symlinked source arrives as a
    # dangling link).
    "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" = "/lib64/ld-linux-x86-64.so.2"
  }

  # nimbus-host (and nimbus-gateway) in bin/.
  host_volume "nimbus-runtime" {
    path      = "/opt/nimbus"
    read_only = true
  }

  # Interpreters for python3 and nodejs functions.
  host_volume "nimbus-usr" {
    path      = "/usr"
    read_only = true
  }

  # Every function instance gets its own network namespace on a Nimbus CNI
  # network: the reference plugins (bridge, host-local, loopback)
  # and nimbus-cni in cni_path, the two networks of cni/ in cni_config_dir.
  # See docs/guides/platform.md for the kernel and sysctl requirements.
  cni_path       = "/opt/cni/bin"
  cni_config_dir = "/opt/cni/config"

  meta {
    # Where functions reach the gateway's function listener from inside
    # their namespaces (the nimbus bridge's address, the port its firewall
    # lets through); nimbus-host gives it to handlers as
    # AWS_ENDPOINT_URL_LAMBDA.
    "nimbus.gateway_url" = "http://172.30.0.1:9650"
  }

  # The gateway's artifact store (only on clients that run the gateway).
  host_volume "nimbus-gateway-data" {
    path      = "/var/lib/nimbus-gateway"
    read_only = false
  }
}
