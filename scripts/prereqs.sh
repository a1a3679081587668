#!/usr/bin/env bash
# scripts/prereqs.sh demo|test: checks the system packages `make demo` or
# `make test` needs, and installs the missing ones where it safely can.
#
#   - Nothing missing: prints nothing and exits 0.
#   - Missing, on Debian or Ubuntu, as root: prints each package it installs
#     and why, runs apt-get update and apt-get install, and says when done.
#   - Missing, and not root, or not Debian/Ubuntu, or NIMBUS_NO_INSTALL=1:
#     changes nothing, prints what is missing, why, and the command to run,
#     and exits 3, so make stops before doing anything else.
#
# It checks absolute paths, never PATH: Nomad runs functions with the
# interpreters in /usr, and a PATH may put other ones (pyenv shims) first.
# apt-get is run as /usr/bin/apt-get for the same reason.
#
# Environment:
#   NIMBUS_NO_INSTALL=1         never install; report and exit 3 instead.
#   NIMBUS_RABBITMQ_SERVER_BIN  the tests use this rabbitmq-server instead of
#                               Debian's, so `test` does not ask for the package.
#   NIMBUS_PREREQS_ROOT         a directory prefixed to every absolute path the
#                               script reads or runs (the checked binaries,
#                               /etc/os-release, /usr/bin/apt-get); default
#                               empty, i.e. the real system. For its tests only.
set -euo pipefail

usage() {
  echo "usage: $0 demo|test" >&2
  exit 2
}
[ $# -eq 1 ] || usage
case "$1" in
  demo | test) cmd=$1 ;;
  *) usage ;;
esac

root=${NIMBUS_PREREQS_ROOT:-}

# The list: package, the paths any one of which satisfies it (separated by
# spaces), the commands that need it, and why.
packages=()
add() { packages+=("$1|$2|$3|$4"); }
# The python3 and nodejs runtimes' tests run real interpreters, and under
# Nomad functions use the system ones in /usr (mounted read-only).
add python3 "/usr/bin/python3" "demo test" \
  "python3 functions run the system interpreter (function instances mount the host's /usr)"
add nodejs "/usr/bin/node" "demo test" \
  "nodejs functions run the system interpreter (function instances mount the host's /usr)"
# Function instances get their own network namespaces: the Nimbus CNI
# networks install their firewall and port mappings with nft, and the tests
# build their own namespaces with ip.
add nftables "/usr/sbin/nft" "demo test" \
  "function instances' networks install their firewall and port mappings as nftables rules"
add iproute2 "/usr/sbin/ip /sbin/ip" "demo test" \
  "function instances get network namespaces of their own, and the tests build theirs with ip"
# Event sources' tests consume real RabbitMQ queues: testenv starts
# Debian's broker on loopback ports of its own (its service is not used).
if [ -z "${NIMBUS_RABBITMQ_SERVER_BIN:-}" ]; then
  add rabbitmq-server "/usr/lib/rabbitmq/bin/rabbitmq-server" "test" \
    "the event sources' tests consume real RabbitMQ queues on a broker they start themselves (NIMBUS_RABBITMQ_SERVER_BIN names another)"
fi

# present PATHS: whether any of the space-separated paths is an executable
# file.
present() {
  local f
  for f in $1; do
    if [ -x "$root$f" ] && [ ! -d "$root$f" ]; then
      return 0
    fi
  done
  return 1
}

missing=() # package names
reasons=() # why each is needed, in the same order
wants=()   # the paths checked for each, in the same order
for p in "${packages[@]}"; do
  IFS='|' read -r name want cmds why <<<"$p"
  case " $cmds " in *" $cmd "*) ;; *) continue ;; esac
  if ! present "$want"; then
    missing+=("$name")
    reasons+=("$why")
    wants+=("$want")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

# Debian or Ubuntu (or derived from them), with apt-get?
debian=
if [ -r "$root/etc/os-release" ]; then
  ids=$(sed -n 's/^\(ID\|ID_LIKE\)=//p' "$root/etc/os-release" | tr -d '"'"'" | tr '[:upper:]' '[:lower:]')
  for id in $ids; do
    case "$id" in debian | ubuntu) debian=1 ;; esac
  done
fi
apt=$root/usr/bin/apt-get
[ -x "$apt" ] || debian=

if [ -n "$debian" ] && [ "$EUID" -eq 0 ] && [ "${NIMBUS_NO_INSTALL:-}" != 1 ]; then
  echo "prereqs: make $cmd needs these missing Debian packages; installing them (NIMBUS_NO_INSTALL=1 turns this off):"
  for i in "${!missing[@]}"; do
    echo "  ${missing[$i]} (${wants[$i]// / or }): ${reasons[$i]}"
  done
  echo "prereqs: apt-get update -qq && apt-get install -y -qq ${missing[*]}"
  "$apt" update -qq
  DEBIAN_FRONTEND=noninteractive "$apt" install -y -qq "${missing[@]}" >/dev/null
  still=()
  for i in "${!missing[@]}"; do
    present "${wants[$i]}" || still+=("${missing[$i]} (${wants[$i]// / or })")
  done
  if [ ${#still[@]} -gt 0 ]; then
    echo "prereqs: apt-get finished, but still missing: ${still[*]}" >&2
    exit 1
  fi
  echo "prereqs: installed ${missing[*]}"
  exit 0
fi

{
  echo "prereqs: make $cmd needs these missing packages:"
  for i in "${!missing[@]}"; do
    echo "  ${missing[$i]} (${wants[$i]// / or }): ${reasons[$i]}"
  done
  if [ -n "$debian" ]; then
    if [ "$EUID" -eq 0 ]; then
      sudo=
      echo "prereqs: NIMBUS_NO_INSTALL=1, so nothing was installed. Install them with:"
    else
      sudo="sudo "
      echo "prereqs: installing them needs root, so nothing was installed. Install them with:"
    fi
    echo
    echo "  ${sudo}apt-get install -y ${missing[*]}"
    echo
    echo "(If apt-get cannot find a package, run ${sudo}apt-get update first.)"
  else
    echo "prereqs: this is not Debian or Ubuntu with apt-get, so nothing was installed."
    echo "Install them with your distribution's package manager, so that these commands exist:"
    for i in "${!missing[@]}"; do
      w=${wants[$i]}
      c=${w%% *}
      echo "  ${c##*/}, at ${w// / or }"
    done
  fi
} >&2
exit 3
