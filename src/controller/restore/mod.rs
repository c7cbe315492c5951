//! The EscRestore reconciler: gather what [`crate::plan::restore`] needs (the EscCluster, the
//! queue on it, the resolved source and its Secrets, the last action's outcome), store the
//! status it decides *before* acting, carry out its one action, and repeat until the plan
//! waits.
//!
//! The actions are short: escadm commands run detached on the nodes and are only started or
//! polled here ([`crate::controller::remote`]); the staging runs in a mover Job
//! (`esc-operator mover stage`), created once and adopted by name after a restart.
//!
//! A finalizer holds deletion: before the first node is stopped, deleting cancels the run
//! (cleanup, Job stopped); from then on the run goes on to its end — services restarted — and
//! only then lets the object go.

pub mod source;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use self::source::Source;
use super::backup::cluster_view;
use super::backup::job::{JobState, MoverJobInput, RESTORE_LABEL, job_state, mover_job};
use super::backup::request::mover_ssh;
use super::backup::target::mover_secrets;
use super::context::Context;
use super::jobs;
use super::metrics::ClusterLabels;
use super::remote::Remote;
use super::runs::RunRef;
use super::{back_off, instrumented, readable};
use crate::api::{EscCluster, EscRestore, EscRestoreStatus, HolderKind, RunPhase};
use crate::mover::sink::{self, ArtifactHead};
use crate::mover::{MoverReport, REQUEST_VERSION, StageNode, StageRequest};
use crate::plan::report::Problem;
use crate::plan::restore::{
    ArtifactFacts, NodesView, Observed, PreflightFacts, RestoreAction, RestoreInput, RestorePlan,
    StageView, current_step, finished, plan,
};

/// The controller's name in metrics, logs and Events.
pub const CONTROLLER: &str = "escrestore";
/// Held on every EscRestore: deletion waits until the run cancelled or ended.
pub const FINALIZER: &str = "escoperator.dev/restore";
/// At most this many plan → act rounds per reconcile.
const ROUNDS: usize = 24;
/// How long the operator waits to reach an scp source.
const SFTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing EscRestore {object}: {source}")]
    Write {
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("EscRestore {object}: {message}")]
    Pending { object: String, message: String },
}

impl Error {
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Write { .. } => "Write",
            Error::Pending { .. } => "Pending",
        }
    }
}

/// One reconcile of one EscRestore.
pub async fn reconcile(
    guarded: Arc<DeserializeGuard<EscRestore>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    instrumented(CONTROLLER, &*guarded, &ctx, async {
        let Some(restore) = readable(&guarded, &ctx).await else {
            return Ok(Action::await_change());
        };
        let deleting = restore.meta().deletion_timestamp.is_some();
        if !deleting && !restore.finalizers().iter().any(|f| f == FINALIZER) {
            set_finalizers(&ctx, &restore, {
                let mut f = restore.finalizers().to_vec();
                f.push(FINALIZER.to_owned());
                f
            })
            .await?;
        }
        let action = drive(&restore, &ctx, deleting).await?;
        if deleting {
            return finalize(&restore, &ctx).await;
        }
        Ok(action)
    })
    .await
}

/// After a failed reconcile: back off this object alone.
pub fn error_policy(
    guarded: Arc<DeserializeGuard<EscRestore>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    back_off(
        CONTROLLER,
        &*guarded,
        error.reason(),
        error,
        &ctx,
        Duration::from_secs(60),
    )
}

fn object(restore: &EscRestore) -> String {
    format!(
        "{}/{}",
        restore.namespace().unwrap_or_default(),
        restore.name_any()
    )
}

use super::now;

async fn set_finalizers(
    ctx: &Context,
    restore: &EscRestore,
    finalizers: Vec<String>,
) -> Result<(), Error> {
    super::set_finalizers(&ctx.client, restore, finalizers)
        .await
        .map_err(|source| Error::Write {
            object: object(restore),
            source,
        })
}

/// Deleting: once the run is over, let the object go.
async fn finalize(restore: &EscRestore, ctx: &Context) -> Result<Action, Error> {
    if !restore.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    if !finished(&stored_status(restore, ctx)) {
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    let finalizers: Vec<String> = restore
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    set_finalizers(ctx, restore, finalizers).await?;
    ctx.forget(restore);
    Ok(Action::await_change())
}

fn stored_status(restore: &EscRestore, ctx: &Context) -> EscRestoreStatus {
    ctx.last_written(restore)
        .unwrap_or_else(|| restore.status.clone().unwrap_or_default())
}

fn queue_position(ctx: &Context, restore: &EscRestore) -> u32 {
    ctx.runs.queue_position(&RunRef::of_restore(restore))
}

/// Plan, store, act, until the plan waits.
async fn drive(restore: &EscRestore, ctx: &Context, deleting: bool) -> Result<Action, Error> {
    let namespace = restore.namespace().unwrap_or_default();
    let name = restore.name_any();
    let uid = restore.uid().unwrap_or_default();
    let mut previous = stored_status(restore, ctx);
    if finished(&previous) {
        return Ok(Action::await_change());
    }
    let clusters: Api<EscCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    let cluster = clusters
        .get_opt(&restore.spec.cluster_ref.name)
        .await
        .map_err(|e| Error::Pending {
            object: object(restore),
            message: format!("reading EscCluster {}: {e}", restore.spec.cluster_ref.name),
        })?;
    let view = cluster
        .as_ref()
        .map(|c| cluster_view(c, HolderKind::EscRestore, &name));
    let queue = queue_position(ctx, restore);
    let in_preflight = matches!(
        current_step(&previous),
        None | Some(crate::api::RestoreStep::Preflight)
    );
    // The preflight judges the source; the staging resolves it again only when it creates its
    // Job (not at every look at a running Job).
    let source = if in_preflight && queue == 0 && !deleting {
        source::resolve(&ctx.client, &namespace, &restore.spec, &ctx.options.mover).await
    } else {
        Err(Problem::new(
            "NotNeeded",
            "the source is only read by the preflight and to create the staging Job",
        ))
    };
    let secrets = match (&cluster, in_preflight && queue == 0 && !deleting) {
        (Some(cluster), true) => ctx
            .secrets
            .load(&ctx.client, &namespace, &cluster.spec.ssh)
            .await
            .map(|_| ()),
        _ => Ok(()),
    };
    let mut observed = None;
    let mut remote = Remote::new(ctx, cluster.as_ref());
    for _ in 0..ROUNDS {
        let input = RestoreInput {
            namespace: &namespace,
            name: &name,
            uid: &uid,
            run_base: &ctx.options.run_directory,
            spec: &restore.spec,
            generation: restore.meta().generation,
            previous: &previous,
            cluster: view.clone(),
            source: source
                .as_ref()
                .map(|s| s.view.clone())
                .map_err(Clone::clone),
            queue_position: queue,
            secrets: secrets.clone(),
            deleting,
            observed: observed.take(),
            now: now(),
        };
        let RestorePlan {
            status,
            action,
            events,
            requeue,
        } = plan(&input);
        write_status(ctx, restore, &previous, &status).await?;
        ctx.record_written(restore, &status);
        if !finished(&previous) && finished(&status) {
            record_outcome(ctx, restore, &status);
        }
        for e in &events {
            ctx.publish(restore, e.warning, &e.reason, &e.note, "Restore")
                .await;
        }
        previous = status;
        let Some(action) = action else {
            return Ok(match requeue {
                Some(after) => Action::requeue(after),
                None => Action::await_change(),
            });
        };
        observed = Some(match action {
            RestoreAction::Inspect { restore_node } => Observed::Preflight(
                inspect(
                    ctx,
                    &namespace,
                    cluster.as_ref(),
                    &source,
                    &restore_node,
                    &mut remote,
                )
                .await,
            ),
            RestoreAction::Stage {
                name: job_name,
                node,
                path,
            } => Observed::Job(
                stage(
                    ctx,
                    restore,
                    cluster.as_ref(),
                    &previous,
                    &job_name,
                    &node,
                    &path,
                )
                .await,
            ),
            RestoreAction::Remote {
                node,
                run,
                command,
                file,
            } => Observed::Remote(remote.run(&node, &run, command, file.as_deref()).await),
            RestoreAction::CheckNodes => {
                Observed::Nodes(check_nodes(cluster.as_ref(), &previous, &mut remote).await)
            }
            RestoreAction::Record { record } => {
                let mut failures = Vec::new();
                for n in cluster.iter().flat_map(|c| c.spec.nodes.iter()) {
                    if let Err(p) = remote.record(&n.name, &record).await {
                        failures.push(p.message);
                    }
                }
                Observed::Recorded(if failures.is_empty() {
                    Ok(())
                } else {
                    Err(Problem::new("HistoryNotWritten", failures.join("; ")))
                })
            }
            RestoreAction::Cleanup { files, stop_job } => {
                if let Some(job_name) = stop_job {
                    let uid = restore.uid().unwrap_or_default();
                    jobs::stop_job(ctx, &namespace, &job_name, &uid).await;
                }
                Observed::Cleaned(remote.cleanup(&files).await)
            }
        });
    }
    Ok(Action::requeue(Duration::from_secs(1)))
}

/// The preflight's reads: the artifact's head from the store, every node's status and restore
/// history, the free space on the restore node. Nothing changes.
async fn inspect(
    ctx: &Context,
    namespace: &str,
    cluster: Option<&EscCluster>,
    source: &Result<Source, Problem>,
    restore_node: &str,
    remote: &mut Remote<'_>,
) -> PreflightFacts {
    let artifact = match source {
        Ok(source) => read_artifact(ctx, namespace, source).await,
        Err(p) => Err(p.clone()),
    };
    let mut nodes = Vec::new();
    let mut history = Ok(Vec::new());
    for n in cluster.iter().flat_map(|c| c.spec.nodes.iter()) {
        nodes.push(remote.status(&n.name).await);
        match (remote.history(&n.name).await, &mut history) {
            (Ok(records), Ok(all)) => all.extend(records),
            (Err(p), Ok(_)) => history = Err(p),
            (_, Err(_)) => {}
        }
    }
    PreflightFacts {
        artifact,
        history,
        free_bytes: remote.free_space(restore_node).await,
        nodes,
    }
}

async fn read_artifact(
    ctx: &Context,
    namespace: &str,
    source: &Source,
) -> Result<ArtifactFacts, Problem> {
    let target = source::access(&ctx.client, namespace, source).await?;
    let ArtifactHead { manifest, stored } =
        sink::read_head(&target.sink, &target.access, SFTP_CONNECT_TIMEOUT)
            .await
            .map_err(|e| {
                Problem::new(
                    e.reason,
                    format!("reading {}: {}", source.view.uri, e.message),
                )
            })?;
    let database = manifest.database().ok_or_else(|| {
        Problem::new(
            "ArtifactMalformed",
            format!("{} holds no database member", source.view.uri),
        )
    })?;
    Ok(ArtifactFacts {
        size: stored.size,
        stored_sha256: stored.sha256.to_string(),
        esc_version: manifest.esc_version.to_string(),
        cluster: format!("{}/{}", manifest.cluster.namespace, manifest.cluster.name),
        created_at: manifest.created_at.clone(),
        database_size: database.size,
    })
}

/// Every node's `status --v`, and the mode from the planned master (or any running node).
async fn check_nodes(
    cluster: Option<&EscCluster>,
    status: &EscRestoreStatus,
    remote: &mut Remote<'_>,
) -> NodesView {
    let mut nodes = Vec::new();
    for n in cluster.iter().flat_map(|c| c.spec.nodes.iter()) {
        nodes.push(remote.status(&n.name).await);
    }
    let master = status
        .plan
        .iter()
        .find(|p| p.step == crate::api::RestoreStep::StopMaster)
        .and_then(|p| p.nodes.first().cloned());
    let asked = nodes
        .iter()
        .filter(|n| n.services == crate::api::ServicesState::Running)
        .map(|n| n.name.clone())
        .min_by_key(|n| Some(n) != master.as_ref());
    let op_mode = match asked {
        Some(node) => remote.op_mode(&node).await,
        None => None,
    };
    NodesView { nodes, op_mode }
}

/// Creates the staging Job if it does not exist, then reports what it does.
#[allow(clippy::too_many_arguments)]
async fn stage(
    ctx: &Context,
    restore: &EscRestore,
    cluster: Option<&EscCluster>,
    status: &EscRestoreStatus,
    job_name: &str,
    node: &str,
    path: &str,
) -> StageView {
    let namespace = restore.namespace().unwrap_or_default();
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    match jobs_api.get_opt(job_name).await {
        Ok(Some(job)) => {
            let pod = jobs::job_pod(ctx, &namespace, &job).await;
            let uid = restore.uid().unwrap_or_default();
            match job_state(&job, pod.as_ref(), &uid) {
                JobState::Running => StageView::Running(match &pod {
                    Some(pod) => jobs::progress(ctx, &namespace, &uid, pod).await,
                    None => None,
                }),
                JobState::Failed(p) => StageView::Failed(p),
                JobState::Completed(MoverReport::Staged {
                    staged_path,
                    artifact_sha256,
                    ..
                }) => StageView::Staged {
                    path: staged_path,
                    artifact_sha256: artifact_sha256.to_string(),
                },
                JobState::Completed(_) => StageView::Failed(Problem::new(
                    "MoverReportUnreadable",
                    "the staging Job completed with a report that is not a staging report",
                )),
            }
        }
        Ok(None) => {
            let created = async {
                let cluster = cluster
                    .ok_or_else(|| Problem::new("ClusterNotFound", "the EscCluster is gone"))?;
                let source =
                    source::resolve(&ctx.client, &namespace, &restore.spec, &ctx.options.mover)
                        .await?;
                create_stage_job(ctx, restore, cluster, &source, status, job_name, node, path).await
            }
            .await;
            match created {
                Ok(()) => StageView::Running(None),
                Err(p) => StageView::Failed(p),
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, job = job_name, "reading the staging Job");
            StageView::Running(None)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn create_stage_job(
    ctx: &Context,
    restore: &EscRestore,
    cluster: &EscCluster,
    source: &Source,
    status: &EscRestoreStatus,
    job_name: &str,
    node: &str,
    path: &str,
) -> Result<(), Problem> {
    let namespace = restore.namespace().unwrap_or_default();
    let n = cluster
        .spec
        .nodes
        .iter()
        .find(|n| n.name == node)
        .ok_or_else(|| {
            Problem::new(
                "NodeUnknown",
                format!("node {node} is not in the EscCluster's spec.nodes"),
            )
        })?;
    // The checksum the preflight accepted (stored in status), not one read again now.
    let sha256 = status
        .run
        .artifact
        .as_ref()
        .map(|a| a.sha256.clone())
        .unwrap_or_else(|| source.view.sha256.clone());
    let request = StageRequest {
        version: REQUEST_VERSION,
        store: source.sink.clone(),
        sha256,
        ssh: mover_ssh(cluster),
        node: StageNode {
            name: node.to_owned(),
            host: n.host.clone(),
            port: n.port,
        },
        staged_path: path.to_owned(),
        progress_interval_seconds: 5,
    };
    request
        .validate()
        .map_err(|e| Problem::new("MoverRequestInvalid", e.to_string()))?;
    let request_json = request
        .to_json()
        .map_err(|e| Problem::new("MoverRequestInvalid", e.to_string()))?;
    let image = jobs::mover_image(ctx)?;
    let owner = restore
        .controller_owner_ref(&())
        .ok_or_else(|| Problem::new("OwnerUnknown", "the EscRestore has no uid yet"))?;
    let secrets = mover_secrets(cluster, &source.target);
    let name = restore.name_any();
    let job = mover_job(&MoverJobInput {
        name: job_name,
        namespace: &namespace,
        owner,
        run_label: (RESTORE_LABEL, &name),
        command: "stage",
        image: &image,
        request_json,
        secrets: &secrets,
        template: &ctx.options.mover,
    });
    jobs::create(ctx, &namespace, &job).await
}

async fn write_status(
    ctx: &Context,
    restore: &EscRestore,
    stored: &EscRestoreStatus,
    status: &EscRestoreStatus,
) -> Result<(), Error> {
    if stored == status {
        return Ok(());
    }
    super::apply_status(&ctx.client, restore, status)
        .await
        .map_err(|source| Error::Write {
            object: object(restore),
            source,
        })
}

fn record_outcome(ctx: &Context, restore: &EscRestore, status: &EscRestoreStatus) {
    let seconds = match (&status.run.started_at, &status.run.completed_at) {
        (Some(a), Some(b)) => (b.0.as_second() - a.0.as_second()).max(0) as f64,
        _ => 0.0,
    };
    let succeeded = status.run.phase == Some(RunPhase::Succeeded);
    let reason = status
        .run
        .failure
        .as_ref()
        .map(|f| f.reason.as_str())
        .unwrap_or("");
    ctx.metrics.restore_finished(
        &ClusterLabels {
            namespace: restore.namespace().unwrap_or_default(),
            name: restore.spec.cluster_ref.name.clone(),
        },
        succeeded,
        reason,
        seconds,
    );
}
