# Import an alias by <function>/<name>.
terraform import nimbus_alias.live checkout/live
