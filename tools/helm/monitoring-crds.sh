#!/usr/bin/env bash
# Copies the Prometheus Operator's ServiceMonitor and PrometheusRule CRDs, at a pinned version,
# from its Go module into a cache, and prints the directory. The chart's optional ServiceMonitor
# and PrometheusRule are checked against these real schemas on the test bed's API server.
# Idempotent: when both files are cached, prints the directory without calling `go`.
#
#   tools/helm/monitoring-crds.sh      print the directory holding the two CRD files
#   ESC_CACHE_DIR=...                  cache root (default ~/.cache/esc-operator)
set -euo pipefail

PROMETHEUS_OPERATOR_VERSION=${PROMETHEUS_OPERATOR_VERSION:-v0.85.0}

here=$(cd "$(dirname "$0")" && pwd)
LOG_PREFIX=monitoring-crds
# shellcheck source=../lib.sh
. "$here/../lib.sh"
cache_root=${ESC_CACHE_DIR:-$HOME/.cache/esc-operator}
dir="$cache_root/prometheus-operator-$PROMETHEUS_OPERATOR_VERSION"
files=(monitoring.coreos.com_servicemonitors.yaml monitoring.coreos.com_prometheusrules.yaml)

have_all() { local f; for f in "${files[@]}"; do [ -s "$dir/$f" ] || return 1; done; }
if have_all; then echo "$dir"; exit 0; fi

mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9
if have_all; then echo "$dir"; exit 0; fi

module=github.com/prometheus-operator/prometheus-operator
log "downloading $module@$PROMETHEUS_OPERATOR_VERSION"
# Outside any module (an empty directory), `go mod download` only fills the module cache.
empty=$(mktemp -d)
trap 'rmdir "$empty"' EXIT
src=$(cd "$empty" && GOTOOLCHAIN=local go mod download -json "$module@$PROMETHEUS_OPERATOR_VERSION" \
  | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
for f in "${files[@]}"; do
  install -m 0644 "$src/example/prometheus-operator-crd/$f" "$dir/$f.tmp"
  mv "$dir/$f.tmp" "$dir/$f"
done
echo "$dir"
