# GET and POST under /orders (and below it) reach the orders function as
# API Gateway v2 events.
resource "nimbus_http_route" "orders" {
  function = nimbus_function.orders.name
  path     = "/orders"
  methods  = ["GET", "POST"]
}

# Only this exact path, on one host.
resource "nimbus_http_route" "health" {
  function = nimbus_function.orders.name
  host     = "api.example.com"
  path     = "/status"
  match    = "exact"
}

# A route to an alias: it follows the alias from version to version, and
# takes part in its canary releases.
resource "nimbus_http_route" "checkout" {
  function = "${nimbus_alias.live.function}:${nimbus_alias.live.name}"
  path     = "/checkout"
  methods  = ["POST"]
}
