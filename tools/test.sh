#!/usr/bin/env bash
# The test command of the README: installs what the tests need (idempotent, cached), then runs
# every test of the workspace against the real parts — a Kubernetes control plane and node built
# here, simulated ESC nodes behind OpenSSH sshd, the operator image run by containerd.
#
#   tools/test.sh [extra cargo test arguments, e.g. a test name filter]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."

"$here/setup.sh"
exec cargo test --workspace --locked "$@"
