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
