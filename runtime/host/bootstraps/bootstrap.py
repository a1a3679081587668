"""Nimbus python3 bootstrap: runs a Lambda-style handler (module.function)
against the AWS Lambda Runtime API that nimbus-host serves. Standard library
only."""

import importlib
import json
import os
import sys
import time
import traceback
import urllib.request

API = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime"


def post(path, body, headers=None):
    data = json.dumps(body).encode() if not isinstance(body, bytes) else body
    req = urllib.request.Request(API + path, data=data, method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req) as resp:
        resp.read()


def error_body(exc):
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }


class Context:
    """The context object Lambda passes to Python handlers."""

    def __init__(self, request_id, deadline_ms, arn, client_context, identity):
        self.aws_request_id = request_id
        self.invoked_function_arn = arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.client_context = json.loads(client_context) if client_context else None
        self.identity = json.loads(identity) if identity else None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        return max(int(self._deadline_ms - time.time() * 1000), 0)


def load_handler():
    spec = os.environ.get("_HANDLER", "")
    module_name, _, func_name = spec.rpartition(".")
    if not module_name or not func_name:
        raise ValueError(f"handler {spec!r} is not module.function")
    sys.path.insert(0, os.environ.get("LAMBDA_TASK_ROOT", "."))
    module = importlib.import_module(module_name.replace("/", "."))
    handler = getattr(module, func_name, None)
    if not callable(handler):
        raise AttributeError(f"module {module_name!r} has no function {func_name!r}")
    return handler


def main():
    try:
        handler = load_handler()
    except Exception as exc:  # report any init failure to the host, as Lambda does
        body = error_body(exc)
        body["errorType"] = "Runtime.ImportModuleError: " + body["errorType"]
        post("/init/error", body)
        sys.exit(1)

    while True:
        with urllib.request.urlopen(API + "/invocation/next") as resp:
            event = json.loads(resp.read() or b"null")
            h = resp.headers
            request_id = h["Lambda-Runtime-Aws-Request-Id"]
            ctx = Context(request_id, int(h["Lambda-Runtime-Deadline-Ms"]),
                          h.get("Lambda-Runtime-Invoked-Function-Arn"),
                          h.get("Lambda-Runtime-Client-Context"), h.get("Lambda-Runtime-Cognito-Identity"))
            os.environ["_X_AMZN_TRACE_ID"] = h.get("Lambda-Runtime-Trace-Id", "")
        try:
            result = handler(event, ctx)
        except Exception as exc:
            post(f"/invocation/{request_id}/error", error_body(exc))
            continue
        try:
            payload = json.dumps(result).encode()
        except (TypeError, ValueError) as exc:
            post(f"/invocation/{request_id}/error",
                 {"errorMessage": f"Unable to marshal response: {exc}", "errorType": "Runtime.MarshalError"})
            continue
        post(f"/invocation/{request_id}/response", payload)


if __name__ == "__main__":
    main()
