#!/usr/bin/env bash
# Builds the real Kubernetes parts the tests and the demo run on, from Go modules, cached by version.
# Idempotent: when every binary of a version is in the cache, it returns at once without calling `go`.
#
#   tools/cluster/build.sh            build (or reuse) everything, print the bin dir
#   ESC_CACHE_DIR=...                 cache root (default ~/.cache/esc-operator)
#
# Why wrapper modules: k8s.io/kubernetes replaces its staging modules with ./staging paths, so
# `go install k8s.io/kubernetes/cmd/...@v` cannot work. A wrapper module requires it and replaces
# each staging module with its published v0.X release; the list comes from upstream's own go.mod.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.7.3}
CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.4.2}
RUNC_VERSION=${RUNC_VERSION:-v1.5.3}

here=$(cd "$(dirname "$0")" && pwd)
LOG_PREFIX=cluster-build
# shellcheck source=../lib.sh
. "$here/../lib.sh"
cache_root=${ESC_CACHE_DIR:-$HOME/.cache/esc-operator}
bin_dir="$cache_root/k8s-$K8S_VERSION/bin"
work_dir="$cache_root/k8s-$K8S_VERSION/work"
mkdir -p "$bin_dir" "$work_dir"

k8s_bins=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
all_bins=("${k8s_bins[@]}" etcd containerd containerd-shim-runc-v2 ctr runc)

missing() {
  local b
  for b in "$@"; do [ -x "$bin_dir/$b" ] || { echo "$b"; return; }; done
}

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod

build_k8s() {
  [ -z "$(missing "${k8s_bins[@]}")" ] && return
  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  local staging=v0.${K8S_VERSION#v1.}
  local mod="$work_dir/k8s-wrapper"
  mkdir -p "$mod"
  log "resolving k8s.io/kubernetes@$K8S_VERSION"
  local upstream_gomod
  upstream_gomod=$(cd "$mod" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  local go_line
  go_line=$(grep -m1 '^go ' "$upstream_gomod")
  {
    echo "module esc-operator.local/k8s-wrapper"
    echo
    echo "$go_line"
    echo
    echo "godebug default=go1.${go_line#go 1.}" | sed 's/\.[0-9]*$//'
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    # Every `k8s.io/X => ./staging/src/k8s.io/X` of upstream becomes `k8s.io/X => k8s.io/X v0.N.P`.
    grep -E '^\s*k8s.io/[^ ]+ => \./staging/src/' "$upstream_gomod" \
      | awk -v v="$staging" '{print "replace " $1 " => " $1 " " v}'
  } > "$mod/go.mod"
  cat > "$mod/tools.go" <<GO
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubectl/pkg/cmd"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  # Best effort: the `go build` below names whatever tidy could not resolve.
  (cd "$mod" && { go mod tidy -e >/dev/null 2>&1 || true; })
  # Version ldflags are required: without them kube-apiserver panics in PodSecurity admission.
  local pkg=k8s.io/component-base/version
  local ld="-s -w -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitTreeState=clean"
  ld="$ld -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
  log "building ${k8s_bins[*]} (several minutes on 2 cores)"
  (cd "$mod" && go build -trimpath -ldflags "$ld" -o "$work_dir/out/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kubectl)
  local b
  for b in "${k8s_bins[@]}"; do install -m 0755 "$work_dir/out/$b" "$bin_dir/$b"; done
}

build_etcd() {
  [ -z "$(missing etcd)" ] && return
  local mod="$work_dir/etcd-wrapper"
  mkdir -p "$mod"
  log "building etcd $ETCD_VERSION"
  local upstream_gomod
  upstream_gomod=$(cd "$mod" && go mod download -json "go.etcd.io/etcd/server/v3@$ETCD_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module esc-operator.local/etcd-wrapper"
    echo
    grep -m1 '^go ' "$upstream_gomod"
    echo
    echo "require go.etcd.io/etcd/server/v3 $ETCD_VERSION"
    # etcd's module replaces its sibling modules with ../ paths; use their releases instead.
    grep -E '^\s*go.etcd.io/etcd/[^ ]+ => \.\./' "$upstream_gomod" \
      | awk -v v="$ETCD_VERSION" '{print "replace " $1 " => " $1 " " v}'
  } > "$mod/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > "$mod/tools.go"
  # Best effort: the `go build` below names whatever tidy could not resolve.
  (cd "$mod" && { go mod tidy -e >/dev/null 2>&1 || true; })
  (cd "$mod" && go build -trimpath -ldflags "-s -w" -o "$bin_dir/etcd" go.etcd.io/etcd/server/v3)
}

build_containerd() {
  [ -z "$(missing containerd containerd-shim-runc-v2 ctr)" ] && return
  log "building containerd $CONTAINERD_VERSION"
  GOBIN="$bin_dir" go install -trimpath -ldflags "-s -w" -tags "no_btrfs no_devmapper no_zfs" \
    "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD_VERSION"
}

build_runc() {
  [ -z "$(missing runc)" ] && return
  need_apt libseccomp-dev pkg-config gcc
  log "building runc $RUNC_VERSION"
  # Debian's runc 1.1.5 fails with containerd 2.4; build the pinned one with seccomp.
  CGO_ENABLED=1 GOBIN="$bin_dir" go install -trimpath -ldflags "-s -w" -tags seccomp \
    "github.com/opencontainers/runc@$RUNC_VERSION"
}

# The node's CNI plugins (bridge, host-local, loopback) come from Debian, in /usr/lib/cni.
# The test bed's node teardown uses ip (iproute2) and pgrep (procps).
need_node_packages() {
  command -v ip >/dev/null || need_apt iproute2
  command -v pgrep >/dev/null || need_apt procps
  [ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] && [ -x /usr/lib/cni/loopback ] && return
  need_apt containernetworking-plugins
}

only=${1:-all}
if [ -z "$(missing "${all_bins[@]}")" ]; then
  [ "$only" = all ] && need_node_packages
  echo "$bin_dir"
  exit 0
fi

# Concurrent callers (parallel test binaries on a cold machine) wait for one build.
exec 9>"$cache_root/k8s-$K8S_VERSION/.build.lock"
flock 9

case "$only" in
  all) build_etcd; build_k8s; build_containerd; build_runc; need_node_packages ;;
  control-plane) build_etcd; build_k8s ;;
  *) echo "usage: $0 [all|control-plane]" >&2; exit 2 ;;
esac
echo "$bin_dir"
