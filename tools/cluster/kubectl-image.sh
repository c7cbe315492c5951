#!/usr/bin/env bash
# Builds `localhost/esc-testbed-kubectl:<k8s version>`: the test bed's own static kubectl in an
# image FROM scratch, as an OCI archive, cached by version; prints the archive's path.
# Tests run it in hostNetwork pods to prove in-cluster access (ServiceAccount token, the
# kube-root-ca.crt CA, KUBERNETES_SERVICE_HOST=127.0.0.1) and RBAC from inside a pod.
#
#   tools/cluster/kubectl-image.sh    build (or reuse) the archive, print its path
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
K8S_VERSION=${K8S_VERSION:-v1.37.2}
IMAGE=localhost/esc-testbed-kubectl:$K8S_VERSION

cache_root=${ESC_CACHE_DIR:-$HOME/.cache/esc-operator}
out_dir="$cache_root/k8s-$K8S_VERSION/images"
out="$out_dir/esc-testbed-kubectl-$K8S_VERSION.oci.tar"

if [ -s "$out" ]; then
  echo "$out"
  exit 0
fi
bin_dir=$("$here/build.sh" control-plane | tail -n1)
mkdir -p "$out_dir"
exec 9>"$out_dir/.kubectl.lock"
flock 9
if [ -s "$out" ]; then
  echo "$out"
  exit 0
fi
command -v buildah >/dev/null || {
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah >/dev/null
}

work=$(mktemp -d /tmp/esc-kubectl-image.XXXXXX)
storage=(--root "$work/storage" --runroot "$work/run" --storage-driver vfs)
ctr=""
cleanup() {
  [ -n "$ctr" ] && buildah "${storage[@]}" rm "$ctr" >/dev/null 2>&1 || true
  buildah "${storage[@]}" rmi --all --force >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

printf '[kubectl-image] building %s\n' "$IMAGE" >&2
ctr=$(buildah "${storage[@]}" from scratch)
buildah "${storage[@]}" copy "$ctr" "$bin_dir/kubectl" /kubectl >/dev/null
# kubectl is built with CGO_ENABLED=0: static, needs nothing else. HOME for its cache dir.
buildah "${storage[@]}" config --entrypoint '["/kubectl"]' --user 65532:65532 \
  --env HOME=/tmp --os linux --arch amd64 "$ctr"
buildah "${storage[@]}" commit --quiet "$ctr" "$IMAGE" >/dev/null
buildah "${storage[@]}" push --quiet "$IMAGE" "oci-archive:$out.tmp:$IMAGE"
mv "$out.tmp" "$out"
echo "$out"
