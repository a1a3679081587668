# A Python function, kept warm with one instance.
resource "nimbus_function" "resize" {
  name        = "resize-images"
  description = "Resizes uploaded images"
  runtime     = "python3"
  handler     = "app.handler"
  source      = "${path.module}/functions/resize" # a directory or a .zip

  memory_mb     = 512
  timeout       = "30s"
  min_instances = 1
  max_instances = 20
  idle_timeout  = "10m"

  environment = {
    BUCKET = "images"
  }

  # Values stay in the function's own Nomad variable, put there first with
  #   nomad var put nomad/jobs/nimbus-fn-resize-images s3_secret_key=...
  secrets = {
    S3_SECRET_KEY = { path = "nomad/jobs/nimbus-fn-resize-images", key = "s3_secret_key" }
  }
}

# A Go function built with aws-lambda-go (an executable named bootstrap),
# scaled to zero when idle.
resource "nimbus_function" "hello" {
  name    = "hello-go"
  runtime = "provided"
  source  = "${path.module}/functions/hello-go/dist"
}

# A function that handles data it must not send anywhere: its instances
# open no connection at all (they only answer the gateway).
resource "nimbus_function" "scorer" {
  name    = "score-applications"
  runtime = "python3"
  handler = "score.handler"
  source  = "${path.module}/functions/scorer"
  egress  = "none"
}

# A function that publishes an immutable version with each change: callers
# of checkout:<N> keep the code they tested, while $LATEST moves on.
resource "nimbus_function" "checkout" {
  name    = "checkout"
  runtime = "provided"
  source  = "${path.module}/functions/checkout/dist"
  publish = true
}
