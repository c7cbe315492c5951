//! The EscBackup reconciler: gather what [`crate::plan::backup`] needs (the EscCluster, the
//! queue on it, the Secrets, the last action's outcome), store the status it decides *before*
//! acting, carry out its one action, and repeat until the plan waits.
//!
//! The actions are short: escadm commands run detached on the node and are only started or
//! polled here ([`remote`]); the transfer runs in the mover Job ([`job`]), created once and
//! adopted by name after a restart. The maintenance window is the EscCluster controller's to
//! open and close, from the holder this run's status implies (see [`crate::controller::runs`]).
//!
//! A finalizer makes deletion cancel a running backup (holder released, temporary files
//! removed, Job stopped) and, with `deletionPolicy: Delete`, remove the stored artifact.

pub mod job;
pub mod request;
pub mod target;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use self::job::{MoverJobInput, job_view, mover_job};
use self::request::{RequestInput, Roles, mover_request, sink};
use super::context::Context;
use super::jobs;
use super::metrics::{BackupOutcome, ClusterLabels};
use super::remote::Remote;
use super::runs::RunRef;
use super::{back_off, instrumented, readable};
use crate::api::{
    EscBackup, EscBackupStatus, EscCluster, HolderKind, OpMode, RunPhase, Time, Topology,
};
use crate::plan::backup::{
    BackupAction, BackupInput, BackupPlan, ClusterView, JobView, Observed, current_step, finished,
    plan,
};
use crate::plan::cluster::{DEGRADED, MAINTENANCE, READY};
use crate::plan::conditions;
use crate::plan::report::Problem;

/// The controller's name in metrics, logs and Events.
pub const CONTROLLER: &str = "escbackup";
/// Held on every EscBackup: deletion cancels the run and applies the deletion policy first.
pub const FINALIZER: &str = "escoperator.dev/backup";
/// At most this many plan → act rounds per reconcile (a run moves through at most a few steps
/// before it waits for something).
const ROUNDS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing EscBackup {object}: {source}")]
    Write {
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("EscBackup {object}: {message}")]
    Pending { object: String, message: String },
}

impl Error {
    /// Short and stable: a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Write { .. } => "Write",
            Error::Pending { .. } => "Pending",
        }
    }
}

/// One reconcile of one EscBackup.
pub async fn reconcile(
    guarded: Arc<DeserializeGuard<EscBackup>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    instrumented(CONTROLLER, &*guarded, &ctx, async {
        let Some(backup) = readable(&guarded, &ctx).await else {
            return Ok(Action::await_change());
        };
        let deleting = backup.meta().deletion_timestamp.is_some();
        if !deleting && !backup.finalizers().iter().any(|f| f == FINALIZER) {
            add_finalizer(&ctx, &backup).await?;
        }
        let action = drive(&backup, &ctx, deleting).await?;
        if deleting {
            return finalize(&backup, &ctx).await;
        }
        Ok(action)
    })
    .await
}

/// After a failed reconcile: back off this object alone.
pub fn error_policy(
    guarded: Arc<DeserializeGuard<EscBackup>>,
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

fn object(backup: &EscBackup) -> String {
    format!(
        "{}/{}",
        backup.namespace().unwrap_or_default(),
        backup.name_any()
    )
}

use super::now;

async fn add_finalizer(ctx: &Context, backup: &EscBackup) -> Result<(), Error> {
    let mut finalizers = backup.finalizers().to_vec();
    finalizers.push(FINALIZER.to_owned());
    set_finalizers(ctx, backup, finalizers).await
}

async fn set_finalizers(
    ctx: &Context,
    backup: &EscBackup,
    finalizers: Vec<String>,
) -> Result<(), Error> {
    super::set_finalizers(&ctx.client, backup, finalizers)
        .await
        .map_err(|source| Error::Write {
            object: object(backup),
            source,
        })
}

/// Deleting: once the run is over (cancelled through its cleanup, or finished before), apply
/// the deletion policy and let the object go.
async fn finalize(backup: &EscBackup, ctx: &Context) -> Result<Action, Error> {
    if !backup.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let status = stored_status(backup, ctx);
    if !finished(&status) {
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    if backup.spec.deletion_policy == crate::api::DeletionPolicy::Delete
        && let Some(artifact) = &status.artifact
    {
        let result = match load_target(ctx, backup).await {
            Ok(target) => target::delete(&target).await,
            Err(p) => Err(p),
        };
        match result {
            Ok(()) => {
                ctx.publish(
                    backup,
                    false,
                    "ArtifactDeleted",
                    &format!(
                        "deletionPolicy Delete: removed {} and its .sha256 sidecar",
                        artifact.uri
                    ),
                    "Delete",
                )
                .await;
            }
            Err(problem) => {
                let waited = backup
                    .meta()
                    .deletion_timestamp
                    .as_ref()
                    .and_then(|t| Duration::try_from(Timestamp::now().duration_since(t.0)).ok())
                    .unwrap_or_default();
                if waited < ctx.options.release_timeout {
                    return Err(Error::Pending {
                        object: object(backup),
                        message: format!(
                            "deletionPolicy Delete: removing {} failed, retrying: {}",
                            artifact.uri, problem.message
                        ),
                    });
                }
                ctx.publish(
                    backup,
                    true,
                    "ArtifactNotDeleted",
                    &format!(
                        "deletionPolicy Delete: {} could not be removed within {:?} ({}); letting \
                     go: remove it and its .sha256 sidecar by hand",
                        artifact.uri, ctx.options.release_timeout, problem.message
                    ),
                    "Delete",
                )
                .await;
            }
        }
    }
    let finalizers: Vec<String> = backup
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    set_finalizers(ctx, backup, finalizers).await?;
    ctx.forget(backup);
    Ok(Action::await_change())
}

/// What the API server holds: this process's last write when it made one.
fn stored_status(backup: &EscBackup, ctx: &Context) -> EscBackupStatus {
    ctx.last_written(backup)
        .unwrap_or_else(|| backup.status.clone().unwrap_or_default())
}

/// The EscCluster as the plan sees it.
pub(crate) fn cluster_view(cluster: &EscCluster, kind: HolderKind, run: &str) -> ClusterView {
    let status = cluster.status.clone().unwrap_or_default();
    let ready = conditions::find(&status.conditions, READY);
    let degraded = conditions::find(&status.conditions, DEGRADED)
        .filter(|c| c.status == "True")
        .map(|c| c.message.clone());
    let master = status.master.clone();
    let standby = (cluster.spec.topology == Topology::Ha)
        .then(|| {
            cluster
                .spec
                .nodes
                .iter()
                .map(|n| n.name.clone())
                .find(|n| Some(n) != master.as_ref())
        })
        .flatten()
        .filter(|_| master.is_some());
    let esc_version = status
        .nodes
        .iter()
        .find(|n| Some(&n.name) == master.as_ref())
        .and_then(|n| n.esc_version.clone());
    ClusterView {
        topology: cluster.spec.topology,
        ready: ready.is_some_and(|c| c.status == "True")
            && status.observed_generation == cluster.meta().generation,
        not_ready_message: ready
            .map(|c| c.message.clone())
            .unwrap_or_else(|| "the EscCluster has not been probed yet".to_owned()),
        degraded,
        master,
        standby,
        esc_version,
        lists_this_holder: status
            .maintenance_holders
            .iter()
            .any(|h| h.kind == kind && h.name == run),
        in_maintenance: status.op_mode == Some(OpMode::Maintenance),
        maintenance_message: conditions::find(&status.conditions, MAINTENANCE)
            .map(|c| c.message.clone())
            .unwrap_or_default(),
    }
}

/// How many runs on the same cluster (backups and restores) go before `backup`.
fn queue_position(ctx: &Context, backup: &EscBackup) -> u32 {
    ctx.runs.queue_position(&RunRef::of_backup(backup))
}

/// Plan, store, act, until the plan waits.
async fn drive(backup: &EscBackup, ctx: &Context, deleting: bool) -> Result<Action, Error> {
    let namespace = backup.namespace().unwrap_or_default();
    let name = backup.name_any();
    let uid = backup.uid().unwrap_or_default();
    let mut previous = stored_status(backup, ctx);
    if finished(&previous) {
        return Ok(Action::await_change());
    }
    let clusters: Api<EscCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    let cluster = clusters
        .get_opt(&backup.spec.cluster_ref.name)
        .await
        .map_err(|e| Error::Pending {
            object: object(backup),
            message: format!("reading EscCluster {}: {e}", backup.spec.cluster_ref.name),
        })?;
    let view = cluster
        .as_ref()
        .map(|c| cluster_view(c, HolderKind::EscBackup, &name));
    // The Secrets are checked where the preflight needs them; later steps read them as used.
    let needs_secrets = matches!(
        current_step(&previous),
        None | Some(crate::api::BackupStep::Preflight)
    ) && !deleting;
    let queue = queue_position(ctx, backup);
    // Only when it is this run's turn: a queued run would write a probe at every look.
    let secrets = match (&cluster, needs_secrets && queue == 0) {
        (Some(cluster), true) => {
            preflight_checks(
                ctx,
                cluster,
                backup,
                view.as_ref().and_then(|v| v.master.as_deref()),
            )
            .await
        }
        _ => Ok(()),
    };
    let mut observed = None;
    let mut remote = Remote::new(ctx, cluster.as_ref());
    for _ in 0..ROUNDS {
        let input = BackupInput {
            name: &name,
            uid: &uid,
            run_base: &ctx.options.run_directory,
            spec: &backup.spec,
            generation: backup.meta().generation,
            previous: &previous,
            cluster: view.clone(),
            queue_position: queue,
            secrets: secrets.clone(),
            deleting,
            observed: observed.take(),
            now: now(),
        };
        let BackupPlan {
            status,
            action,
            events,
            requeue,
        } = plan(&input);
        write_status(ctx, backup, &previous, &status).await?;
        ctx.record_written(backup, &status);
        if !finished(&previous) && finished(&status) {
            record_outcome(ctx, backup, &status);
        }
        for e in &events {
            ctx.publish(backup, e.warning, &e.reason, &e.note, "Backup")
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
            BackupAction::Remote { node, run, command } => {
                Observed::Remote(remote.run(&node, &run, command, None).await)
            }
            BackupAction::Mover { name: job_name } => Observed::Job(
                mover(ctx, backup, cluster.as_ref(), &previous, &view, &job_name).await,
            ),
            BackupAction::Verify => Observed::Stored(verify(ctx, backup).await),
            BackupAction::Cleanup {
                files,
                stop_mover,
                store_leftovers_since,
            } => {
                if let Some(job_name) = stop_mover {
                    let uid = backup.uid().unwrap_or_default();
                    jobs::stop_job(ctx, &namespace, &job_name, &uid).await;
                }
                let nodes = remote.cleanup(&files).await;
                let store = match store_leftovers_since {
                    Some(since) => remove_store_leftovers(ctx, backup, since).await,
                    None => Ok(()),
                };
                Observed::Cleaned(match (nodes, store) {
                    (Ok(()), Ok(())) => Ok(()),
                    (Err(p), Ok(())) | (Ok(()), Err(p)) => Err(p),
                    (Err(n), Err(s)) => Err(Problem::new(
                        n.reason,
                        format!("{}; and in the store: {}", n.message, s.message),
                    )),
                })
            }
        });
    }
    Ok(Action::requeue(Duration::from_secs(1)))
}

/// The metrics of a run that just ended.
fn record_outcome(ctx: &Context, backup: &EscBackup, status: &EscBackupStatus) {
    let seconds = |from: &Option<Time>, to: &Option<Time>| match (from, to) {
        (Some(a), Some(b)) => Some((b.0.as_second() - a.0.as_second()).max(0) as f64),
        _ => None,
    };
    let succeeded = status.phase == Some(RunPhase::Succeeded);
    let reason = status
        .failure
        .as_ref()
        .map(|f| f.reason.as_str())
        .unwrap_or("");
    let labels = ClusterLabels {
        namespace: backup.namespace().unwrap_or_default(),
        name: backup.spec.cluster_ref.name.clone(),
    };
    ctx.metrics.backup_finished(
        &labels,
        &BackupOutcome {
            succeeded,
            reason,
            seconds: seconds(&status.started_at, &status.completed_at).unwrap_or(0.0),
            bytes: status.artifact.as_ref().map(|a| a.size.max(0) as u64),
            maintenance_seconds: status
                .maintenance
                .as_ref()
                .and_then(|w| w.seconds)
                .map(|s| s as f64),
            finished_at: std::time::SystemTime::now(),
        },
    );
}

/// Every Secret the run needs exists with its keys (the cluster's SSH Secrets and the
/// target's), the target takes a file where the artifact will go, and the master has room for
/// the database backup under the run directory.
async fn preflight_checks(
    ctx: &Context,
    cluster: &EscCluster,
    backup: &EscBackup,
    master: Option<&str>,
) -> Result<(), Problem> {
    let namespace = backup.namespace().unwrap_or_default();
    ctx.secrets
        .load(&ctx.client, &namespace, &cluster.spec.ssh)
        .await?;
    // Reachable and writable, before anything is asked of ESC.
    target::probe(&load_target(ctx, backup).await?).await?;
    if let Some(master) = master {
        let free = Remote::new(ctx, Some(cluster)).free_space(master).await?;
        let needed = ctx.options.min_node_free_bytes;
        if free < needed {
            return Err(Problem::new(
                "InsufficientSpace",
                format!(
                    "{master} has {free} bytes free under {}, less than the {needed} a backup \
                     run needs there (--min-node-free-space-mib): free space on the node",
                    ctx.options.run_directory
                ),
            ));
        }
    }
    Ok(())
}

/// After a failed or cancelled transfer: what the mover could not remove itself because it was
/// killed (an OOM kill leaves an incomplete multipart upload or an SFTP temporary file).
async fn remove_store_leftovers(
    ctx: &Context,
    backup: &EscBackup,
    since: Time,
) -> Result<(), Problem> {
    let target = load_target(ctx, backup).await?;
    let removed = target::remove_leftovers(&target, since).await?;
    if removed > 0 {
        tracing::info!(
            object = %object(backup),
            removed,
            "removed what the mover left in the store"
        );
    }
    Ok(())
}

/// The backup's target and its credentials, read from its Secrets.
async fn load_target(ctx: &Context, backup: &EscBackup) -> Result<target::TargetAccess, Problem> {
    let namespace = backup.namespace().unwrap_or_default();
    let sink = sink(
        &backup.spec,
        &namespace,
        &backup.name_any(),
        &ctx.options.mover,
    )?;
    target::load(
        &ctx.client,
        &namespace,
        &backup.spec.target,
        "spec.target",
        &sink,
    )
    .await
}

async fn write_status(
    ctx: &Context,
    backup: &EscBackup,
    stored: &EscBackupStatus,
    status: &EscBackupStatus,
) -> Result<(), Error> {
    if stored == status {
        return Ok(());
    }
    super::apply_status(&ctx.client, backup, status)
        .await
        .map_err(|source| Error::Write {
            object: object(backup),
            source,
        })
}

/// Creates the mover Job if it does not exist, then reports what it does.
async fn mover(
    ctx: &Context,
    backup: &EscBackup,
    cluster: Option<&EscCluster>,
    status: &EscBackupStatus,
    view: &Option<ClusterView>,
    job_name: &str,
) -> JobView {
    let namespace = backup.namespace().unwrap_or_default();
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    match jobs.get_opt(job_name).await {
        Ok(Some(job)) => {
            let pod = jobs::job_pod(ctx, &namespace, &job).await;
            let uid = backup.uid().unwrap_or_default();
            match job_view(&job, pod.as_ref(), &uid) {
                JobView::Running(_) => JobView::Running(match &pod {
                    Some(pod) => jobs::progress(ctx, &namespace, &uid, pod).await,
                    None => None,
                }),
                done => done,
            }
        }
        Ok(None) => match create_job(ctx, backup, cluster, status, view, job_name).await {
            Ok(()) => JobView::Running(None),
            Err(problem) => JobView::Failed(problem),
        },
        // Transient: look again (the plan waits on a running Job).
        Err(e) => {
            tracing::warn!(error = %e, job = job_name, "reading the mover Job");
            JobView::Running(None)
        }
    }
}

async fn create_job(
    ctx: &Context,
    backup: &EscBackup,
    cluster: Option<&EscCluster>,
    status: &EscBackupStatus,
    view: &Option<ClusterView>,
    job_name: &str,
) -> Result<(), Problem> {
    let namespace = backup.namespace().unwrap_or_default();
    let (Some(cluster), Some(view)) = (cluster, view) else {
        return Err(Problem::new(
            "ClusterNotFound",
            format!("EscCluster {} is gone", backup.spec.cluster_ref.name),
        ));
    };
    let master = view
        .master
        .as_deref()
        .ok_or_else(|| Problem::new("MasterUnknown", "the EscCluster names no MASTER"))?;
    let roles = Roles {
        master,
        standby: view.standby.as_deref(),
    };
    let created_at = status.started_at.clone().unwrap_or_else(now);
    let request = mover_request(&RequestInput {
        cluster,
        spec: &backup.spec,
        status,
        namespace: &namespace,
        backup: &backup.name_any(),
        roles,
        esc_version: view.esc_version.as_deref().unwrap_or(""),
        created_at: &created_at,
        template: &ctx.options.mover,
    })?;
    let request_json = request
        .to_json()
        .map_err(|e| Problem::new("MoverRequestInvalid", e.to_string()))?;
    let template = &ctx.options.mover;
    let image = jobs::mover_image(ctx)?;
    let owner = backup
        .controller_owner_ref(&())
        .ok_or_else(|| Problem::new("OwnerUnknown", "the EscBackup has no uid yet"))?;
    let secrets = target::mover_secrets(cluster, &backup.spec.target);
    let job = mover_job(&MoverJobInput {
        name: job_name,
        namespace: &namespace,
        owner,
        run_label: (job::BACKUP_LABEL, &backup.name_any()),
        command: "backup",
        image: &image,
        request_json,
        secrets: &secrets,
        template,
    });
    jobs::create(ctx, &namespace, &job).await
}

/// Reads the stored artifact back with the target's credentials.
async fn verify(
    ctx: &Context,
    backup: &EscBackup,
) -> Result<crate::plan::backup::StoredArtifact, Problem> {
    target::verify(&load_target(ctx, backup).await?).await
}
