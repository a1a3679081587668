# Import a function by its name (its Nomad job is nimbus-fn-<name>).
terraform import nimbus_function.hello hello-go
