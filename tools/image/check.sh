#!/usr/bin/env bash
# Checks the operator image archive that tools/image/build.sh wrote: its name, OCI labels, user,
# entrypoint, contents, size, and that the binary in it runs, as UID 65532, on the image's own
# libraries. Exits non-zero if any check fails; the last line is "N passed, N failed".
#
#   tools/image/check.sh                  build (or reuse) the image with build.sh, then check it
#   tools/image/check.sh ARCHIVE          check an existing archive
#
# Environment: ESC_IMAGE_MAX_MIB (default 100) bounds the unpacked image size.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
max_mib=${ESC_IMAGE_MAX_MIB:-100}

LOG_PREFIX="image-check"
# shellcheck source=../lib.sh
. "$here/../lib.sh"
need_apt jq

archive=${1:-$("$here/build.sh")}
[ -s "$archive" ] || { echo "no archive at $archive" >&2; exit 1; }

passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok - $*"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $*"; }
# expect NAME ACTUAL WANTED
expect() {
  if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1: got '$2', want '$3'"; fi
}

meta=$(cargo metadata --no-deps --format-version 1 --manifest-path "$repo/Cargo.toml")
pkg() { jq -r --arg f "$1" '.packages[] | select(.name == "esc-operator") | .[$f]' <<<"$meta"; }
version=$(pkg version)
repository=$(pkg repository)
license=$(pkg license)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xf "$archive" -C "$work"
blob() { echo "$work/blobs/sha256/${1#sha256:}"; }

# --- name and metadata -------------------------------------------------------------------------
index=$(cat "$work/index.json")
expect "one image in the archive" "$(jq '.manifests | length' <<<"$index")" 1
expect "archive names the image localhost/esc-operator:$version" \
  "$(jq -r '.manifests[0].annotations["org.opencontainers.image.ref.name"]' <<<"$index")" \
  "localhost/esc-operator:$version"
expect "archive names the image for containerd" \
  "$(jq -r '.manifests[0].annotations["io.containerd.image.name"]' <<<"$index")" \
  "localhost/esc-operator:$version"
manifest=$(cat "$(blob "$(jq -r '.manifests[0].digest' <<<"$index")")")
config=$(cat "$(blob "$(jq -r '.config.digest' <<<"$manifest")")")
label() { jq -r --arg l "org.opencontainers.image.$1" '.config.Labels[$l] // ""' <<<"$config"; }

expect "label version is the Cargo.toml version" "$(label version)" "$version"
expect "label source is the Cargo.toml repository" "$(label source)" "$repository"
expect "label licenses is the Cargo.toml license" "$(label licenses)" "$license"
expect "label title" "$(label title)" "esc-operator"
rev=$(label revision)
if [[ $rev =~ ^[0-9a-f]{40}(-dirty)?$ ]]; then ok "label revision is a commit ($rev)"
else not_ok "label revision is a commit: got '$rev'"; fi
expect "Dockerfile's default VERSION is the Cargo.toml version" \
  "$(sed -n 's/^ARG VERSION=//p' "$repo/Dockerfile")" "$version"

expect "user is 65532:65532" "$(jq -r '.config.User' <<<"$config")" "65532:65532"
expect "entrypoint is the binary" "$(jq -c '.config.Entrypoint' <<<"$config")" '["/usr/local/bin/esc-operator"]'
expect "no default command" "$(jq -c '.config.Cmd // null' <<<"$config")" "null"
expect "os/arch" "$(jq -r '.os + "/" + .architecture' <<<"$config")" "linux/$(dpkg --print-architecture)"
# The image was built from the runtime stage alone: no step of the Rust builder is in its history.
if jq -r '.history[].created_by // ""' <<<"$config" | grep -qiE 'cargo|rust'; then
  not_ok "history has no builder step: $(jq -r '.history[].created_by' <<<"$config" | grep -iE 'cargo|rust')"
else
  ok "history has no builder step"
fi

# --- the filesystem ----------------------------------------------------------------------------
root="$work/rootfs"
mkdir -p "$root"
layers=$(jq -r '.layers[].digest' <<<"$manifest")
for l in $layers; do
  gzip -dc "$(blob "$l")" | tar -x --numeric-owner -C "$root"
done
rootfs_bytes=$(du -sb "$root" | cut -f1)
archive_bytes=$(stat -c %s "$archive")
echo "# image size: archive $((archive_bytes / 1024)) KiB, unpacked $((rootfs_bytes / 1024)) KiB ($(echo "$layers" | wc -w) layers)"
if [ "$rootfs_bytes" -le $((max_mib * 1024 * 1024)) ]; then ok "unpacked size ≤ $max_mib MiB"
else not_ok "unpacked size $((rootfs_bytes / 1048576)) MiB > $max_mib MiB"; fi

bin="$root/usr/local/bin/esc-operator"
expect "binary is root-owned, mode 0755" "$(stat -c '%u:%g %a' "$bin" 2>/dev/null || echo missing)" "0:0 755"
multiarch="$(uname -m)-linux-gnu"
for f in etc/ssl/certs/ca-certificates.crt usr/share/zoneinfo/UTC \
  "lib/$multiarch/libgcc_s.so.1" "lib/$multiarch/libc.so.6"; do
  if [ -s "$root/$f" ]; then ok "has /$f"; else not_ok "has /$f"; fi
done
if grep -q '^nonroot:x:65532:65532:' "$root/etc/passwd" 2>/dev/null; then ok "/etc/passwd names 65532"
else not_ok "/etc/passwd names 65532"; fi
# The Docker default base (distroless) has /home/nonroot; so does ours, writable by 65532 only.
expect "/home/nonroot belongs to 65532" "$(stat -c '%u:%g' "$root/home/nonroot" 2>/dev/null || echo missing)" "65532:65532"
if [ -e "$root/etc/resolv.conf" ] && [ -s "$root/etc/resolv.conf" ]; then
  not_ok "no host resolv.conf in the image"
else
  ok "no host resolv.conf in the image"
fi

# --- the binary runs in it -----------------------------------------------------------------------
# chroot into the unpacked image as 65532, in private mount and PID namespaces with /proc and /dev
# (torn down with the namespaces), with the image's environment: only its own libraries are there.
run_in_image() {
  local env=()
  mapfile -t env < <(jq -r '.config.Env[]' <<<"$config")
  # shellcheck disable=SC2016 # expanded by the inner sh
  unshare --mount --pid --fork --propagation private -- sh -c '
    root=$1; shift
    mkdir -p "$root/proc" "$root/dev"
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    exec "$@"' sh "$root" \
    env -i "${env[@]}" chroot --userspec=65532:65532 "$root" /usr/local/bin/esc-operator "$@"
}
for cmd in version --version; do
  set +e
  out=$(run_in_image "$cmd" 2>&1)
  rc=$?
  set -e
  echo "# esc-operator $cmd (in the image, as 65532): rc=$rc: $out"
  expect "'esc-operator $cmd' exits 0 in the image as 65532" "$rc" 0
  if grep -qF "$version" <<<"$out"; then ok "'esc-operator $cmd' prints $version"
  else not_ok "'esc-operator $cmd' prints $version: got '$out'"; fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
