#!/usr/bin/env bash
# Runs every Go fuzz test (func Fuzz...) of the module for a bounded time
# each: FUZZTIME, a duration or a count of inputs such as 50000x (default;
# `make test` uses it, `make fuzz` 2000000x). A count ends without the deadline
# on which a short timed run can report "context deadline exceeded" as a
# failure (golang/go#75804). go test -fuzz takes one target at a time. A
# crasher is written under the package's testdata/fuzz, where it becomes a
# regression test that plain `go test` runs.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-50000x}
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
