import platform


def handler(event, context):
    return {"hello": event.get("name", "world"), "python": platform.python_version(), "request_id": context.aws_request_id}
