# Import a KV trigger by its name.
terraform import nimbus_kv_trigger.orders index-orders
