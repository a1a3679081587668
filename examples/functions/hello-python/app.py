"""A Lambda-style Python handler; Nimbus runs it with runtime = "python3"."""


def handler(event, context):
    event = event or {}
    # A direct invocation ({"name": ...}) or an HTTP route's event (?name=...).
    name = event.get("name") or (event.get("queryStringParameters") or {}).get("name") or "world"
    print(f"greeting {name}")
    return {
        "message": f"Hello, {name} from Python on Nimbus!",
        # Which published version answered ($LATEST when invoked unqualified).
        "version": context.function_version,
        "request_id": context.aws_request_id,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }
