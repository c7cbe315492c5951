#!/usr/bin/env bash
# Lints the project's shell scripts with shellcheck: every script under tools/ and .ci/run.
# Installs Debian's shellcheck when it is missing (idempotent; a warm run calls no apt).
#
#   tools/shellcheck.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
LOG_PREFIX=shellcheck
# shellcheck source=lib.sh
. "$here/lib.sh"

need_apt shellcheck

cd "$here/.."
scripts=()
while IFS= read -r -d '' f; do scripts+=("$f"); done \
  < <(find tools -type f -name '*.sh' -print0 | sort -z)
scripts+=(.ci/run)
# The scripts source tools/lib.sh through a path computed at run time; -x with -P SCRIPTDIR
# follows their `# shellcheck source=../lib.sh` from the script's own directory, so what lib.sh
# uses (LOG_PREFIX) counts as used and its functions are known.
shellcheck -x -P SCRIPTDIR "${scripts[@]}"
log "${#scripts[@]} scripts clean"
