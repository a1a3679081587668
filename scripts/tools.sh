#!/usr/bin/env bash
# Builds the pinned Nomad, Consul and OpenTofu from their Go modules into
# .tools/bin. Each build is stamped with the inputs that determine it (the
# wrapper module, Go version and flags); a binary whose stamp matches is
# reused, so a second run takes seconds.
#
# NIMBUS_NOMAD_BIN, NIMBUS_CONSUL_BIN and NIMBUS_TOFU_BIN name existing
# binaries to use instead; those components are then not built.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.tools/bin"
state="$root/.tools/state"
mkdir -p "$bin" "$state"

# name | package | go build flags | override variable
tools=(
  "nomad|github.com/hashicorp/nomad|-tags=ui|NIMBUS_NOMAD_BIN"
  "consul|github.com/hashicorp/consul||NIMBUS_CONSUL_BIN"
  "tofu|github.com/opentofu/opentofu/cmd/tofu|-ldflags=-X=github.com/opentofu/opentofu/version.dev=no|NIMBUS_TOFU_BIN"
)

stamp_of() {
  local name=$1 flags=$2
  { cat "$root/tools/$name/go.mod" "$root/tools/$name/go.sum"; go version; echo "$flags"; } | sha256sum | cut -d' ' -f1
}

build() {
  local name=$1 pkg=$2 flags=$3
  local log="$state/$name.log" start=$SECONDS
  # shellcheck disable=SC2086 # flags is a single word or empty
  if (cd "$root/tools/$name" && go build -trimpath $flags -o "$bin/$name.new" "$pkg") >"$log" 2>&1; then
    mv "$bin/$name.new" "$bin/$name"
    stamp_of "$name" "$flags" >"$state/$name.stamp"
    echo "tools: built $name in $((SECONDS - start))s"
  else
    echo "tools: building $name failed; its log:" >&2
    cat "$log" >&2
    return 1
  fi
}

pids=()
for t in "${tools[@]}"; do
  IFS='|' read -r name pkg flags override <<<"$t"
  if [ -n "${!override:-}" ]; then
    echo "tools: $name from $override=${!override}"
    continue
  fi
  if [ -x "$bin/$name" ] && [ "$(cat "$state/$name.stamp" 2>/dev/null)" = "$(stamp_of "$name" "$flags")" ]; then
    echo "tools: $name is up to date"
    continue
  fi
  echo "tools: building $name from $pkg (takes minutes on a new machine)"
  build "$name" "$pkg" "$flags" &
  pids+=($!)
done

# Show that long builds are progressing.
if [ ${#pids[@]} -gt 0 ]; then
  (
    start=$SECONDS
    while sleep 30; do echo "tools: still building... $((SECONDS - start))s"; done
  ) &
  ticker=$!
  trap 'kill $ticker 2>/dev/null' EXIT
fi

status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=1
done
exit $status
