#!/usr/bin/env bash
# Installs and builds everything the tests need, on a fresh machine or a warm one. Idempotent:
# every step checks what is already there and skips it (a warm run calls neither apt nor go).
#
#   tools/setup.sh
#
#   1. sshd and the simulator's password user   (tools/sshd/setup.sh: Debian openssh-server, sshpass)
#   2. the Kubernetes parts, cached by version  (tools/cluster/build.sh: etcd, kube-apiserver,
#      kube-controller-manager, kube-scheduler, kubelet, kubectl, containerd, runc, pause image)
#   3. the operator image as an OCI archive     (tools/image/build.sh: release binary, buildah)
#   4. the S3 servers, cached by version        (tools/s3/build.sh: minio, versitygw)
#   5. Helm 3 and Helm 4, cached by version      (tools/helm/build.sh: the chart's tests)
#   6. the Flux controllers, cached by version   (tools/flux/build.sh: the GitOps test)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

step() { printf '[setup] %s\n' "$*" >&2; }
timed() {
  local started=$SECONDS
  "$@"
  step "$(basename "$(dirname "$1")")/$(basename "$1") done in $((SECONDS - started)) s"
}

timed "$here/sshd/setup.sh"
timed "$here/cluster/build.sh" all >/dev/null
timed "$here/image/build.sh" >/dev/null
timed "$here/s3/build.sh" >/dev/null
timed "$here/helm/build.sh" >/dev/null
timed "$here/flux/build.sh" >/dev/null
