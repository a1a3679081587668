# Import an access key by its id. Its secret and bearer_token are never read
# back from Consul: they stay null until the key is rotated (change keepers).
terraform import nimbus_access_key.orders_client NIMBABCDEFGHIJKLMNOP
