//! What a test asks to start ([`ClusterOptions`]) and how long the start took ([`StartTimings`]).

use std::time::Duration;

/// What to start.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Start a real node (containerd + kubelet, named `localhost`) and wait until it is Ready.
    /// Only one node runs on a machine at a time: starting one waits for a file lock.
    pub with_node: bool,
    /// Start kube-controller-manager (namespaces get their `default` ServiceAccount and
    /// `kube-root-ca.crt`, Jobs get Pods, namespaces are finalized).
    pub with_controller_manager: bool,
    /// Start kube-scheduler (Pods get bound to the node).
    pub with_scheduler: bool,
    /// Have kube-apiserver write an audit log of every request (see
    /// [`TestCluster::audit_log`](super::TestCluster::audit_log)).
    pub audit_log: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            with_node: false,
            with_controller_manager: true,
            with_scheduler: true,
            audit_log: false,
        }
    }
}

impl ClusterOptions {
    /// Control plane only (etcd, kube-apiserver, kube-controller-manager, kube-scheduler).
    pub fn control_plane() -> Self {
        Self::default()
    }

    /// Control plane and a Ready node.
    pub fn with_node() -> Self {
        Self {
            with_node: true,
            ..Self::default()
        }
    }
}

/// How long the start took.
#[derive(Clone, Copy, Debug)]
pub struct StartTimings {
    /// From the start (binaries resolved, node lock held) until `/readyz` answered `ok`.
    pub control_plane_ready: Duration,
    /// From the start until the node was Ready (includes the control plane).
    pub node_ready: Option<Duration>,
}
