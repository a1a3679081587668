#!/usr/bin/env bash
# Generates docs/ with tfplugindocs from the provider's schema and examples/.
# tfplugindocs cannot download a Terraform CLI offline, so the schema comes
# from `tofu providers schema -json` and is handed over with --providers-schema.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/tofu-env.sh
source "$root/scripts/tofu-env.sh"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/main.tf" <<'TF'
terraform {
  required_providers {
    nimbus = { source = "nimbus-faas/nimbus" }
  }
}
TF
"$tofu" -chdir="$work" providers schema -json 2>/dev/null >"$work/raw.json"
# tfplugindocs looks the provider up by its short name.
sed 's#"registry.opentofu.org/nimbus-faas/nimbus"#"nimbus"#' "$work/raw.json" >"$work/schema.json"

cd "$root"
go run github.com/hashicorp/terraform-plugin-docs/cmd/tfplugindocs@v0.24.0 generate \
  --provider-name nimbus --providers-schema "$work/schema.json" \
  --examples-dir examples --rendered-website-dir docs
