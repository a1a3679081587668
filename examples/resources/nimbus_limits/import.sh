# Import a namespace's limits by the namespace.
terraform import nimbus_limits.default default
