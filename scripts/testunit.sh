#!/usr/bin/env bash
# make testunit: every test that needs no agents, no root and no network,
# in well under a minute. A package whose tests import the agent harness
# (internal/harness/testenv) is left out, except the provider's tests that
# are not acceptance tests (TestAcc*), which start nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
module=$(go list -m)
mapfile -t pure < <(go list -f '{{.ImportPath}}|{{join .TestImports " "}} {{join .XTestImports " "}}|{{len .TestGoFiles}}{{len .XTestGoFiles}}' ./... |
  awk -F'|' -v h="$module/internal/harness/testenv" '$3 != "00" && index($2, h) == 0 { print $1 }')
go test -count=1 -short "${pure[@]}"
go test -count=1 -short ./provider/ -run 'Test[^A]'
