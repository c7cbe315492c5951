//! The reconcilers, one module per kind, and what they share: the [`Context`] (client, Event
//! recorder, metrics, SSH pool, per-object backoff), dereferencing Secrets, writing status.
//!
//! Owns all I/O of reconciling; the decisions come from [`crate::plan`]. May import
//! [`crate::plan`], [`crate::api`], [`crate::esc`] and the Kubernetes client; never
//! [`crate::runtime`] or [`crate::cli`].

pub mod backup;
pub mod cluster;
pub mod context;
pub mod jobs;
pub mod metrics;
pub mod nodes;
pub mod remote;
pub mod restore;
pub mod runs;
pub mod schedule;
pub mod secrets;
pub mod ssh_pool;

use std::collections::hash_map::DefaultHasher;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

pub use context::{Context, ControllerOptions};
use futures::future::BoxFuture;
use futures::future::join_all;
use futures::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use kube::api::Api;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};

use crate::api::{EscBackup, EscCluster, EscRestore};

/// The object a watch delivered, or `None` when this operator cannot read it. Admission
/// validates the schema, so that is a CRD/operator version skew: a Warning Event says so on the
/// object, and the other objects go on.
pub(crate) async fn readable<K>(guarded: &DeserializeGuard<K>, ctx: &Context) -> Option<K>
where
    K: Resource<DynamicType = ()> + Clone,
{
    match &guarded.0 {
        Ok(object) => Some(object.clone()),
        Err(invalid) => {
            let kind = K::kind(&());
            tracing::warn!(error = %invalid.error, "the object does not match this operator's {kind} type");
            ctx.publish(
                guarded,
                true,
                "InvalidObject",
                &format!(
                    "this operator cannot read the object: {}; is the installed CRD from the same \
                     release as the operator?",
                    invalid.error
                ),
                "Reconcile",
            )
            .await;
            None
        }
    }
}

/// Runs one reconcile of `object` inside the span every log line of it carries (controller,
/// namespace, object — `object`, not `name`: JSON logs carry the span's own name under "name")
/// and records its duration.
pub(crate) async fn instrumented<K, T>(
    controller: &'static str,
    object: &K,
    ctx: &Context,
    reconcile: impl Future<Output = T>,
) -> T
where
    K: Resource,
{
    use tracing::Instrument;
    let started = std::time::Instant::now();
    let span = tracing::info_span!(
        "reconcile",
        controller,
        namespace = %object.namespace().unwrap_or_default(),
        object = %object.name_any()
    );
    let result = reconcile.instrument(span).await;
    ctx.metrics.reconciled(controller, started.elapsed());
    result
}

/// After a failed reconcile: count it under its `reason` and back off this object alone (up
/// to `cap`), so a malformed object never stalls the others.
pub(crate) fn back_off<K>(
    controller: &'static str,
    object: &K,
    reason: &'static str,
    error: &dyn std::fmt::Display,
    ctx: &Context,
    cap: Duration,
) -> kube::runtime::controller::Action
where
    K: Resource<DynamicType = ()>,
{
    ctx.metrics.reconcile_failed(controller, reason);
    tracing::warn!(namespace = %object.namespace().unwrap_or_default(), name = %object.name_any(), %error, "reconcile failed");
    kube::runtime::controller::Action::requeue(ctx.backoff(object, cap))
}

/// Writes `object`'s finalizer list. The resourceVersion makes it a compare-and-swap: never
/// drop someone else's finalizer added meanwhile.
pub(crate) async fn set_finalizers<K>(
    client: &kube::Client,
    object: &K,
    finalizers: Vec<String>,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), &object.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": object.resource_version(),
        }
    });
    api.patch(
        &object.name_any(),
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// The field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "esc-operator";

/// Writes `object`'s status with server-side apply, as the operator's field manager. Callers
/// compare with the stored status first: an unchanged status is never written.
pub(crate) async fn apply_status<K>(
    client: &kube::Client,
    object: &K,
    status: &impl serde::Serialize,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), &object.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &object.name_any(),
        &kube::api::PatchParams::apply(FIELD_MANAGER).force(),
        &kube::api::Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// Now, in whole seconds: the API server stores times at second precision, so a finer `now`
/// would make every stored status differ from the freshly planned one.
pub(crate) fn now() -> crate::api::Time {
    let seconds = k8s_openapi::jiff::Timestamp::now().as_second();
    crate::api::Time(
        k8s_openapi::jiff::Timestamp::from_second(seconds).expect("now is a valid time"),
    )
}

/// Which namespaces the operator watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchScope {
    /// Every namespace (needs a ClusterRole).
    All,
    /// Only these (a Role in each is enough).
    Namespaces(Vec<String>),
}

impl WatchScope {
    fn apis<K>(&self, client: &kube::Client) -> Vec<Api<K>>
    where
        K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
    {
        match self {
            WatchScope::All => vec![Api::all(client.clone())],
            WatchScope::Namespaces(list) => list
                .iter()
                .map(|ns| Api::namespaced(client.clone(), ns))
                .collect(),
        }
    }
}

/// What makes an EscCluster worth reconciling before its next probe: its spec (generation),
/// its annotations (the maintenance request), its finalizers and deletion. Status writes — the
/// operator's own — do not, which is what keeps an idle operator from re-probing in a loop.
fn reconcile_trigger(obj: &DeserializeGuard<EscCluster>) -> Option<u64> {
    let meta = obj.meta();
    let mut h = DefaultHasher::new();
    meta.generation.hash(&mut h);
    meta.annotations.hash(&mut h);
    meta.finalizers.hash(&mut h);
    meta.deletion_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .hash(&mut h);
    Some(h.finish())
}

/// What the reconciler never reads, dropped before an EscCluster enters the cache: the
/// managedFields and kubectl's copy of the whole object (500 clusters are held in memory).
fn strip_cluster(guarded: &mut DeserializeGuard<EscCluster>) {
    let meta = match &mut guarded.0 {
        Ok(cluster) => &mut cluster.metadata,
        Err(invalid) => &mut invalid.metadata,
    };
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// The EscClusters that name `secret` in their SSH settings.
fn clusters_using(
    store: &Store<DeserializeGuard<EscCluster>>,
    secret: &secrets::SecretMeta,
) -> Vec<ObjectRef<DeserializeGuard<EscCluster>>> {
    let namespace = secret.namespace();
    let name = secret.name_any();
    store
        .state()
        .iter()
        .filter(|c| c.namespace() == namespace)
        .filter(|c| {
            c.0.as_ref().is_ok_and(|c| {
                c.spec.ssh.credentials_secret_ref.name == name
                    || c.spec.ssh.known_hosts_secret_ref.name == name
            })
        })
        .map(|c| ObjectRef::from_obj(&**c))
        .collect()
}

/// The EscCluster a backup names.
fn cluster_of(
    backup: &DeserializeGuard<EscBackup>,
) -> Option<ObjectRef<DeserializeGuard<EscCluster>>> {
    let run = backup.0.as_ref().ok()?;
    Some(ObjectRef::new(&run.spec.cluster_ref.name).within(&backup.namespace().unwrap_or_default()))
}

/// The EscCluster a restore names.
fn cluster_of_restore(
    restore: &DeserializeGuard<EscRestore>,
) -> Option<ObjectRef<DeserializeGuard<EscCluster>>> {
    let run = restore.0.as_ref().ok()?;
    Some(
        ObjectRef::new(&run.spec.cluster_ref.name).within(&restore.namespace().unwrap_or_default()),
    )
}

/// The unfinished restores on `cluster`.
fn restores_on<K: Resource>(
    store: &Store<DeserializeGuard<EscRestore>>,
    cluster: &K,
) -> Vec<ObjectRef<DeserializeGuard<EscRestore>>> {
    let namespace = cluster.namespace();
    let name = cluster.name_any();
    store
        .state()
        .iter()
        .filter(|r| r.namespace() == namespace)
        .filter(|r| {
            r.0.as_ref().is_ok_and(|r| {
                r.spec.cluster_ref.name == name
                    && !r
                        .status
                        .as_ref()
                        .is_some_and(crate::plan::restore::finished)
            })
        })
        .map(|r| ObjectRef::from_obj(&**r))
        .collect()
}

/// The unfinished runs on `cluster` (its status changes wake them: the maintenance window).
fn runs_on<K: Resource>(
    store: &Store<DeserializeGuard<EscBackup>>,
    cluster: &K,
) -> Vec<ObjectRef<DeserializeGuard<EscBackup>>> {
    let namespace = cluster.namespace();
    let name = cluster.name_any();
    store
        .state()
        .iter()
        .filter(|b| b.namespace() == namespace)
        .filter(|b| {
            b.0.as_ref().is_ok_and(|b| {
                b.spec.cluster_ref.name == name
                    && !b.status.as_ref().is_some_and(crate::plan::backup::finished)
            })
        })
        .map(|b| ObjectRef::from_obj(&**b))
        .collect()
}

/// Runs every controller until `shutdown` completes; in-flight reconciles finish first.
/// `on_synced` runs once every watch has listed its objects (readiness).
pub async fn run(
    ctx: Arc<Context>,
    scope: &WatchScope,
    shutdown: impl Future<Output = ()> + Clone + Send + Sync + 'static,
    on_synced: impl FnOnce() + Send + 'static,
) {
    let mut controllers: Vec<BoxFuture<'static, ()>> = Vec::new();
    let mut ready: Vec<BoxFuture<'static, ()>> = Vec::new();
    let cluster_apis = scope.apis::<DeserializeGuard<EscCluster>>(&ctx.client);
    let secret_apis = scope.apis::<secrets::SecretMeta>(&ctx.client);
    let backup_apis = scope.apis::<DeserializeGuard<EscBackup>>(&ctx.client);
    let restore_apis = scope.apis::<DeserializeGuard<EscRestore>>(&ctx.client);
    let job_apis = scope.apis::<Job>(&ctx.client);
    let cluster_meta_apis = scope.apis::<PartialObjectMeta<EscCluster>>(&ctx.client);
    for (((((clusters, secrets), backups), restores), jobs), cluster_meta) in cluster_apis
        .into_iter()
        .zip(secret_apis)
        .zip(backup_apis)
        .zip(restore_apis)
        .zip(job_apis)
        .zip(cluster_meta_apis)
    {
        // The runs as the EscCluster controller sees them: who holds maintenance. A change of a
        // run's status reconciles its cluster (the holder comes and goes with the run's step).
        let (holders, holders_writer) = reflector::store();
        ctx.runs.add_backups(holders.clone());
        ready.push(wait_ready(holders));
        let run_changes = watcher(backups.clone(), watcher::Config::default().any_semantic())
            .default_backoff()
            .reflect(holders_writer)
            .touched_objects();
        let (restore_holders, restore_holders_writer) = reflector::store();
        ctx.runs.add_restores(restore_holders.clone());
        ready.push(wait_ready(restore_holders));
        let restore_run_changes =
            watcher(restores.clone(), watcher::Config::default().any_semantic())
                .default_backoff()
                .reflect(restore_holders_writer)
                .touched_objects();

        let (reader, writer) = reflector::store();
        let stream = watcher(clusters.clone(), watcher::Config::default().any_semantic())
            .default_backoff()
            .modify(strip_cluster)
            .reflect(writer)
            .applied_objects()
            .predicate_filter(reconcile_trigger, Default::default());
        let for_secrets = reader.clone();
        ready.push(wait_ready(reader.clone()));
        // Metadata only (the cache GETs the few Secrets clusters name, when their version
        // changes), stripped to what the cache compares. Changes only trigger: the initial list
        // of every Secret would trigger a second reconcile of each cluster at start-up, on a
        // cached copy older than the first one's writes.
        let (secret_versions, secret_writer) = reflector::store();
        ctx.secrets.watch(secret_versions);
        let cache = ctx.clone();
        let secret_changes = watcher(secrets, watcher::Config::default().any_semantic())
            .default_backoff()
            .modify(secrets::strip_meta)
            .reflect(secret_writer)
            .try_filter_map(move |event| {
                let changed = match event {
                    watcher::Event::Apply(s) => Some(s),
                    watcher::Event::Delete(s) => {
                        cache
                            .secrets
                            .forget(&s.namespace().unwrap_or_default(), &s.name_any());
                        Some(s)
                    }
                    _ => None,
                };
                async move { Ok(changed) }
            });
        let cluster_controller = Controller::for_stream(stream, reader)
            .watches_stream(secret_changes, move |secret| {
                clusters_using(&for_secrets, &secret)
            })
            .watches_stream(run_changes, |backup| cluster_of(&backup))
            .watches_stream(restore_run_changes, |restore| cluster_of_restore(&restore))
            // Bounded: 500 clusters reconciling at once would each open an API connection.
            .with_config(
                kube::runtime::controller::Config::default()
                    .concurrency(ctx.options.max_concurrent_reconciles),
            )
            .graceful_shutdown_on(shutdown.clone())
            .run(cluster::reconcile, cluster::error_policy, ctx.clone())
            .for_each(log_event);
        controllers.push(cluster_controller.boxed());

        // The EscBackup controller: its runs, their mover Jobs, and their clusters (a cluster's
        // status shows when the maintenance window opened and closed).
        let (runs, runs_writer) = reflector::store();
        let backup_stream = watcher(backups, watcher::Config::default().any_semantic())
            .default_backoff()
            .reflect(runs_writer)
            .applied_objects();
        ready.push(wait_ready(runs.clone()));
        let for_clusters = runs.clone();
        // Metadata only: the runs need to know *that* their cluster changed (they GET it),
        // and the cluster controller already caches the whole objects.
        let cluster_changes = watcher(
            cluster_meta.clone(),
            watcher::Config::default().any_semantic(),
        )
        .default_backoff()
        .applied_objects();
        let backup_controller = Controller::for_stream(backup_stream, runs)
            .owns(
                jobs.clone(),
                watcher::Config::default()
                    .labels(MOVER_JOB_SELECTOR)
                    .any_semantic(),
            )
            .watches_stream(cluster_changes, move |cluster| {
                runs_on(&for_clusters, &cluster)
            })
            .with_config(
                kube::runtime::controller::Config::default()
                    .concurrency(ctx.options.max_concurrent_reconciles),
            )
            .graceful_shutdown_on(shutdown.clone())
            .run(backup::reconcile, backup::error_policy, ctx.clone())
            .for_each(log_event);
        controllers.push(backup_controller.boxed());

        // The EscRestore controller, alike: its runs, their staging Jobs, their clusters.
        let (restore_runs, restore_runs_writer) = reflector::store();
        let restore_stream = watcher(restores, watcher::Config::default().any_semantic())
            .default_backoff()
            .reflect(restore_runs_writer)
            .applied_objects();
        ready.push(wait_ready(restore_runs.clone()));
        let for_restore_clusters = restore_runs.clone();
        let restore_cluster_changes =
            watcher(cluster_meta, watcher::Config::default().any_semantic())
                .default_backoff()
                .applied_objects();
        let restore_controller = Controller::for_stream(restore_stream, restore_runs)
            .owns(
                jobs,
                watcher::Config::default()
                    .labels(MOVER_JOB_SELECTOR)
                    .any_semantic(),
            )
            .watches_stream(restore_cluster_changes, move |cluster| {
                restores_on(&for_restore_clusters, &cluster)
            })
            .with_config(
                kube::runtime::controller::Config::default()
                    .concurrency(ctx.options.max_concurrent_reconciles),
            )
            .graceful_shutdown_on(shutdown.clone())
            .run(restore::reconcile, restore::error_policy, ctx.clone())
            .for_each(log_event);
        controllers.push(restore_controller.boxed());
    }
    // The schedules: their own watch of EscBackups, only the labelled runs.
    for (schedules, runs) in scope
        .apis::<DeserializeGuard<crate::api::EscBackupSchedule>>(&ctx.client)
        .into_iter()
        .zip(scope.apis::<DeserializeGuard<EscBackup>>(&ctx.client))
    {
        let (controller, synced) =
            schedule::controller(ctx.clone(), schedules, runs, shutdown.clone());
        controllers.push(controller);
        ready.push(synced);
    }
    let sync = async move {
        join_all(ready).await;
        on_synced();
    };
    let reaper = {
        let ctx = ctx.clone();
        async move {
            // Often enough that a connection never outlives its idle timeout by much.
            let every = (ctx.options.ssh_idle_timeout / 2)
                .clamp(Duration::from_secs(1), Duration::from_secs(15));
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let closed = ctx.ssh.close_idle();
                if closed > 0 {
                    tracing::debug!(closed, "closed idle SSH connections");
                }
            }
        }
    };
    tokio::select! {
        _ = join_all(controllers) => {}
        _ = async { sync.await; std::future::pending::<()>().await } => {}
        _ = reaper => {}
    }
    ctx.ssh.close_all().await;
}

/// The mover Jobs this operator made (its own label selector: other Jobs are not watched).
const MOVER_JOB_SELECTOR: &str =
    "app.kubernetes.io/component=mover,app.kubernetes.io/managed-by=esc-operator";

fn wait_ready<K>(store: Store<K>) -> BoxFuture<'static, ()>
where
    K: kube::Resource + Clone + Send + Sync + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone + Send + Sync,
{
    async move {
        let _ = store.wait_until_ready().await;
    }
    .boxed()
}

async fn log_event<T: std::fmt::Debug, E: std::fmt::Display>(result: Result<T, E>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "controller event");
    }
}
