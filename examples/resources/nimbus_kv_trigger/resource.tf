# Invoke the indexer with batches of up to 50 changes under orders/.
resource "nimbus_kv_trigger" "orders" {
  name              = "index-orders"
  function          = nimbus_function.indexer.name
  prefix            = "orders/"
  events            = ["put", "delete"]
  batch_size        = 50
  starting_position = "existing" # deliver the keys already there first
  max_retries       = 3          # then nimbus/dead-letter/kv/index-orders/
}
