# Two Go instances of 256 MB waiting for a cold start: the first request to
# a provided function of up to 256 MB at 0 instances is answered by one of
# them while the function's own instance starts.
resource "nimbus_warm_pool" "go" {
  runtime   = "provided"
  memory_mb = 256
  size      = 2
}

resource "nimbus_function" "thumbnails" {
  name      = "thumbnails"
  runtime   = "provided"
  source    = "${path.module}/functions/thumbnails/dist"
  memory_mb = 192 # served from the 256 MB pool, held to 192 MB
}
