#!/usr/bin/env bash
# Builds the S3 servers the tests store backups in, from Go modules at pinned versions, cached by
# version. Idempotent: when both binaries of these versions are in the cache, it prints the bin dir
# at once without calling `go`.
#
#   tools/s3/build.sh                 build (or reuse) minio and versitygw, print the bin dir
#   ESC_CACHE_DIR=...                 cache root (default ~/.cache/esc-operator)
#
# Why two servers: S3-compatible stores differ exactly where backup tools break (checksum headers,
# multipart listing), so the tests run against both.
#   minio      what most on-prem users run. MinIO publishes no module tags, so `@latest` is a
#              pseudo-version; it is pinned here (resolved on 2026-11-28 from `@latest`) so that
#              every machine builds the same server.
#   versitygw  the Versity S3 Gateway (Apache-2.0) over a plain directory (its `posix` backend).
set -euo pipefail

MINIO_VERSION=${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}
VERSITYGW_VERSION=${VERSITYGW_VERSION:-v1.8.0}

here=$(cd "$(dirname "$0")" && pwd)
LOG_PREFIX=s3-build
# shellcheck source=../lib.sh
. "$here/../lib.sh"
cache_root=${ESC_CACHE_DIR:-$HOME/.cache/esc-operator}
# One directory per pair of versions: the harness finds both servers in the bin dir printed.
s3_dir="$cache_root/s3-minio-${MINIO_VERSION##*-}-versitygw-$VERSITYGW_VERSION"
bin_dir="$s3_dir/bin"

have_all() { [ -x "$bin_dir/minio" ] && [ -x "$bin_dir/versitygw" ]; }

if have_all; then echo "$bin_dir"; exit 0; fi

mkdir -p "$bin_dir"
# Concurrent callers (parallel test binaries on a cold machine) wait for one build.
exec 9>"$s3_dir/.build.lock"
flock 9
if have_all; then echo "$bin_dir"; exit 0; fi

export CGO_ENABLED=0 GOTOOLCHAIN=local

# `go install` into a scratch GOBIN, then `install` into the cache: a build cut short never leaves
# a half-written binary where the check above would take it for a finished one.
go_install() {
  local name=$1 pkg=$2 started=$SECONDS
  local out="$s3_dir/work"
  mkdir -p "$out"
  log "building $name ($pkg)"
  GOBIN="$out" go install -trimpath -ldflags "-s -w" "$pkg"
  install -m 0755 "$out/$name" "$bin_dir/$name"
  rm -f "$out/$name"
  log "$name built in $((SECONDS - started)) s"
}

[ -x "$bin_dir/minio" ] || go_install minio "github.com/minio/minio@$MINIO_VERSION"
[ -x "$bin_dir/versitygw" ] \
  || go_install versitygw "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
rmdir "$s3_dir/work" 2>/dev/null || true
echo "$bin_dir"
