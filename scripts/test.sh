#!/usr/bin/env bash
# make test: every package's tests against real agents, then each fuzz test.
# The agents' logs of a failing package are long, so a failing run ends by
# repeating the failed tests' own messages: the tail of a CI log says what
# failed and why.
set -uo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
trap 'rm -f "$log"' EXIT
TF_ACC=1 go test -count=1 -timeout 30m ./... 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
if [ "$status" -ne 0 ]; then
  echo
  echo "===== the failed tests' messages (repeated from above) ====="
  # A failed test's indented messages, and a panic with its stack.
  awk '/^ *--- FAIL/ { p = 1; print; next }
       /^panic: / { p = 2 }
       p == 2 && /^FAIL\t/ { p = 0 }
       p == 2 || (p == 1 && /^[ \t]/) { print; next }
       { p = 0 }' "$log" | head -n 400
  exit "$status"
fi
FUZZTIME=50000x bash scripts/fuzz.sh
