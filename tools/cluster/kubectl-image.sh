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

LOG_PREFIX=kubectl-image
# shellcheck source=../lib.sh
. "$here/../lib.sh"

exit_if_cached "$out" "$out_dir/.kubectl.lock"
bin_dir=$("$here/build.sh" control-plane | tail -n1)
need_apt buildah

# kubectl is built with CGO_ENABLED=0: static, needs nothing else. HOME for its cache dir.
scratch_image_archive "$IMAGE" "$out" "$bin_dir/kubectl" 65532:65532 --env HOME=/tmp
echo "$out"
