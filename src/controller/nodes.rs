//! Reaching an EscCluster's nodes: the SSH target and session options of each node, the key of
//! its pooled connection, and driver errors as status problems. Shared by every controller that
//! talks to ESC.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;

use super::context::Context;
use super::secrets::SshAccess;
use super::ssh_pool::NodeKey;
use crate::api::{EscCluster, EscNodeSpec};
use crate::esc::{DriverError, EscNode, SessionOptions, SshTarget};
use crate::plan::report::Problem;

/// The pooled connection to node `name` of `cluster`, and its pool key (to discard it when it
/// breaks).
pub async fn connect(
    ctx: &Context,
    cluster: &EscCluster,
    access: &SshAccess,
    name: &str,
) -> Result<(NodeKey, Arc<EscNode>), Problem> {
    let Some(target) = target_of(cluster, name) else {
        return Err(Problem::new(
            "NodeUnknown",
            format!("node {name} is not in the EscCluster's spec.nodes"),
        ));
    };
    let key = NodeKey {
        cluster: cluster_key(cluster),
        node: name.to_owned(),
    };
    let node = ctx
        .ssh
        .node(&key, &target, access, &session_options(cluster))
        .await
        .map_err(|e| problem(&e))?;
    Ok((key, node))
}

/// `namespace/name`: the pool's key for a cluster's connections.
pub fn cluster_key(cluster: &EscCluster) -> String {
    format!(
        "{}/{}",
        cluster.namespace().unwrap_or_default(),
        cluster.name_any()
    )
}

pub fn session_options(cluster: &EscCluster) -> SessionOptions {
    let timeout: Duration = cluster.spec.ssh.connect_timeout.into();
    SessionOptions {
        connect_timeout: timeout,
        auth_timeout: timeout,
        sudo: cluster.spec.ssh.sudo,
        ..SessionOptions::default()
    }
}

pub fn target_of(cluster: &EscCluster, node: &str) -> Option<SshTarget> {
    let spec = cluster.spec.nodes.iter().find(|n| n.name == node)?;
    Some(target(cluster, spec))
}

pub fn target(cluster: &EscCluster, node: &EscNodeSpec) -> SshTarget {
    SshTarget::new(node.host.clone(), node.port, cluster.spec.ssh.user.clone())
}

/// A driver error as a condition reason and message.
pub fn problem(e: &DriverError) -> Problem {
    Problem::new(e.reason(), e.to_string())
}
