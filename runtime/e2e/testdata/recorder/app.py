"""Records every change record it receives in Consul KV, one key per
delivery, so tests can count deliveries. FAIL=1 makes it always fail."""
import json
import os
import time
import urllib.request
import uuid


def handler(event, context):
    if os.environ.get("FAIL") == "1":
        raise RuntimeError("this function always fails")
    time.sleep(int(os.environ.get("SLOW_MS", "0")) / 1000)
    base = os.environ["CONSUL_ADDR"]
    for r in event["Records"]:
        key = "results/%s/%s/%s" % (event["trigger"], r["key"], uuid.uuid4().hex)
        body = json.dumps({"event": r["eventName"], "new": r.get("newValue"), "old": r.get("oldValue")}).encode()
        # The function's own application token: it may write results/ only.
        headers = {"X-Consul-Token": os.environ.get("CONSUL_TOKEN", "")}
        urllib.request.urlopen(urllib.request.Request(base + "/v1/kv/" + key, data=body, method="PUT", headers=headers)).read()
    return {"delivered": len(event["Records"])}
