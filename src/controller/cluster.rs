//! The EscCluster reconciler: dereference the Secrets, probe every node over SSH, let
//! [`crate::plan::cluster`] decide, store the status (only when it changed), send at most one
//! `op_mode set`, publish Events, schedule the next probe.
//!
//! Deletion goes through a finalizer: when the operator holds ESC in maintenance it returns ESC
//! to operation before the object goes; when ESC cannot be reached for `release_timeout` it lets
//! go with a Warning Event rather than block the deletion forever.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::join_all;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Resource, ResourceExt};

use super::context::{Context, jitter};
use super::metrics::{ClusterInfoLabels, ClusterLabels};
use super::nodes::{cluster_key, problem, session_options, target, target_of};
use super::secrets::SshAccess;
use super::ssh_pool::NodeKey;
use super::{back_off, instrumented, readable};
use crate::api::{EscCluster, EscClusterStatus, OpMode as StatusMode};
use crate::esc::{DriverError, SessionOptions, SshTarget};
use crate::plan::cluster::{
    ActionOutcome, AnnotationRequest, ClusterInput, ClusterPlan, MAINTENANCE,
    MAINTENANCE_ANNOTATION, ModeAction, NodeAnswer, NodeProbe, PlannedEvent, Problem, REACHABLE,
    plan,
};
use crate::plan::conditions;

/// The controller's name in metrics, logs and Events.
pub const CONTROLLER: &str = "esccluster";
/// Held on every EscCluster, so deletion can return ESC to operation first.
pub const FINALIZER: &str = "escoperator.dev/release-maintenance";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing the status of EscCluster {object}: {source}")]
    WriteStatus {
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("the finalizer of EscCluster {object}: {message}")]
    Finalizer { object: String, message: String },
    #[error("EscCluster {object} is being deleted; returning ESC to operation first: {message}")]
    ReleasePending { object: String, message: String },
}

impl Error {
    /// Short and stable: a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::WriteStatus { .. } => "WriteStatus",
            Error::Finalizer { .. } => "Finalizer",
            Error::ReleasePending { .. } => "ReleasePending",
        }
    }
}

/// One reconcile of one EscCluster.
pub async fn reconcile(
    guarded: Arc<DeserializeGuard<EscCluster>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let namespace = guarded.namespace().unwrap_or_default();
    let name = guarded.name_any();
    instrumented(CONTROLLER, &*guarded, &ctx, async {
        let Some(cluster) = readable(&guarded, &ctx).await else {
            return Ok(Action::await_change());
        };
        let cluster = Arc::new(cluster);
        let api: Api<EscCluster> = Api::namespaced(ctx.client.clone(), &namespace);
        let object = format!("{namespace}/{name}");
        finalizer(&api, FINALIZER, cluster, |event| async {
            match event {
                FinalizerEvent::Apply(c) => apply(&c, &ctx).await,
                FinalizerEvent::Cleanup(c) => cleanup(&c, &ctx).await,
            }
        })
        .await
        .map_err(|e| match e {
            kube::runtime::finalizer::Error::ApplyFailed(e)
            | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
            other => Error::Finalizer {
                object,
                message: other.to_string(),
            },
        })
    })
    .await
}

/// After a failed reconcile: back off this object alone.
pub fn error_policy(
    guarded: Arc<DeserializeGuard<EscCluster>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    back_off(
        CONTROLLER,
        &*guarded,
        error.reason(),
        error,
        &ctx,
        Duration::from_secs(300),
    )
}

use super::now;

async fn apply(cluster: &EscCluster, ctx: &Context) -> Result<Action, Error> {
    let previous = stored_status(cluster, ctx);
    let annotation = AnnotationRequest::parse(
        cluster
            .annotations()
            .get(MAINTENANCE_ANNOTATION)
            .map(String::as_str),
    );
    let outcome = converge(cluster, ctx, &previous, annotation).await?;
    let next = if outcome.retry {
        ctx.backoff(cluster, outcome.next_probe)
    } else {
        ctx.reset_backoff(cluster);
        jitter(outcome.next_probe, 0.1)
    };
    Ok(Action::requeue(next))
}

/// Probe, plan, store, act, plan again, store, publish: the body shared by apply and cleanup.
async fn converge(
    cluster: &EscCluster,
    ctx: &Context,
    previous: &EscClusterStatus,
    annotation: AnnotationRequest,
) -> Result<ClusterPlan, Error> {
    let namespace = cluster.namespace().unwrap_or_default();
    let access = ctx
        .secrets
        .load(&ctx.client, &namespace, &cluster.spec.ssh)
        .await;
    let probes = match &access {
        Ok(access) => Ok(probe_all(cluster, ctx, access).await),
        Err(problem) => Err(problem.clone()),
    };
    let now = now();
    let mut input = ClusterInput {
        spec: &cluster.spec,
        generation: cluster.meta().generation,
        previous,
        annotation,
        other_requests: ctx.runs.holders(&namespace, &cluster.name_any()),
        probes,
        outcome: None,
        now,
    };
    let first = plan(&input);
    // Stored before acting: the holder is on record before ESC changes mode.
    write_status(ctx, cluster, previous, &first.status).await?;
    ctx.record_written(cluster, &first.status);
    let mut last = first.clone();
    if let (Some(action), Ok(access)) = (&first.action, &access) {
        let outcome = run_action(cluster, ctx, access, action).await;
        input.outcome = Some(outcome);
        last = plan(&input);
        write_status(ctx, cluster, &first.status, &last.status).await?;
        ctx.record_written(cluster, &last.status);
    }
    for PlannedEvent {
        warning,
        reason,
        note,
    } in &last.events
    {
        ctx.publish(cluster, *warning, reason, note, "Probe").await;
    }
    record_metrics(cluster, ctx, &last.status);
    Ok(last)
}

/// Writes `status` with server-side apply when it differs from what is stored.
async fn write_status(
    ctx: &Context,
    cluster: &EscCluster,
    stored: &EscClusterStatus,
    status: &EscClusterStatus,
) -> Result<(), Error> {
    if stored == status {
        return Ok(());
    }
    super::apply_status(&ctx.client, cluster, status)
        .await
        .map_err(|source| Error::WriteStatus {
            object: format!(
                "{}/{}",
                cluster.namespace().unwrap_or_default(),
                cluster.name_any()
            ),
            source,
        })
}

/// Probes every node at once: `op_mode show` and `status --v` over one connection each.
async fn probe_all(cluster: &EscCluster, ctx: &Context, access: &SshAccess) -> Vec<NodeProbe> {
    let key = cluster_key(cluster);
    let names: Vec<&str> = cluster.spec.nodes.iter().map(|n| n.name.as_str()).collect();
    // Nodes removed from the spec keep no connection.
    ctx.ssh.discard_cluster(&key, &names);
    let options = session_options(cluster);
    join_all(cluster.spec.nodes.iter().map(|n| {
        let node_key = NodeKey {
            cluster: key.clone(),
            node: n.name.clone(),
        };
        let target = target(cluster, n);
        let options = options.clone();
        async move {
            let result = probe_node(ctx, &node_key, &target, access, &options).await;
            NodeProbe {
                name: node_key.node,
                result,
            }
        }
    }))
    .await
}

async fn probe_node(
    ctx: &Context,
    key: &NodeKey,
    target: &SshTarget,
    access: &SshAccess,
    options: &SessionOptions,
) -> Result<NodeAnswer, Problem> {
    let node = ctx
        .ssh
        .node(key, target, access, options)
        .await
        .map_err(|e| problem(&e))?;
    let (mode, status) = tokio::join!(node.op_mode(), node.status());
    let broken =
        matches!(mode, Err(DriverError::Ssh(_))) || matches!(status, Err(DriverError::Ssh(_)));
    if broken {
        // A broken connection is reopened at the next probe.
        ctx.ssh.discard(key);
    }
    if let (Err(e @ DriverError::Ssh(_)), Err(DriverError::Ssh(_))) = (&mode, &status) {
        return Err(problem(e));
    }
    Ok(NodeAnswer {
        op_mode: mode.map_err(|e| problem(&e)),
        status: status.map_err(|e| problem(&e)),
    })
}

async fn run_action(
    cluster: &EscCluster,
    ctx: &Context,
    access: &SshAccess,
    action: &ModeAction,
) -> ActionOutcome {
    let Some(target) = target_of(cluster, action.node()) else {
        return ActionOutcome::Failed(
            action.clone(),
            Problem::new(
                "NodeUnknown",
                format!("node {} is not in spec.nodes", action.node()),
            ),
        );
    };
    let key = NodeKey {
        cluster: cluster_key(cluster),
        node: action.node().to_owned(),
    };
    let result = async {
        let node = ctx.ssh.node(&key, &target, access, &session_options(cluster)).await?;
        let ipt_check = matches!(action, ModeAction::Enter { ipt_check: true, .. });
        tracing::info!(node = action.node(), mode = %action.target_mode(), ipt_check, "op_mode set");
        node.set_op_mode(action.target_mode(), ipt_check).await
    }
    .await;
    match result {
        Ok(_) => ActionOutcome::Done(action.clone()),
        Err(e) => {
            if matches!(e, DriverError::Ssh(_)) {
                ctx.ssh.discard(&key);
            }
            tracing::warn!(node = action.node(), error = %e, "op_mode set failed");
            ActionOutcome::Failed(action.clone(), problem(&e))
        }
    }
}

/// What the API server holds: this process's last write when it made one (the cached copy may
/// predate it).
fn stored_status(cluster: &EscCluster, ctx: &Context) -> EscClusterStatus {
    ctx.last_written(cluster)
        .unwrap_or_else(|| cluster.status.clone().unwrap_or_default())
}

/// Deleting: return ESC to operation when the operator holds it in maintenance, then let go.
async fn cleanup(cluster: &EscCluster, ctx: &Context) -> Result<Action, Error> {
    let key = cluster_key(cluster);
    let previous = stored_status(cluster, ctx);
    let release = |ctx: &Context| {
        ctx.ssh.discard_cluster(&key, &[]);
        ctx.metrics.cluster_deleted(&labels(cluster));
        ctx.forget(cluster);
    };
    if previous.maintenance_holders.is_empty() {
        release(ctx);
        return Ok(Action::await_change());
    }
    // No holder is wanted any more: the plan returns ESC to operation (or says why it cannot).
    let outcome = converge(cluster, ctx, &previous, AnnotationRequest::Operation).await?;
    if outcome.status.maintenance_holders.is_empty() {
        release(ctx);
        return Ok(Action::await_change());
    }
    let waited = cluster
        .meta()
        .deletion_timestamp
        .as_ref()
        .map(|t| Timestamp::now().duration_since(t.0))
        .and_then(|d| Duration::try_from(d).ok())
        .unwrap_or_default();
    let why = conditions::find(&outcome.status.conditions, MAINTENANCE)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    if waited >= ctx.options.release_timeout {
        ctx.publish(
            cluster,
            true,
            "ReleaseTimedOut",
            &format!(
                "deleted while the operator held ESC in maintenance, and ESC could not be returned \
                 to operation within {:?} ({why}); letting go: run `escadm op_mode set \
                 --mode=operation` on the MASTER by hand",
                ctx.options.release_timeout
            ),
            "Delete",
        )
        .await;
        release(ctx);
        return Ok(Action::await_change());
    }
    Err(Error::ReleasePending {
        object: key,
        message: why,
    })
}

fn labels(cluster: &EscCluster) -> ClusterLabels {
    ClusterLabels {
        namespace: cluster.namespace().unwrap_or_default(),
        name: cluster.name_any(),
    }
}

fn record_metrics(cluster: &EscCluster, ctx: &Context, status: &EscClusterStatus) {
    let cluster_labels = labels(cluster);
    let info = ClusterInfoLabels {
        namespace: cluster_labels.namespace.clone(),
        name: cluster_labels.name.clone(),
        topology: format!("{:?}", cluster.spec.topology),
        version: status
            .nodes
            .iter()
            .find_map(|n| n.esc_version.clone())
            .unwrap_or_default(),
        master: status.master.clone().unwrap_or_default(),
    };
    let reachable = conditions::is_true(&status.conditions, REACHABLE);
    let since = (status.op_mode == Some(StatusMode::Maintenance))
        .then(|| conditions::find(&status.conditions, MAINTENANCE))
        .flatten()
        .map(|c| SystemTime::from(c.last_transition_time.0));
    ctx.metrics
        .cluster_observed(&cluster_labels, info, reachable, since);
}
