# Sourced by scripts that run OpenTofu against the provider built from this
# checkout: builds it into .nimbus/bin and points OpenTofu at it with a
# dev_overrides CLI configuration, so no registry is needed.
# shellcheck shell=bash
root=${root:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
mkdir -p "$root/.nimbus/bin"
(cd "$root" && go build -ldflags "-X main.version=${VERSION:-dev}" -o .nimbus/bin/terraform-provider-nimbus .)
cat >"$root/.nimbus/tofurc" <<RC
provider_installation {
  dev_overrides {
    "registry.opentofu.org/nimbus-faas/nimbus"  = "$root/.nimbus/bin"
    "registry.terraform.io/nimbus-faas/nimbus" = "$root/.nimbus/bin"
  }
  direct {}
}
RC
export TF_CLI_CONFIG_FILE="$root/.nimbus/tofurc"
tofu="${NIMBUS_TOFU_BIN:-$root/.tools/bin/tofu}"
