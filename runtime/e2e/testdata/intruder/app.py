"""A hostile tenant: from inside its own instance, with its own code, it
tries to read and change the platform through the Nomad and Consul APIs
on the addresses the event names (loopback only), and to raise its own
privileges. It reports the status each agent answered, what credentials
it could find, what became of each privilege attempt and every variable
its environment holds."""
import http.client
import json
import os
import socket
import stat
import tempfile
import urllib.error
import urllib.request


def call(base, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError as e:
        return "error: %s" % e


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=5)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(self.unix_path)
        self.sock = s


def task_api(path):
    """Nomad's Task API socket in the task's secrets dir, if there is one."""
    sock = os.path.join(os.environ.get("NOMAD_SECRETS_DIR", "/secrets"), "api.sock")
    if not os.path.exists(sock):
        return "absent"
    conn = UnixHTTPConnection(sock)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError as e:
        return "error: %s" % e
    finally:
        conn.close()


def attempt(fn):
    """Runs one privilege attempt: "succeeded", or the error's name."""
    try:
        fn()
        return "succeeded"
    except OSError as e:
        return errno_name(e)


def errno_name(e):
    import errno
    return errno.errorcode.get(e.errno, str(e.errno))


def privileges():
    """What a tenant gets by trying to become root in its sandbox."""
    status = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", "Uid", "Gid"):
                status[key] = value.strip()
    scratch = tempfile.mkdtemp()
    # The directory is the tenant's own and writable: a refusal below is
    # the missing privilege, not a read-only file system.
    writable = attempt(lambda: open(os.path.join(scratch, "file"), "w").close())
    return {
        "status": status,
        "writable scratch": writable,
        "setuid(0)": attempt(lambda: os.setuid(0)),
        "setgid(0)": attempt(lambda: os.setgid(0)),
        "mknod a block device": attempt(lambda: os.mknod(os.path.join(scratch, "sda"),
                                                          stat.S_IFBLK | 0o600, os.makedev(8, 0))),
        "chown to root": attempt(lambda: os.chown(os.path.join(scratch, "file"), 0, 0)),
        "uid after": os.getuid(),
    }


def handler(event, context):
    nomad, consul, victim = event["nomad"], event["consul"], event["victim"]
    job = "nimbus-fn-" + victim
    rogue_job = {"Job": {"ID": "intruder", "Name": "intruder", "Type": "batch", "Datacenters": ["*"],
                         "TaskGroups": [{"Name": "g", "Tasks": [{"Name": "t", "Driver": "exec",
                                                                 "Config": {"command": "/bin/true"}}]}]}}
    attempts = {
        "nomad: list jobs": call(nomad, "GET", "/v1/jobs"),
        "nomad: read another function's job": call(nomad, "GET", "/v1/job/" + job),
        "nomad: list allocations": call(nomad, "GET", "/v1/allocations"),
        "nomad: read another function's allocations": call(nomad, "GET", "/v1/job/%s/allocations" % job),
        "nomad: register a job": call(nomad, "PUT", "/v1/jobs", rogue_job),
        "nomad: scale another function": call(nomad, "POST", "/v1/job/%s/scale" % job,
                                              {"Count": 3, "Target": {"Group": "fn"}}),
        "nomad: stop another function": call(nomad, "DELETE", "/v1/job/" + job),
        "nomad: read variables": call(nomad, "GET", "/v1/var/nomad/jobs/" + job),
        "nomad task API: list jobs": task_api("/v1/jobs"),
        "consul: read a function record": call(consul, "GET", "/v1/kv/nimbus/functions/" + victim),
        "consul: write a route": call(consul, "PUT", "/v1/kv/nimbus/routes/intruder",
                                      {"id": "/pwned", "function": event["self"], "path": "/pwned", "match": "exact"}),
        "consul: write limits": call(consul, "PUT", "/v1/kv/nimbus/limits/default", {"max_concurrency": 1}),
        "consul: delete a function record": call(consul, "DELETE", "/v1/kv/nimbus/functions/" + victim),
        "consul: register a service": call(consul, "PUT", "/v1/agent/service/register",
                                           {"Name": job, "ID": "intruder", "Address": "127.0.0.1", "Port": 1}),
        "consul: register in the catalog": call(consul, "PUT", "/v1/catalog/register",
                                                {"Node": "intruder", "Address": "127.0.0.1",
                                                 "Service": {"Service": job, "Port": 1}}),
    }
    secrets_dir = os.environ.get("NOMAD_SECRETS_DIR", "/secrets")
    return {
        "attempts": attempts,
        "privileges": privileges(),
        "environment": sorted(os.environ),
        "credentials": {
            "NOMAD_TOKEN": "NOMAD_TOKEN" in os.environ,
            "CONSUL_HTTP_TOKEN": "CONSUL_HTTP_TOKEN" in os.environ,
            "nomad_token file": os.path.exists(os.path.join(secrets_dir, "nomad_token")),
        },
    }
