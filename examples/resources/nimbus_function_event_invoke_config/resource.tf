resource "nimbus_function" "orders" {
  name    = "orders"
  runtime = "python3"
  handler = "app.handler"
  source  = "${path.module}/functions/orders"
}

resource "nimbus_function" "orders_failed" {
  name    = "orders-failed"
  runtime = "python3"
  handler = "failed.handler"
  source  = "${path.module}/functions/orders"
}

# Asynchronous invocations of "orders": one retry, at most 15 minutes in
# the queue; failures go to another function, successes to a NATS subject
# that a JetStream stream of yours captures.
resource "nimbus_function_event_invoke_config" "orders" {
  function                     = nimbus_function.orders.name
  maximum_retry_attempts       = 1
  maximum_event_age_in_seconds = 900

  on_failure = {
    function = nimbus_function.orders_failed.name
  }
  on_success = {
    nats_subject = "nimbus.destinations.orders.done"
  }
}
