def handler(event, context):
    return {"greeting": "hello " + event.get("name", "world"), "function": context.function_name}
