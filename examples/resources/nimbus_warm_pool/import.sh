# A pool is imported by its Nomad job id, nimbus-pool-<runtime>-<memory_mb>.
terraform import nimbus_warm_pool.go nimbus-pool-provided-256
