#!/usr/bin/env bash
# Prepares this machine to serve simulated ESC nodes behind real OpenSSH sshd daemons.
# Idempotent: safe to run before every test run; it changes nothing that is already in place.
#
#   tools/sshd/setup.sh
#
# What it does (and nothing else; the machine's own sshd service is never configured or started):
#   - installs Debian's openssh-server (the sshd binary), openssh-client, sshpass, tar, bzip2;
#   - creates /run/sshd (sshd's privilege-separation directory);
#   - creates the local account `escsim` used for password logins to simulated nodes (sshd checks
#     the shadow file, so a password user has to be a real account), with a random password that
#     is generated once and kept in /var/lib/esc-sim/escsim.password (mode 0600, root only).
#     The password is set through chpasswd's stdin: it never appears in a process argument.
# Must run as root.
set -euo pipefail

log() { printf '[sshd-setup] %s\n' "$*" >&2; }

if [ "$(id -u)" != 0 ]; then
  log "must run as root"
  exit 1
fi

need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null || need+=(openssh-client)
command -v ssh-keygen >/dev/null || need+=(openssh-client)
command -v sshpass >/dev/null || need+=(sshpass)
command -v tar >/dev/null || need+=(tar)
command -v bzip2 >/dev/null || need+=(bzip2)
# The nodes hash files with openssl where it exists (CommandLine::sha256sum); the driver's tests
# run both that path and the coreutils fallback.
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d keeps Debian's maintainer scripts from starting the system sshd service.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    created_policy=1
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi
fi

mkdir -p /run/sshd
chmod 0755 /run/sshd

user=escsim
state=/var/lib/esc-sim
mkdir -p "$state"
chmod 0755 "$state"
if ! id "$user" >/dev/null 2>&1; then
  log "creating local test user $user"
  useradd --create-home --home-dir /home/$user --shell /bin/bash "$user"
fi
pwfile="$state/$user.password"
if [ ! -s "$pwfile" ]; then
  umask 077
  # 24 random alphanumerics; generated here, never committed anywhere.
  # (cut reads all its input, so no stage of the pipe dies of SIGPIPE under pipefail)
  head -c 96 /dev/urandom | base64 -w0 | tr -dc 'A-Za-z0-9' | cut -c1-24 >"$pwfile"
  chmod 0600 "$pwfile"
fi
# Setting it again is cheap and repairs an account whose password was changed by hand.
printf '%s:%s\n' "$user" "$(cat "$pwfile")" | chpasswd
# An account whose password is expired or locked cannot log in; make sure it is neither.
usermod -U "$user" 2>/dev/null || true
chage -M -1 -E -1 "$user"

log "ready: $(/usr/sbin/sshd -V 2>&1 | head -1), user $user"
