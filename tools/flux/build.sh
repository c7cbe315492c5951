#!/usr/bin/env bash
# Builds the Flux controllers the GitOps tests run (as host processes against the test bed),
# from their Go modules at pinned versions, cached by version, and copies their CRDs next to
# them. Idempotent: when every binary and CRD directory is cached, it prints the directory at
# once without calling `go`.
#
#   tools/flux/build.sh               build (or reuse) all three, print the cache directory
#                                     (bin/<controller>, crds/<controller>/*.yaml)
#   ESC_CACHE_DIR=...                 cache root (default ~/.cache/esc-operator)
#
# Why wrapper modules: each controller's go.mod replaces its `/api` module with `./api`, so
# `go install module@version` refuses it. A wrapper takes the upstream go.mod whole (its
# requirements and its other replaces), drops that one replace, requires the controller and its
# api module at the release's version, and builds the controller's main package.
# The pins are the versions the Go proxy serves in full (../shared notes: newer source-controller
# releases need modules the proxy refuses; v1.10 lines need Go 1.27).
set -euo pipefail

SOURCE_CONTROLLER_VERSION=${SOURCE_CONTROLLER_VERSION:-v1.9.0}
KUSTOMIZE_CONTROLLER_VERSION=${KUSTOMIZE_CONTROLLER_VERSION:-v1.9.6}
HELM_CONTROLLER_VERSION=${HELM_CONTROLLER_VERSION:-v1.6.4}

here=$(cd "$(dirname "$0")" && pwd)
LOG_PREFIX=flux-build
# shellcheck source=../lib.sh
. "$here/../lib.sh"
cache_root=${ESC_CACHE_DIR:-$HOME/.cache/esc-operator}
dir="$cache_root/flux-source-$SOURCE_CONTROLLER_VERSION-kustomize-$KUSTOMIZE_CONTROLLER_VERSION-helm-$HELM_CONTROLLER_VERSION"

controllers=(
  "source-controller $SOURCE_CONTROLLER_VERSION"
  "kustomize-controller $KUSTOMIZE_CONTROLLER_VERSION"
  "helm-controller $HELM_CONTROLLER_VERSION"
)

have_all() {
  local c name
  for c in "${controllers[@]}"; do
    name=${c%% *}
    [ -x "$dir/bin/$name" ] && [ -d "$dir/crds/$name" ] || return 1
  done
}
if have_all; then echo "$dir"; exit 0; fi

mkdir -p "$dir/bin" "$dir/crds" "$dir/work"
exec 9>"$dir/.build.lock"
flock 9
if have_all; then echo "$dir"; exit 0; fi

export CGO_ENABLED=0 GOTOOLCHAIN=local

build() {
  local name=$1 version=$2 started=$SECONDS
  local module="github.com/fluxcd/$name"
  local mod="$dir/work/$name"
  [ -x "$dir/bin/$name" ] && [ -d "$dir/crds/$name" ] && return
  rm -rf "$mod"
  mkdir -p "$mod"
  log "building $name $version"
  local info gomod src
  info=$(cd "$mod" && go mod download -json "$module@$version")
  gomod=$(sed -n 's/.*"GoMod": "\(.*\)".*/\1/p' <<<"$info")
  src=$(sed -n 's/.*"Dir": "\(.*\)".*/\1/p' <<<"$info")
  install -m 0644 "$gomod" "$mod/go.mod"
  # Never `go mod tidy` or `go list -m all` here: they walk test-only modules the proxy refuses.
  (cd "$mod" && go mod edit -module="esc-operator.local/flux-$name" -dropreplace="$module/api" \
    -require="$module@$version" -require="$module/api@$version")
  cat > "$mod/tools.go" <<GO
//go:build tools

package tools

import _ "$module"
GO
  (cd "$mod" && GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$mod/$name" "$module")
  rm -rf "$dir/crds/$name.tmp"
  mkdir -p "$dir/crds/$name.tmp"
  install -m 0644 "$src"/config/crd/bases/*.yaml "$dir/crds/$name.tmp/"
  install -m 0755 "$mod/$name" "$dir/bin/$name"
  rm -rf "$dir/crds/$name"
  mv "$dir/crds/$name.tmp" "$dir/crds/$name"
  rm -rf "$mod"
  log "$name built in $((SECONDS - started)) s"
}

for c in "${controllers[@]}"; do
  # shellcheck disable=SC2086 # "name version"
  build $c
done
rmdir "$dir/work" 2>/dev/null || true
echo "$dir"
