#!/usr/bin/env bash
# Builds the operator image from the release binary and writes it as an OCI archive; prints its path.
#
#   tools/image/build.sh              build (or reuse) the image; last line of stdout: the archive
#
# What it does, each step skipped when its inputs did not change (a warm run calls cargo and
# returns; no buildah, no mmdebstrap):
#   1. `cargo build --release --locked --bin esc-operator` on the host;
#   2. a minimal Debian base (libc6, libgcc-s1, ca-certificates, tzdata and their hard dependencies,
#      a `nonroot` user 65532) made with `mmdebstrap --variant=extract`, cached by a key over its
#      recipe: suite, package set, the host's apt sources and this script's base-building code;
#   3. the Dockerfile's `runtime` stage, built by `buildah bud` on that base with the `builder`
#      stage replaced by a directory holding the host-built binary, so the Rust stage never runs;
#   4. `buildah push` to target/image/esc-operator-<version>.oci.tar, tagged
#      localhost/esc-operator:<version>, plus target/image/esc-operator.json describing it
#      (image name, archive, sizes) for tests and the node harness, which imports it with
#      `ctr -n k8s.io images import`.
#
# Environment:
#   ESC_CACHE_DIR            cache root (default ~/.cache/esc-operator); images/ below it holds the
#                            base rootfs tars and buildah's own storage (vfs driver)
#   ESC_IMAGE_REFRESH_BASE=1 rebuild the base even if cached (e.g. to pick up Debian security updates)
#   ESC_IMAGE_SUITE          Debian suite of the base (default: the host's, which also built the binary,
#                            so the base's glibc is never older than the one the binary was linked to)
#   ESC_IMAGE_BINARY         use this release binary instead of running cargo (e.g. one CI built
#                            already); it must be built for the same glibc as the base
#   SOURCE_DATE_EPOCH        image creation time (default: the commit time of HEAD); with the same
#                            inputs the image ID and digest are the same
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache_root=${ESC_CACHE_DIR:-$HOME/.cache/esc-operator}
img_cache="$cache_root/images"
mkdir -p "$img_cache"

# The runtime packages of the base, the same set the default RUNTIME_BASE of the Dockerfile has.
BASE_PACKAGES=(libc6 libgcc-s1 ca-certificates tzdata)

LOG_PREFIX="image-build"
# shellcheck source=../lib.sh
. "$here/../lib.sh"
die() { log "error: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

# buildah with its own storage under the cache: vfs needs no overlay support from the kernel, and
# nothing here depends on (or disturbs) the machine's default container storage.
bh() {
  buildah --root "$img_cache/storage" --runroot "$img_cache/runroot" --storage-driver vfs "$@"
}

need_apt buildah mmdebstrap jq

# One build at a time per cache: tests that build the image may run concurrently.
exec 9>"$img_cache/build.lock"
flock 9

t_start=$(now)

# --- 1. the release binary --------------------------------------------------------------------
meta=$(cargo metadata --no-deps --format-version 1 --manifest-path "$repo/Cargo.toml")
version=$(jq -r '.packages[] | select(.name == "esc-operator") | .version' <<<"$meta")
target_dir=$(jq -r '.target_directory' <<<"$meta")
[ -n "$version" ] || die "no esc-operator package in cargo metadata"
if [ -n "${ESC_IMAGE_BINARY:-}" ]; then
  binary=$ESC_IMAGE_BINARY
  log "using the prebuilt binary $binary (ESC_IMAGE_BINARY)"
else
  t0=$(now)
  (cd "$repo" && cargo build --release --locked --bin esc-operator)
  binary="$target_dir/release/esc-operator"
  log "cargo build --release: $(since "$t0")"
fi
[ -x "$binary" ] || die "no executable binary at $binary"

# --- 2. the base --------------------------------------------------------------------------------
# shellcheck disable=SC1091
suite=${ESC_IMAGE_SUITE:-$(. /etc/os-release && echo "${VERSION_CODENAME:?}")}

# The host's apt sources (deb822 or one-line), given to mmdebstrap as its mirrors; the base comes
# from the same archive (and security updates) the machine installs from.
host_sources() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -s "$f" ] && echo "$f"
  done
  return 0
}
mapfile -t sources < <(host_sources)
[ ${#sources[@]} -gt 0 ] || die "no apt sources on this host"

# Makes the base rootfs in $1 (an empty directory).
make_base_rootfs() {
  local root=${1:?}
  mkdir -p "$root"
  # extract: unpack the packages and their hard dependencies, run no maintainer scripts. The hook
  # records each package's control data in /var/lib/dpkg/status.d/ (as distroless does), so image
  # scanners can list the packages without a dpkg database.
  # shellcheck disable=SC2016 # the hook's "$1" is mmdebstrap's, expanded when it runs
  mmdebstrap --quiet --variant=extract --include="$(IFS=,; echo "${BASE_PACKAGES[*]}")" \
    --extract-hook='mkdir -p "$1/var/lib/dpkg/status.d"
      for f in "$1"/var/cache/apt/archives/*.deb; do
        p=$(dpkg-deb -f "$f" Package)
        { dpkg-deb -f "$f"; echo "Status: install ok installed"; } > "$1/var/lib/dpkg/status.d/$p"
      done' \
    "$suite" "$root" "${sources[@]}"
  # What the skipped maintainer scripts would have made, and a user for the non-root UID.
  # ca-certificates' postinst builds the bundle from the Mozilla set; do the same.
  cat "$root"/usr/share/ca-certificates/mozilla/*.crt > "$root/etc/ssl/certs/ca-certificates.crt"
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
    'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' > "$root/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' 'nonroot:x:65532:' > "$root/etc/group"
  printf '%s\n' 'passwd: files' 'group: files' 'hosts: files dns' > "$root/etc/nsswitch.conf"
  install -d -m 0700 -o 65532 -g 65532 "$root/home/nonroot"
  install -d -m 0700 "$root/root"
  install -d -m 1777 "$root/tmp"
  ln -sfn /usr/share/zoneinfo/Etc/UTC "$root/etc/localtime"
  # The container runtime provides these; the host's copies must not leak into the image. No
  # package manager runs in the image, so its configuration and caches go too, as do docs.
  rm -rf "${root:?}"/dev/* "$root/etc/resolv.conf" "$root/etc/hostname" "$root/etc/fstab" \
    "$root/etc/apt" "$root/var/lib/apt" "$root/var/cache/apt" "$root/var/cache/debconf" \
    "$root/etc/dpkg" "$root/var/log"/* "$root/usr/share/man" "$root/usr/share/info" \
    "$root/usr/share/locale" "$root/usr/share/lintian"
  find "$root/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
}

base_key=$( {
  echo "suite=$suite"
  echo "packages=${BASE_PACKAGES[*]}"
  cat "${sources[@]}"
  declare -f make_base_rootfs
  dpkg-query -W -f '${Version}\n' mmdebstrap
} | sha256sum | cut -c1-16)
base_ref="localhost/esc-base:$base_key"
base_tar="$img_cache/esc-base-$base_key.tar"

if [ "${ESC_IMAGE_REFRESH_BASE:-0}" = 1 ]; then
  log "refreshing base $base_ref"
  rm -f "$base_tar"
  bh rmi -f "$base_ref" >/dev/null 2>&1 || true
fi

if ! bh inspect --type image "$base_ref" >/dev/null 2>&1; then
  if [ ! -s "$base_tar" ]; then
    t0=$(now)
    log "making base rootfs ($suite: ${BASE_PACKAGES[*]}) with mmdebstrap"
    work=$(mktemp -d "$img_cache/base-work.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    make_base_rootfs "$work/rootfs"
    tar --sort=name --numeric-owner -C "$work/rootfs" -cf "$work/base.tar" .
    mv "$work/base.tar" "$base_tar"
    rm -rf "$work"
    trap - EXIT
    log "base rootfs $(du -h "$base_tar" | cut -f1): $(since "$t0")"
  fi
  t0=$(now)
  ctr=$(bh from --quiet scratch)
  bh add --quiet "$ctr" "$base_tar" / >/dev/null
  # The same process environment as the Dockerfile's default base (distroless cc, tag nonroot).
  bh config \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --user 65532:65532 --workingdir /home/nonroot \
    --os linux --arch "$(dpkg --print-architecture)" "$ctr"
  bh commit --quiet --rm --timestamp 0 --identity-label=false "$ctr" "$base_ref" >/dev/null
  log "base image $base_ref: $(since "$t0")"
  # Bases of earlier recipes are not used again.
  for t in "$img_cache"/esc-base-*.tar; do [ "$t" = "$base_tar" ] || rm -f "$t"; done
  bh images --format '{{.Name}}:{{.Tag}}' | grep '^localhost/esc-base:' | grep -vx "$base_ref" \
    | xargs -r buildah --root "$img_cache/storage" --runroot "$img_cache/runroot" \
      --storage-driver vfs rmi >/dev/null 2>&1 || true
fi
base_id=$(bh inspect --type image --format '{{.FromImageID}}' "$base_ref")

# --- 3. the runtime stage of the Dockerfile -------------------------------------------------
out_dir="$target_dir/image"
image="localhost/esc-operator:$version"
archive="$out_dir/esc-operator-$version.oci.tar"
info="$out_dir/esc-operator.json"
# Stands in for the `builder` stage's filesystem: only the path the runtime stage copies.
stage="$out_dir/builder"
mkdir -p "$stage/usr/local/bin"
cmp -s "$binary" "$stage/usr/local/bin/esc-operator" \
  || install -m 0755 "$binary" "$stage/usr/local/bin/esc-operator"

revision=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)
if [ "$revision" != unknown ] && ! git -C "$repo" diff --quiet HEAD -- 2>/dev/null; then
  revision="$revision-dirty"
fi
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo 0)}

image_key=$( {
  echo "version=$version revision=$revision epoch=$epoch base=$base_id"
  sha256sum < "$binary"
  sha256sum < "$repo/Dockerfile"
  sha256sum < "$here/build.sh"
  buildah --version
} | sha256sum | cut -c1-64)

if [ -s "$archive" ] && [ -s "$info" ] && [ "$(jq -r .key "$info" 2>/dev/null)" = "$image_key" ] \
  && bh inspect --type image "$image" >/dev/null 2>&1; then
  log "up to date: $image ($(jq -r .archive_bytes "$info") bytes) in $(since "$t_start")"
  echo "$archive"
  exit 0
fi

t0=$(now)
log "buildah bud --target runtime ($image on $base_ref)"
# --pull=never: the base and the stand-in builder are local and nothing is fetched; it also proves
# the Rust builder stage is skipped, since its image (rust:…) is never in this storage.
bh bud --quiet --target runtime --pull=never --identity-label=false --timestamp "$epoch" \
  --build-context "builder=$stage" \
  --build-arg "RUNTIME_BASE=$base_ref" \
  --build-arg "VERSION=$version" \
  --build-arg "REVISION=$revision" \
  -f "$repo/Dockerfile" -t "$image" "$stage" >/dev/null
image_id=$(bh inspect --type image --format '{{.FromImageID}}' "$image")
# Earlier builds of the tag are now untagged; vfs keeps full copies, so drop them.
bh rmi --prune >/dev/null 2>&1 || true
log "buildah bud: $(since "$t0")"

t0=$(now)
# Push to an OCI layout directory, then pack it ourselves: OCI's ref.name is meant to be a tag
# only, and importers differ in how they read a full name there, so the index also gets
# containerd's own annotation, which names the image unambiguously for `ctr images import`.
layout=$(mktemp -d "$out_dir/layout.XXXXXX")
trap 'rm -rf "$layout"' EXIT
bh push --quiet "$image" "oci:$layout/oci:$image"
jq -c --arg n "$image" '.manifests[0].annotations["io.containerd.image.name"] = $n' \
  "$layout/oci/index.json" > "$layout/index.json"
mv "$layout/index.json" "$layout/oci/index.json"
# Sizes: the archive as shipped (compressed layers) and the unpacked filesystem.
blob() { echo "$layout/oci/blobs/sha256/${1#sha256:}"; }
manifest_digest=$(jq -r '.manifests[0].digest' "$layout/oci/index.json")
rootfs_bytes=0
for l in $(jq -r '.layers[].digest' "$(blob "$manifest_digest")"); do
  n=$(gzip -dc "$(blob "$l")" | tar -tvf - | awk '{ s += $3 } END { print s + 0 }')
  rootfs_bytes=$((rootfs_bytes + n))
done
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" \
  -C "$layout/oci" -cf "$layout/archive.tar" oci-layout index.json blobs
mv "$layout/archive.tar" "$archive"
rm -rf "$layout"
trap - EXIT

archive_bytes=$(stat -c %s "$archive")
binary_bytes=$(stat -c %s "$binary")
jq -n --arg key "$image_key" --arg image "$image" --arg archive "$archive" --arg id "$image_id" \
  --arg version "$version" --arg revision "$revision" --arg base "$base_ref" \
  --arg manifest "$manifest_digest" \
  --argjson archive_bytes "$archive_bytes" --argjson rootfs_bytes "$rootfs_bytes" \
  --argjson binary_bytes "$binary_bytes" \
  '{key: $key, image: $image, archive: $archive, image_id: $id, manifest_digest: $manifest,
    version: $version, revision: $revision, base: $base, archive_bytes: $archive_bytes,
    rootfs_bytes: $rootfs_bytes, binary_bytes: $binary_bytes}' > "$info.tmp"
mv "$info.tmp" "$info"
log "push oci-archive: $(since "$t0")"
log "$image: archive $((archive_bytes / 1024)) KiB, unpacked $((rootfs_bytes / 1024)) KiB (binary $((binary_bytes / 1024)) KiB); total $(since "$t_start")"
echo "$archive"
