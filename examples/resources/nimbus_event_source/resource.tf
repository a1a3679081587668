# Orders published on NATS subjects orders.eu.> (stored by the stream
# ORDERS) invoke the function in batches of up to 25, gathered for at most
# 2 seconds, with at most 4 batches at once across all gateways. A record the
# function fails is retried 3 times, then goes to the dead-letter function.
resource "nimbus_event_source" "orders" {
  name     = "orders"
  function = nimbus_function.orders.name

  batch_size                         = 25
  maximum_batching_window_in_seconds = 2
  maximum_concurrency                = 4
  maximum_retry_attempts             = 3

  nats = {
    stream            = "ORDERS"
    filter_subject    = "orders.eu.>"
    starting_position = "LATEST"
  }

  on_failure = {
    function = nimbus_function.orders_dead_letters.name
  }
}

# A RabbitMQ queue, consumed by an events.RabbitMQEvent handler. The
# credentials are the items username and password of the Nomad Variable
# nimbus/event-sources/invoices, which the platform team creates:
#   nomad var put nimbus/event-sources/invoices username=nimbus password=…
resource "nimbus_event_source" "invoices" {
  name     = "invoices"
  function = nimbus_function.invoices.name

  rabbitmq = {
    url   = "amqps://rabbitmq.service.consul:5671/billing"
    queue = "invoices"
  }
}
