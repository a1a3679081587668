#!/usr/bin/env bash
# Builds the pinned Nomad, Consul and OpenTofu from their Go modules into
# .tools/bin, and the CNI reference plugins into .tools/cni (the clients'
# cni_path). Each build is stamped with the inputs that determine it (the
# wrapper module, Go version and flags); a binary whose stamp matches is
# reused, so a second run takes well under a second.
#
# Usage: scripts/tools.sh [nomad] [consul] [tofu] [cni] [nats-server]   (default: all)
#
# NIMBUS_NOMAD_BIN, NIMBUS_CONSUL_BIN, NIMBUS_TOFU_BIN and
# NIMBUS_NATS_SERVER_BIN name existing
# binaries to use instead; those components are then not built.
#
# Where the time goes on a new machine: downloading the three module graphs
# (about 1.5 GB of sources) and compiling them. Downloads are network-bound,
# so they run in parallel; compiles are CPU-bound, so they run one after
# another, each using every core, and report their own time. Binaries are
# linked without DWARF and symbol tables (-s -w): nobody debugs the pinned
# agents, and the linker does noticeably less work.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.tools/bin"
state="$root/.tools/state"
mkdir -p "$bin" "$state"
export PATH="$(go env GOROOT)/bin:$PATH"

# name | package(s) | extra -ldflags | build tags | override variable
# A tool of several packages builds into its own directory, .tools/<name>.
cni=github.com/containernetworking/plugins/plugins
tools=(
  "nomad|github.com/hashicorp/nomad||ui|NIMBUS_NOMAD_BIN"
  "consul|github.com/hashicorp/consul|||NIMBUS_CONSUL_BIN"
  "tofu|github.com/opentofu/opentofu/cmd/tofu|-X=github.com/opentofu/opentofu/version.dev=no||NIMBUS_TOFU_BIN"
  "cni|$cni/main/bridge $cni/ipam/host-local $cni/main/loopback|||NIMBUS_CNI_PATH"
  "nats-server|github.com/nats-io/nats-server/v2|||NIMBUS_NATS_SERVER_BIN"
)

# out_of prints where a tool's build goes: a binary, or a directory of them.
out_of() {
  local name=$1 pkg=$2
  if [ "$pkg" = "${pkg%% *}" ]; then echo "$bin/$name"; else echo "$root/.tools/$name"; fi
}

wanted=("$@")
is_wanted() {
  [ ${#wanted[@]} -eq 0 ] && return 0
  local w
  for w in "${wanted[@]}"; do [ "$w" = "$1" ] && return 0; done
  return 1
}

ldflags_of() { echo "-s -w $1"; }

stamp_of() {
  local name=$1 ldflags=$2 tags=$3
  { cat "$root/tools/$name/go.mod" "$root/tools/$name/go.sum"; go version; echo "$ldflags|$tags"; } | sha256sum | cut -d' ' -f1
}

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }'; }

todo=()
for t in "${tools[@]}"; do
  IFS='|' read -r name pkg ldflags tags override <<<"$t"
  is_wanted "$name" || continue
  if [ -n "${!override:-}" ]; then
    echo "tools: $name from $override=${!override}"
    continue
  fi
  if [ -e "$(out_of "$name" "$pkg")" ] && [ "$(cat "$state/$name.stamp" 2>/dev/null)" = "$(stamp_of "$name" "$(ldflags_of "$ldflags")" "$tags")" ]; then
    echo "tools: $name is up to date"
    continue
  fi
  todo+=("$t")
done
[ ${#todo[@]} -eq 0 ] && exit 0

echo "tools: building ${#todo[@]} pinned tool(s) from their Go modules; on a new machine this takes several minutes"
ticker=
if [ ${#todo[@]} -gt 0 ]; then
  (
    start=$SECONDS
    while sleep 30; do echo "tools: still working... $((SECONDS - start))s"; done
  ) &
  ticker=$!
  trap 'kill $ticker 2>/dev/null' EXIT
fi

# Phase 1: download every module graph at once.
total=$(now)
pids=()
for t in "${todo[@]}"; do
  IFS='|' read -r name _ <<<"$t"
  (
    start=$(now)
    if (cd "$root/tools/$name" && go mod download) >"$state/$name.download.log" 2>&1; then
      echo "tools: downloaded $name's modules in $(since "$start")s"
    else
      echo "tools: downloading $name's modules failed; its log:" >&2
      cat "$state/$name.download.log" >&2
      exit 1
    fi
  ) &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
[ $status -eq 0 ] || exit 1

# Phase 2: compile and link, one tool at a time.
for t in "${todo[@]}"; do
  IFS='|' read -r name pkg ldflags tags _ <<<"$t"
  start=$(now)
  flags=(-trimpath "-ldflags=$(ldflags_of "$ldflags")")
  [ -n "$tags" ] && flags+=("-tags=$tags")
  out=$(out_of "$name" "$pkg")
  rm -rf "$out.new"
  [ "$out" = "$bin/$name" ] || mkdir -p "$out.new"
  # shellcheck disable=SC2086 # $pkg lists the packages of a multi-binary tool
  if (cd "$root/tools/$name" && go build "${flags[@]}" -o "$out.new$([ -d "$out.new" ] && echo /)" $pkg) >"$state/$name.log" 2>&1; then
    rm -rf "$out" && mv "$out.new" "$out"
    stamp_of "$name" "$(ldflags_of "$ldflags")" "$tags" >"$state/$name.stamp"
    echo "tools: compiled and linked $name in $(since "$start")s"
  else
    echo "tools: building $name failed; its log:" >&2
    cat "$state/$name.log" >&2
    exit 1
  fi
done
echo "tools: done in $(since "$total")s"
