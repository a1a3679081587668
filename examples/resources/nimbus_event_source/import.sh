# Import an event source by its name.
terraform import nimbus_event_source.orders orders
