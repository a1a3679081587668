import os
import sys
import time


def handler(event, context):
    action = event.get("action")
    if action == "echo":
        return {"echo": event.get("value"), "request_id": context.aws_request_id,
                "function_name": context.function_name, "memory": context.memory_limit_in_mb,
                "remaining_ok": 0 < context.get_remaining_time_in_millis() <= 60000}
    if action == "error":
        raise ValueError("bad value: " + str(event.get("value")))
    if action == "sleep":
        time.sleep(event["n"] / 1000)
        return {"slept_ms": event["n"]}
    if action == "exit":
        sys.stdout.flush()
        os._exit(event["n"])
    if action == "big":
        return {"data": "x" * event["n"]}
    if action == "print":
        print("hello from python")
        return {"printed": True}
    return {"unknown": action}
