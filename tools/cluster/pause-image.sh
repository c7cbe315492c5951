#!/usr/bin/env bash
# Builds the node's sandbox image `localhost/pause:3.10` as an OCI archive, cached by version,
# and prints the archive's path. Idempotent: a cached archive is returned at once (no gcc, no go).
#
#   tools/cluster/pause-image.sh      build (or reuse) the archive, print its path
#   ESC_CACHE_DIR=...                 cache root (default ~/.cache/esc-operator)
#
# No registry anywhere: the binary is compiled from the kubernetes module's own
# build/pause/linux/pause.c (`gcc -Os -static`, as upstream's Makefile does), put into an image
# FROM scratch with buildah (vfs storage in a private root, removed afterwards), and exported as
# an OCI archive that the test bed imports into containerd (`ctr images import`).
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
PAUSE_TAG=3.10
IMAGE=localhost/pause:$PAUSE_TAG

cache_root=${ESC_CACHE_DIR:-$HOME/.cache/esc-operator}
out_dir="$cache_root/k8s-$K8S_VERSION/images"
out="$out_dir/pause-$PAUSE_TAG.oci.tar"

LOG_PREFIX=pause-image
# shellcheck source=../lib.sh
. "$(cd "$(dirname "$0")" && pwd)/../lib.sh"

exit_if_cached "$out" "$out_dir/.pause.lock"

need_apt buildah gcc libc6-dev

# pause.c from the kubernetes module at the version the cluster runs.
src=$(cd /tmp && GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$K8S_VERSION" \
  | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
[ -f "$src/build/pause/linux/pause.c" ] || { log "no pause.c under '$src'"; exit 1; }

work=$(mktemp -d /tmp/esc-pause-build.XXXXXX)
trap 'rm -rf "$work"' EXIT

log "compiling pause.c ($K8S_VERSION)"
gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_TAG-esc-testbed" \
  -o "$work/pause" "$src/build/pause/linux/pause.c"

scratch_image_archive "$IMAGE" "$out" "$work/pause" 65535:65535
echo "$out"
