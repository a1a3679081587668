# Quotas for the functions in the "default" Nomad namespace.
resource "nimbus_limits" "default" {
  namespace       = "default"
  max_concurrency = 500  # in-flight invocations, waiting ones included
  max_instances   = 50   # running instances across all functions
  max_memory_mb   = 8192 # memory of running instances
}

# A function that always gets 20 concurrent invocations, and never more.
resource "nimbus_function" "payments" {
  name                 = "payments"
  runtime              = "provided"
  source               = "${path.module}/functions/payments/dist"
  reserved_concurrency = 20
  max_instances        = 20
}
