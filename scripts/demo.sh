#!/usr/bin/env bash
# make demo: brings up the local stack, applies the quickstart with OpenTofu
# and prints what happened.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

step() { printf '\n==> %s\n' "$*"; }

step "Building the pinned Nomad, Consul and OpenTofu (cached after the first run)"
bash scripts/tools.sh

step "Starting the local stack (Consul, Nomad, and the gateway as a Nomad job)"
make --no-print-directory host
go run ./internal/harness/cmd/nimbus-dev up

step "Building the provider from this checkout"
# shellcheck source=scripts/tofu-env.sh
source scripts/tofu-env.sh
# Apply as the deployer, with its least-privilege tokens (ACLs are on).
# shellcheck source=/dev/null
source .nimbus/deployer.env

step "Building the Go example function (aws-lambda-go, as bootstrap)"
CGO_ENABLED=0 go build -o examples/functions/hello-go/dist/bootstrap ./examples/functions/hello-go

demo="$root/.nimbus/demo"
mkdir -p "$demo"
cp examples/quickstart/*.tf "$demo/"

step "Applying examples/quickstart with OpenTofu"
"$tofu" -chdir="$demo" apply -auto-approve -input=false -compact-warnings -var "functions_dir=$root/examples/functions"

step "What happened"
"$tofu" -chdir="$demo" output -json cluster | go run ./scripts/internal/printjson
"$tofu" -chdir="$demo" output -json functions | go run ./scripts/internal/printjson

# The quickstart's access key: the demo calls the gateway as its holder.
token=$("$tofu" -chdir="$demo" output -raw demo_token)
key_id=$("$tofu" -chdir="$demo" output -raw demo_key_id)
key_secret=$("$tofu" -chdir="$demo" output -raw demo_key_secret)
export NIMBUS_INVOKE_TOKEN=$token

step "Invoking each function through the gateway with the demo key: cold from zero, then warm"
go build -o .nimbus/bin/invoke ./scripts/internal/invoke
for fn in hello-go hello-python hello-node; do
  .nimbus/bin/invoke "$NIMBUS_GATEWAY_URL" "$fn" '{"name":"demo"}'
  .nimbus/bin/invoke "$NIMBUS_GATEWAY_URL" "$fn" '{"name":"again"}'
done
printf '  without a key: %s\n' "$(curl -s -X POST -d '{}' "$NIMBUS_GATEWAY_URL/v1/functions/hello-go/invoke")"

step "Calling each function's HTTP route, as its authorization wants"
for url in $("$tofu" -chdir="$demo" output -json routes | tr -d '{}' | tr ',' '\n' | cut -d'"' -f2); do
  case "$url" in
    */go) printf '  GET %-40s (NONE)    → %s\n' "$url" "$(curl -s "$url?name=route")" ;;
    */python) printf '  GET %-40s (API_KEY) → %s\n' "$url" "$(curl -s -H "x-api-key: $token" "$url?name=route")" ;;
    *) printf '  GET %-40s (AWS_IAM) → %s\n' "$url" "$(curl -s --aws-sigv4 "aws:amz:local:execute-api" --user "$key_id:$key_secret" "$url")" ;;
  esac
done

step "A canary release: hello-python's release 2 becomes version 2, and its alias live moves to it"
# The apply waits for the deployment (wait_for_deployment); meanwhile the
# demo calls hello-python:live and counts which version answered each call.
"$tofu" -chdir="$demo" apply -auto-approve -input=false -compact-warnings -var "functions_dir=$root/examples/functions" -var release=2 >"$demo/release.log" 2>&1 &
release=$!
declare -A answered=()
calls=0
while kill -0 "$release" 2>/dev/null && [ "$calls" -lt 600 ]; do
  version=$(curl -s -o /dev/null -D - -X POST -H "Authorization: Bearer $token" -d '{"name":"canary"}' \
    "$NIMBUS_GATEWAY_URL/v1/functions/hello-python:live/invoke" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-amz-executed-version"{print $2}')
  answered[${version:-none}]=$(( ${answered[${version:-none}]:-0} + 1 ))
  calls=$((calls + 1))
  sleep 0.2
done
if ! wait "$release"; then
  cat "$demo/release.log"
  exit 1
fi
for version in "${!answered[@]}"; do
  printf '  hello-python:live, version %s answered %d of %d calls during the release\n' "$version" "${answered[$version]}" "$calls"
done
printf '  %s\n' "$("$tofu" -chdir="$demo" output -raw hello_python_live)"
echo "  the deployment, as GET /v1/functions/hello-python reports it:"
curl -s -H "Authorization: Bearer $token" "$NIMBUS_GATEWAY_URL/v1/functions/hello-python" | grep -o '"alias_deployments":\[[^]]*\]' | sed 's/^/  /'

step "Writing a key under demo/orders/ in Consul KV (the trigger invokes hello-node)"
before=$(curl -s -H "Authorization: Bearer $token" "$NIMBUS_GATEWAY_URL/v1/usage" | tr '{' '\n' | grep -o '"function":"hello-node","invocations":[0-9]*' | grep -o '[0-9]*$' || echo 0)
# The deployer may not write application data; the operator's token can.
operator_consul_token=$(. .nimbus/operator.env && echo "$CONSUL_HTTP_TOKEN")
operator_nomad_token=$(. .nimbus/operator.env && echo "$NOMAD_TOKEN")
curl -s -X PUT -H "X-Consul-Token: $operator_consul_token" -d '{"item":"coffee"}' "$CONSUL_HTTP_ADDR/v1/kv/demo/orders/$(date +%s)" >/dev/null
for _ in $(seq 1 50); do
  now=$(curl -s -H "Authorization: Bearer $token" "$NIMBUS_GATEWAY_URL/v1/usage" | tr '{' '\n' | grep -o '"function":"hello-node","invocations":[0-9]*' | grep -o '[0-9]*$' || echo 0)
  [ "${now:-0}" -gt "${before:-0}" ] && break
  sleep 0.2
done
echo "  hello-node invocations: ${before:-0} → ${now:-0}"

cat <<MSG

Each function was packaged, uploaded to the gateway's artifact store,
proven healthy by a canary, and runs as a Nomad job (nimbus-fn-<name>)
under the sandboxed exec driver, each instance in its own network
namespace on the Nimbus CNI network (cni/nimbus: no way to the host's
ports, to other instances or to link-local addresses; see
nft list table inet nimbus-nimbus0). The first request of each was a cold
start: hello-go's was answered by the warm pool's instance (job
nimbus-pool-provided-128), specialised for it on demand, the others' by a
new instance the gateway asked Nomad for; the second request was warm.
hello-python publishes a version with each change (nimbus-fn-hello-python-v<N>
in the Nomad UI); its alias live moved to version 2 by a canary, which the
gateway drove and recorded as scaling events of that job.
After each function's idle_timeout the gateway scales it back to zero. See
the jobs, their scale events and their START/END/REPORT log lines in the
Nomad UI.

  Gateway:    $NIMBUS_GATEWAY_URL  (GET /v1/usage, GET /metrics)
              every caller needs a key: the demo key's token is
              tofu -chdir=.nimbus/demo output -raw demo_token
              (curl -H "Authorization: Bearer <token>" ...)

  Nomad UI:   http://127.0.0.1:4646/ui/   (ACL Tokens → Secret ID: $operator_nomad_token)
  Consul UI:  http://127.0.0.1:8500/ui/   (Log in → token: $operator_consul_token)

ACLs are on, Consul with default deny. The quickstart was applied with
the deployer's least-privilege tokens (source .nimbus/deployer.env); the
gateway job uses its workload identity and a Consul token from a Nomad
variable. The policies are in examples/platform/policies. The gateway
authenticates every caller (SigV4 or a bearer token of a nimbus_access_key);
the provider uploaded code with the operator key (NIMBUS_GATEWAY_TOKEN in
.nimbus/deployer.env), and each instance's nimbus-host fetched it through
a signed, expiring URL and checked its sha256 before running it.

Stop the stack with: make dev-down
MSG
