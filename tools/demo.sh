#!/usr/bin/env bash
# The main job of the README: a full ESC backup and restore through esc-operator on a local
# test bed (Kubernetes control plane and node, a simulated ESC HA pair behind sshd, MinIO), the
# operator installed with its Helm chart. Installs and builds what it needs first (idempotent,
# cached: the first run builds Kubernetes, MinIO, Helm and the operator image from source).
#
#   tools/demo.sh [--keep]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."

for tool in cargo go; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    case $tool in
      cargo) hint="install Rust: https://rustup.rs (curl --proto '=https' -sSf https://sh.rustup.rs | sh)" ;;
      go) hint="install Go 1.24 or newer: https://go.dev/doc/install (Debian: apt-get install golang-go)" ;;
    esac
    printf 'demo: %s is missing: %s\n' "$tool" "$hint" >&2
    exit 1
  fi
done
if [ "$(id -u)" -ne 0 ]; then
  printf 'demo: run as root: the test bed starts a kubelet and containerd (sudo tools/demo.sh)\n' >&2
  exit 1
fi

printf '[demo] preparing the parts (cached after the first run)\n' >&2
"$here/setup.sh"
"$here/helm/build.sh" 4 >/dev/null
printf '[demo] building the demo\n' >&2
exec cargo run --locked --example demo -- "$@"
