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
