#!/usr/bin/env bash
# Builds the Helm CLIs the chart is tested with, from their Go modules at pinned versions, cached
# by version. Idempotent: when a version's binary is in the cache, it prints its path at once
# without calling `go`.
#
#   tools/helm/build.sh [3|4]...      build (or reuse) Helm 3 and/or Helm 4 (default: both) and
#                                     print each binary's path, one a line, in the order asked
#   ESC_CACHE_DIR=...                 cache root (default ~/.cache/esc-operator)
#
# Why both: users run either. Helm 4 changed how it waits (kstatus), how it applies (server-side
# apply by default on install) and its plugin system; a chart tested with one line only may fail
# with the other. `go install` works directly for both (their go.mod has no replace directives).
set -euo pipefail

HELM3_VERSION=${HELM3_VERSION:-v3.22.0}
HELM4_VERSION=${HELM4_VERSION:-v4.3.1}

here=$(cd "$(dirname "$0")" && pwd)
LOG_PREFIX=helm-build
# shellcheck source=../lib.sh
. "$here/../lib.sh"
cache_root=${ESC_CACHE_DIR:-$HOME/.cache/esc-operator}

export CGO_ENABLED=0 GOTOOLCHAIN=local

# Builds helm MAJOR at VERSION into $cache_root/helm-VERSION/helm (unless there), prints the path.
build() {
  local major=$1 version=$2
  local dir="$cache_root/helm-$version"
  local bin="$dir/helm"
  if [ -x "$bin" ]; then echo "$bin"; return; fi
  mkdir -p "$dir"
  (
    # Concurrent callers (parallel test binaries on a cold machine) wait for one build.
    exec 9>"$dir/.build.lock"
    flock 9
    [ -x "$bin" ] && exit 0
    local module="helm.sh/helm/v$major" started=$SECONDS
    log "building helm $version ($module/cmd/helm)"
    # The version Helm prints and sends (its User-Agent) is a link-time variable, as in
    # upstream's Makefile; without it `helm version` names only the minor line of the source.
    local ld="-s -w -X $module/internal/version.version=$version"
    ld="$ld -X $module/internal/version.gitTreeState=clean"
    if [ "$major" = 3 ]; then
      # Helm 3's default Kubernetes version (`helm template`, `helm lint`, `.Capabilities`) is
      # link-time too, from the client-go it requires (v0.N → 1.N), as upstream's Makefile sets
      # it; without it Helm 3 takes the cluster for v1.20 and refuses `kubeVersion: >=1.30`.
      # Helm 4 reads it from its build information.
      local gomod client_go minor
      gomod=$(go mod download -json "$module@$version" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
      client_go=$(awk '$1 == "k8s.io/client-go" { print $2; exit }' "$gomod")
      minor=${client_go#v0.}; minor=${minor%%.*}
      local pkg
      for pkg in pkg/lint/rules pkg/chartutil; do
        ld="$ld -X $module/$pkg.k8sVersionMajor=1 -X $module/$pkg.k8sVersionMinor=$minor"
      done
    fi
    # `go install` into a scratch GOBIN, then `install` into the cache: a build cut short never
    # leaves a half-written binary where the check above would take it for a finished one.
    GOBIN="$dir/work" go install -trimpath -ldflags "$ld" "$module/cmd/helm@$version"
    install -m 0755 "$dir/work/helm" "$bin"
    rm -rf "$dir/work"
    log "helm $version built in $((SECONDS - started)) s"
  )
  echo "$bin"
}

[ $# -gt 0 ] || set -- 3 4
for major in "$@"; do
  case $major in
    3) build 3 "$HELM3_VERSION" ;;
    4) build 4 "$HELM4_VERSION" ;;
    *) log "unknown Helm major version '$major' (expected 3 or 4)"; exit 2 ;;
  esac
done
