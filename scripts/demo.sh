#!/usr/bin/env bash
# make demo: brings up the local stack, applies the quickstart with OpenTofu
# and prints what happened.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

step() { printf '\n==> %s\n' "$*"; }

step "Building the pinned Nomad, Consul and OpenTofu (cached after the first run)"
bash scripts/tools.sh

step "Starting the local stack (Consul and Nomad)"
CGO_ENABLED=0 go build -o .nimbus/runtime/bin/nimbus-host ./runtime/cmd/nimbus-host
go run ./internal/cmd/nimbus-dev up

step "Building the provider from this checkout"
# shellcheck source=scripts/tofu-env.sh
source scripts/tofu-env.sh
export NOMAD_ADDR=http://127.0.0.1:4646 CONSUL_HTTP_ADDR=http://127.0.0.1:8500

demo="$root/.nimbus/demo"
mkdir -p "$demo"
cp examples/quickstart/*.tf "$demo/"

step "Applying examples/quickstart with OpenTofu"
"$tofu" -chdir="$demo" apply -auto-approve -input=false -compact-warnings

step "What happened"
"$tofu" -chdir="$demo" output -json cluster | go run ./scripts/internal/printjson
cat <<MSG

The provider reached Nomad and Consul and found a node that can run
sandboxed function instances with the exec driver.

  Nomad UI:   http://127.0.0.1:4646/ui/
  Consul UI:  http://127.0.0.1:8500/ui/

Stop the stack with: make dev-down
MSG
