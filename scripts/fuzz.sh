#!/usr/bin/env bash
# Runs every Go fuzz test (func Fuzz...) of the module for a bounded time
# each: FUZZTIME (default 3s; `make fuzz` uses 60s). go test -fuzz takes one
# target at a time. A crasher is written under the package's testdata/fuzz,
# where it becomes a regression test that plain `go test` runs.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-3s}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
while IFS=: read -r file _ line; do
  pkg=./$(dirname "$file")
  name=$(sed -E 's/^func (Fuzz[A-Za-z0-9_]*)\(.*/\1/' <<<"$line")
  echo "fuzz: $pkg $name for $fuzztime"
  if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg" >"$log" 2>&1; then
    cat "$log"
    status=1
  fi
done < <(grep -rn --include='*_test.go' '^func Fuzz' internal runtime provider)
exit $status
