# shellcheck shell=bash
# Shared by the project's shell scripts (source it; it defines functions only).
#
#   log MSG...        one line on stderr, prefixed with the calling script's LOG_PREFIX
#   need_apt PKG...   install the Debian packages that are not installed, idempotently

log() { printf '[%s] %s\n' "${LOG_PREFIX:-tools}" "$*" >&2; }

# `dpkg -s` succeeds for a removed package whose config files remain; only this status means
# the package's files are really there.
apt_installed() {
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

need_apt() {
  local missing=() p
  for p in "$@"; do apt_installed "$p" || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# For scripts that produce one cached file: prints OUT and ends the script when it exists;
# otherwise takes the lock LOCK (on fd 9, held until the script ends) and checks again, so
# concurrent callers build it once.
exit_if_cached() {
  local out=$1 lock=$2
  if [ -s "$out" ]; then echo "$out"; exit 0; fi
  mkdir -p "$(dirname "$out")" "$(dirname "$lock")"
  exec 9>"$lock"
  flock 9
  if [ -s "$out" ]; then echo "$out"; exit 0; fi
  return 0
}

# Writes ARCHIVE, an OCI archive of IMAGE built FROM scratch with buildah: one static BINARY as
# /NAME and entrypoint, run as USER (uid:gid), plus any `--env K=V` options given after.
# Buildah's storage is private (vfs, a temp dir) and removed afterwards.
#   scratch_image_archive IMAGE ARCHIVE BINARY USER [buildah config options...]
scratch_image_archive() (
  local image=$1 archive=$2 binary=$3 user=$4
  shift 4
  local name work ctr
  name=$(basename "$binary")
  work=$(mktemp -d /tmp/esc-scratch-image.XXXXXX)
  local storage=(--root "$work/storage" --runroot "$work/run" --storage-driver vfs)
  trap 'buildah "${storage[@]}" rmi --all --force >/dev/null 2>&1; rm -rf "$work"' EXIT
  log "building $image"
  ctr=$(buildah "${storage[@]}" from scratch)
  buildah "${storage[@]}" copy "$ctr" "$binary" "/$name" >/dev/null
  buildah "${storage[@]}" config --entrypoint "[\"/$name\"]" --user "$user" \
    --os linux --arch "$(dpkg --print-architecture)" "$@" "$ctr"
  buildah "${storage[@]}" commit --quiet "$ctr" "$image" >/dev/null
  buildah "${storage[@]}" rm "$ctr" >/dev/null
  buildah "${storage[@]}" push --quiet "$image" "oci-archive:$archive.tmp:$image"
  mv "$archive.tmp" "$archive"
)
