# Import a function's asynchronous invocation config by the function's name.
terraform import nimbus_function_event_invoke_config.orders orders
