# A client that may invoke the orders functions, with a SigV4 key pair or
# a bearer token. Change keepers.rotation to rotate the key: with
# create_before_destroy the new key exists before the old one is deleted.
resource "nimbus_access_key" "orders_client" {
  description = "orders web frontend"
  invoke      = ["orders-*", nimbus_function.checkout.name]

  keepers = {
    rotation = "2025-01"
  }

  lifecycle {
    create_before_destroy = true
  }
}

# The provider's own key, to upload function code: set the provider's
# gateway_token to its bearer_token (from a separate configuration, or the
# operator key until this one exists).
resource "nimbus_access_key" "deployer" {
  description      = "terraform deployer"
  upload_artifacts = true
}

# Monitoring and billing read /metrics and /v1/usage, and invoke nothing.
resource "nimbus_access_key" "monitoring" {
  description     = "prometheus"
  read_operations = true
}

# Clients use the id and secret as AWS credentials (SigV4), or the token:
#   curl -H "Authorization: Bearer $TOKEN" $GATEWAY/v1/functions/orders-list/invoke -d '{}'
output "orders_client_token" {
  value     = nimbus_access_key.orders_client.bearer_token
  sensitive = true
}
