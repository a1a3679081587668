"""Nimbus python3 bootstrap: runs a Lambda-style handler (module.function)
against the AWS Lambda Runtime API that nimbus-host serves. Standard library
only."""

import importlib
import json
import os
import socket
import sys
import time
import traceback

API_HOST, _, API_PORT = os.environ["AWS_LAMBDA_RUNTIME_API"].rpartition(":")
API_PATH = "/2018-06-01/runtime"


class RuntimeAPIError(OSError):
    """The Runtime API refused a request."""


def call(method, path, body=b""):
    """One request to the Runtime API that nimbus-host serves on loopback.

    HTTP/1.0 over a socket of its own: the host then sends no chunked
    encoding and ends the body by closing the connection. urllib.request
    would cost every cold start about 25 ms of imports (http.client,
    email, ssl) before the handler's own.
    """
    head = (f"{method} {API_PATH}{path} HTTP/1.0\r\nHost: {API_HOST}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    with socket.create_connection((API_HOST, int(API_PORT))) as sock:
        sock.sendall(head.encode("latin-1") + body)
        with sock.makefile("rb") as resp:
            status = resp.readline().split(None, 2)
            if len(status) < 2:
                raise RuntimeAPIError(f"{method} {path}: the Runtime API closed the connection without an answer")
            headers = {}
            for line in iter(resp.readline, b""):
                if line in (b"\r\n", b"\n"):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            payload = resp.read()
    if int(status[1]) >= 400:
        raise RuntimeAPIError(f"{method} {path}: {status[1].decode()} {payload.decode(errors='replace')}")
    return headers, payload


def post(path, body):
    call("POST", path, json.dumps(body).encode() if not isinstance(body, bytes) else body)


def report(path, body):
    """Report an invocation's outcome. A refusal does not end the runtime:
    the host has settled the invocation itself (a response over 6 MB is a
    Function.ResponseSizeTooLarge error), and the next one may come."""
    try:
        post(path, body)
    except (RuntimeAPIError, ConnectionError) as exc:
        print(f"nimbus bootstrap: the Runtime API did not take {path}: {exc}", file=sys.stderr)


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
        h, raw = call("GET", "/invocation/next")
        event = json.loads(raw or b"null")
        request_id = h["lambda-runtime-aws-request-id"]
        ctx = Context(request_id, int(h["lambda-runtime-deadline-ms"]),
                      h.get("lambda-runtime-invoked-function-arn"),
                      h.get("lambda-runtime-client-context"), h.get("lambda-runtime-cognito-identity"))
        os.environ["_X_AMZN_TRACE_ID"] = h.get("lambda-runtime-trace-id", "")
        try:
            result = handler(event, ctx)
        except Exception as exc:
            report(f"/invocation/{request_id}/error", error_body(exc))
            continue
        try:
            payload = json.dumps(result).encode()
        except (TypeError, ValueError) as exc:
            report(f"/invocation/{request_id}/error",
                   {"errorMessage": f"Unable to marshal response: {exc}", "errorType": "Runtime.MarshalError"})
            continue
        report(f"/invocation/{request_id}/response", payload)


if __name__ == "__main__":
    main()
