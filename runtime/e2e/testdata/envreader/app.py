"""Returns the environment variables the event names, as the handler sees
them, and whether it can read another function's rendered secrets."""
import os


def handler(event, context):
    return {name: os.environ.get(name) for name in event["names"]}
