"""A hostile tenant probing the network from inside its own instance, with
its own code. For each target the event names (loopback, the client's
bridge address, or addresses inside network namespaces the test created)
it opens one TCP connection with a short timeout, and for HTTP targets
sends one request. It reports what happened: the status, "refused",
"timeout" or the error. Nothing is retried; every probe ends by itself."""
import json
import os
import socket
import urllib.error
import urllib.request


def connect(host, port, timeout):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
        return "connected"
    except ConnectionRefusedError:
        return "refused"
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return "error: %s" % e
    finally:
        s.close()


def http_call(url, method, body, timeout, headers):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return {"status": resp.status, "body": resp.read(2048).decode(errors="replace")}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "body": e.read(2048).decode(errors="replace")}
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, ConnectionRefusedError):
            return {"status": "refused"}
        if isinstance(reason, socket.timeout):
            return {"status": "timeout"}
        return {"status": "error: %s" % reason}
    except socket.timeout:
        return {"status": "timeout"}
    except OSError as e:
        return {"status": "error: %s" % e}


def handler(event, context):
    timeout = float(event.get("timeout", 2))
    results = {}
    for t in event.get("connect", []):
        results[t["name"]] = connect(t["host"], int(t["port"]), timeout)
    for t in event.get("http", []):
        results[t["name"]] = http_call(t["url"], t.get("method", "GET"), t.get("body"), timeout, t.get("headers", {}))
    return {"results": results, "lambda_endpoint": os.environ.get("AWS_ENDPOINT_URL_LAMBDA", "")}
