# Nimbus quickstart. `make demo` applies this against the local stack that
# `make dev` starts; the provider reads NOMAD_ADDR, CONSUL_HTTP_ADDR,
# NIMBUS_GATEWAY_URL and NIMBUS_GATEWAY_TOKEN (its key for uploading code).
terraform {
  required_providers {
    nimbus = {
      source = "nimbus-faas/nimbus"
    }
  }
}

provider "nimbus" {}

variable "functions_dir" {
  description = "Directory holding the example functions (hello-go must be built into hello-go/dist)."
  type        = string
  default     = ""
}

locals {
  functions = var.functions_dir != "" ? var.functions_dir : "${path.module}/../functions"
}

data "nimbus_cluster" "local" {}

# Scaled to zero when idle: the gateway starts an instance on demand.
resource "nimbus_function" "hello_go" {
  name         = "hello-go"
  runtime      = "provided"
  source       = "${local.functions}/hello-go/dist"
  idle_timeout = "2m"
}

# One Go instance kept ready: hello-go's cold start is answered by it, specialised
# on demand, while hello-go's own instance starts. The other functions start
# through Nomad, for comparison.
resource "nimbus_warm_pool" "go" {
  runtime   = "provided"
  memory_mb = 128
  size      = 1
}

variable "release" {
  description = "hello-python's release: change it (make demo applies 2) to publish a new version, which its alias live moves to by a canary."
  type        = string
  default     = "1"
}

# Each change publishes an immutable version, hello-python:<N>, which runs as
# its own Nomad job (nimbus-fn-hello-python-v<N>) and scales from zero.
resource "nimbus_function" "hello_python" {
  name         = "hello-python"
  runtime      = "python3"
  handler      = "app.handler"
  source       = "${local.functions}/hello-python"
  idle_timeout = "2m"
  publish      = true
  environment = {
    RELEASE = var.release
  }
}

# Callers use hello-python:live. A new version gets a fifth of its calls
# for 30 s, then all of them; if it fails more than 5% of them meanwhile, the
# gateway rolls the alias back and the apply fails with the reason.
resource "nimbus_alias" "hello_python_live" {
  name                = "live"
  function            = nimbus_function.hello_python.name
  function_version    = nimbus_function.hello_python.version
  wait_for_deployment = true

  deployment {
    type             = "canary"
    percentage       = 20
    interval         = "30s"
    error_rate_above = 5
  }
}

resource "nimbus_function" "hello_node" {
  name         = "hello-node"
  runtime      = "nodejs"
  handler      = "index.handler"
  source       = "${local.functions}/hello-node"
  memory_mb    = 192
  idle_timeout = "2m"
}

# A key for the demo's callers: it may invoke the hello functions and read
# metrics and usage. Use its id and secret as AWS credentials (SigV4), or
# its bearer_token.
resource "nimbus_access_key" "demo" {
  description     = "quickstart caller"
  invoke          = ["hello-*"]
  read_operations = true
}

# An HTTP route for each function, served by the gateway, one of each
# authorization: public, with the key's token, and signed (the default).
resource "nimbus_http_route" "hello_go" {
  function      = nimbus_function.hello_go.name
  path          = "/hello/go"
  authorization = "NONE"
}

resource "nimbus_http_route" "hello_python" {
  function      = nimbus_function.hello_python.name
  path          = "/hello/python"
  authorization = "API_KEY"
}

resource "nimbus_http_route" "hello_node" {
  function = nimbus_function.hello_node.name
  path     = "/hello/node"
}

# Greets every five minutes; every run shows in the Nomad UI as a child of
# the periodic job nimbus-sched-greet.
resource "nimbus_schedule" "greet" {
  name     = "greet"
  function = nimbus_function.hello_python.name
  rate     = "5m"
  payload  = jsonencode({ name = "schedule" })
}

# Every change under demo/orders/ in Consul KV invokes the Node.js function.
resource "nimbus_kv_trigger" "orders" {
  name     = "orders"
  function = nimbus_function.hello_node.name
  prefix   = "demo/orders/"
}

output "cluster" {
  value = {
    nomad         = "${data.nimbus_cluster.local.nomad_address} (Nomad ${data.nimbus_cluster.local.nomad_version}, region ${data.nimbus_cluster.local.nomad_region})"
    consul        = "${data.nimbus_cluster.local.consul_address} (Consul ${data.nimbus_cluster.local.consul_version}, datacenter ${data.nimbus_cluster.local.consul_datacenter})"
    exec_nodes    = data.nimbus_cluster.local.exec_nodes
    ready_to_host = data.nimbus_cluster.local.exec_driver_healthy
  }
}

output "routes" {
  value = { for r in [nimbus_http_route.hello_go, nimbus_http_route.hello_python, nimbus_http_route.hello_node] : r.url => r.authorization }
}

output "hello_python_live" {
  value = "${nimbus_alias.hello_python_live.invoke_url} → version ${nimbus_alias.hello_python_live.function_version}"
}

output "demo_key_id" {
  value = nimbus_access_key.demo.id
}

output "demo_key_secret" {
  value     = nimbus_access_key.demo.secret
  sensitive = true
}

output "demo_token" {
  value     = nimbus_access_key.demo.bearer_token
  sensitive = true
}

output "functions" {
  value = {
    for f in [nimbus_function.hello_go, nimbus_function.hello_python, nimbus_function.hello_node] :
    f.name => "job ${f.job_id} v${f.job_version}, code sha256:${substr(f.source_sha256, 0, 12)}"
  }
}
