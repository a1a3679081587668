resource "nimbus_function" "checkout" {
  name    = "checkout"
  runtime = "provided"
  source  = "${path.module}/functions/checkout/dist"
  publish = true # each change publishes version N+1
}

# Callers invoke checkout:live. It names version 3, and sends a tenth of
# the invocations to version 4 while 4 proves itself.
resource "nimbus_alias" "live" {
  name             = "live"
  function         = nimbus_function.checkout.name
  function_version = "3"
  description      = "what the storefront calls"

  routing_config {
    additional_version_weights = {
      "4" = 0.1
    }
  }
}

# An alias that follows the latest published version.
resource "nimbus_alias" "latest" {
  name             = "latest"
  function         = nimbus_function.checkout.name
  function_version = nimbus_function.checkout.version
}
