//! `kubectl esc`: day-2 work from kubectl. The same binary, installed (or linked) as
//! `kubectl-esc` on the PATH, or run as `esc-operator kubectl-esc`.
//!
//! It only reads and writes the custom resources with the user's own kubeconfig — it never
//! talks to ESC: `maintenance on` sets the annotation the operator acts on, `backup` and
//! `restore` create the resources the operator runs. The screens are built in [`render`].

mod render;

use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Resource, ResourceExt};

use super::{Failure, FailureKind, current_thread_runtime};
use crate::api::{
    EscBackup, EscBackupSpec, EscCluster, EscRestore, EscRestoreSpec, LocalObjectRef,
    OnRestoreFailure, RestoreSource, RunPhase,
};
use crate::plan::cluster::MAINTENANCE_ANNOTATION;

/// `kubectl esc`.
#[derive(Parser)]
#[command(
    name = "kubectl esc",
    version,
    about = "Day-2 work on ESC deployments run by esc-operator: status, maintenance, backup, restore"
)]
pub(super) struct PluginCli {
    #[command(flatten)]
    pub(super) args: PluginArgs,
}

#[derive(clap::Args)]
pub(super) struct PluginArgs {
    /// The kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true)]
    kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    context: Option<String>,
    /// The namespace (default: the context's).
    #[arg(long, short = 'n', global = true)]
    namespace: Option<String>,
    /// Every namespace (lists only).
    #[arg(long, short = 'A', global = true)]
    all_namespaces: bool,
    #[command(subcommand)]
    command: PluginCommand,
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Mode, roles, services, versions, holders, the last backup and restore, and the
    /// conditions of one EscCluster (or of every one in the namespace).
    Status { cluster: Option<String> },
    /// Ask for maintenance mode (`on`) or give the request back (`off`) through the
    /// escoperator.dev/maintenance annotation; the operator changes the mode.
    Maintenance { state: OnOff, cluster: String },
    /// Create an EscBackup of CLUSTER with the target (and options) of an earlier EscBackup of
    /// it: the latest one, or --target-from.
    Backup {
        cluster: String,
        /// The EscBackup whose target, include and deletionPolicy to use.
        #[arg(long)]
        target_from: Option<String>,
        /// The new EscBackup's name (default: CLUSTER-YYYYMMDD-HHMMSS).
        #[arg(long)]
        name: Option<String>,
        /// Follow it until it ends; exit 1 if it fails.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this many seconds.
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
    /// Create an EscRestore of CLUSTER from a Succeeded EscBackup.
    Restore {
        cluster: String,
        /// The EscBackup to restore.
        #[arg(long)]
        from: String,
        /// Only the preflight: report what a real run would do; nothing on ESC changes.
        #[arg(long)]
        dry_run: bool,
        /// Restore although the nodes' history shows this was restored before.
        #[arg(long)]
        allow_repeat: bool,
        /// After a failure, leave ESC's services stopped instead of starting them again.
        #[arg(long)]
        leave_stopped: bool,
        /// The new EscRestore's name (default: CLUSTER-restore-YYYYMMDD-HHMMSS).
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        wait: bool,
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
    /// The backups (of CLUSTER, or all): size, SHA-256, ESC version, age, state.
    Backups {
        cluster: Option<String>,
        /// Output format: a table (default), json or yaml (the EscBackup objects).
        #[arg(long, short = 'o')]
        output: Option<Output>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum OnOff {
    On,
    Off,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Json,
    Yaml,
}

/// Where the commands act.
struct Target {
    client: kube::Client,
    namespace: String,
    all: bool,
}

impl Target {
    fn api<K>(&self) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
    {
        if self.all {
            Api::all(self.client.clone())
        } else {
            Api::namespaced(self.client.clone(), &self.namespace)
        }
    }

    fn namespaced<K>(&self) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }
}

/// An API error as the user should read it; RBAC refusals exit 3, like `check-access`.
fn api_failure(what: &str, e: kube::Error) -> Failure {
    match e {
        kube::Error::Api(s) if s.code == 403 => Failure {
            kind: FailureKind::AccessDenied,
            message: format!("{what}: forbidden: {}", s.message),
        },
        kube::Error::Api(s) if s.code == 404 => Failure::from(format!("{what}: not found")),
        e => Failure::from(format!("{what}: {e}")),
    }
}

pub(super) fn run(args: PluginArgs) -> Result<(), Failure> {
    current_thread_runtime()?.block_on(async move {
        let options = KubeConfigOptions {
            context: args.context.clone(),
            cluster: None,
            user: None,
        };
        let config = match &args.kubeconfig {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path)
                    .map_err(|e| format!("read kubeconfig {}: {e}", path.display()))?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &options).await
            }
            None => kube::Config::from_kubeconfig(&options).await,
        }
        .map_err(|e| format!("kubeconfig: {e}"))?;
        let namespace = args
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client =
            kube::Client::try_from(config).map_err(|e| format!("Kubernetes client: {e}"))?;
        let target = Target {
            client,
            namespace,
            all: args.all_namespaces,
        };
        match args.command {
            PluginCommand::Status { cluster } => status(&target, cluster.as_deref()).await,
            PluginCommand::Maintenance { state, cluster } => {
                maintenance(&target, state, &cluster).await
            }
            PluginCommand::Backup {
                cluster,
                target_from,
                name,
                wait,
                timeout,
            } => {
                backup(
                    &target,
                    &cluster,
                    target_from.as_deref(),
                    name,
                    wait.then(|| Duration::from_secs(timeout)),
                )
                .await
            }
            PluginCommand::Restore {
                cluster,
                from,
                dry_run,
                allow_repeat,
                leave_stopped,
                name,
                wait,
                timeout,
            } => {
                let spec = EscRestoreSpec {
                    cluster_ref: LocalObjectRef {
                        name: cluster.clone(),
                    },
                    source: RestoreSource {
                        backup_ref: Some(LocalObjectRef { name: from }),
                        s3: None,
                        scp: None,
                        sha256: None,
                    },
                    on_failure: if leave_stopped {
                        OnRestoreFailure::LeaveStopped
                    } else {
                        OnRestoreFailure::RestartServices
                    },
                    dry_run,
                    allow_repeat,
                };
                restore(
                    &target,
                    spec,
                    name,
                    wait.then(|| Duration::from_secs(timeout)),
                )
                .await
            }
            PluginCommand::Backups { cluster, output } => {
                backups(&target, cluster.as_deref(), output).await
            }
        }
    })
}

async fn get_cluster(target: &Target, name: &str) -> Result<EscCluster, Failure> {
    target
        .namespaced::<EscCluster>()
        .get_opt(name)
        .await
        .map_err(|e| api_failure(&format!("reading EscCluster {name}"), e))?
        .ok_or_else(|| {
            Failure::from(format!(
                "EscCluster {name} not found in namespace {} (list them with `kubectl get esc -n {}`)",
                target.namespace, target.namespace
            ))
        })
}

async fn status(target: &Target, cluster: Option<&str>) -> Result<(), Failure> {
    let clusters = match cluster {
        Some(name) => vec![get_cluster(target, name).await?],
        None => {
            target
                .api::<EscCluster>()
                .list(&ListParams::default())
                .await
                .map_err(|e| api_failure("listing EscClusters", e))?
                .items
        }
    };
    if clusters.is_empty() {
        println!("no EscCluster in {}", scope_text(target));
        return Ok(());
    }
    let backups = target
        .api::<EscBackup>()
        .list(&ListParams::default())
        .await
        .map_err(|e| api_failure("listing EscBackups", e))?
        .items;
    let restores = target
        .api::<EscRestore>()
        .list(&ListParams::default())
        .await
        .map_err(|e| api_failure("listing EscRestores", e))?
        .items;
    let now = Timestamp::now();
    for (i, c) in clusters.iter().enumerate() {
        let ns = c.namespace();
        let same_ns = |o: &Option<String>| *o == ns;
        let b: Vec<EscBackup> = backups
            .iter()
            .filter(|b| same_ns(&b.namespace()))
            .cloned()
            .collect();
        let r: Vec<EscRestore> = restores
            .iter()
            .filter(|r| same_ns(&r.namespace()))
            .cloned()
            .collect();
        if i > 0 {
            println!();
        }
        print!("{}", render::status_screen(c, &b, &r, now));
    }
    Ok(())
}

fn scope_text(target: &Target) -> String {
    if target.all {
        "any namespace".to_owned()
    } else {
        format!("namespace {}", target.namespace)
    }
}

async fn maintenance(target: &Target, state: OnOff, cluster: &str) -> Result<(), Failure> {
    let c = get_cluster(target, cluster).await?;
    let value = match state {
        OnOff::On => serde_json::Value::String("true".into()),
        OnOff::Off => serde_json::Value::Null,
    };
    let patch = serde_json::json!({"metadata": {"annotations": {MAINTENANCE_ANNOTATION: value}}});
    target
        .namespaced::<EscCluster>()
        .patch(cluster, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| api_failure(&format!("annotating EscCluster {cluster}"), e))?;
    match state {
        OnOff::On => println!(
            "maintenance requested on EscCluster {cluster} ({MAINTENANCE_ANNOTATION}=true); the \
             operator enters it: `kubectl esc status {cluster}` shows when"
        ),
        OnOff::Off => {
            let others: Vec<String> = c
                .status
                .unwrap_or_default()
                .maintenance_holders
                .iter()
                .filter(|h| h.kind != crate::api::HolderKind::Annotation)
                .map(|h| format!("{:?} {}", h.kind, h.name))
                .collect();
            println!(
                "maintenance request removed from EscCluster {cluster}; the operator returns ESC \
                 to operation{}",
                if others.is_empty() {
                    String::new()
                } else {
                    format!(" once the other holders end: {}", others.join(", "))
                }
            );
        }
    }
    Ok(())
}

fn stamp() -> String {
    Timestamp::now().strftime("%Y%m%d-%H%M%S").to_string()
}

async fn backup(
    target: &Target,
    cluster: &str,
    target_from: Option<&str>,
    name: Option<String>,
    wait: Option<Duration>,
) -> Result<(), Failure> {
    get_cluster(target, cluster).await?;
    let api = target.namespaced::<EscBackup>();
    let template = match target_from {
        Some(from) => api
            .get_opt(from)
            .await
            .map_err(|e| api_failure(&format!("reading EscBackup {from}"), e))?
            .ok_or_else(|| {
                Failure::from(format!(
                    "EscBackup {from} not found in namespace {}",
                    target.namespace
                ))
            })?,
        None => api
            .list(&ListParams::default())
            .await
            .map_err(|e| api_failure("listing EscBackups", e))?
            .items
            .into_iter()
            .filter(|b| b.spec.cluster_ref.name == cluster)
            .max_by_key(|b| {
                (
                    b.metadata.creation_timestamp.clone().map(|t| t.0),
                    b.name_any(),
                )
            })
            .ok_or_else(|| {
                Failure::from(format!(
                    "no EscBackup of {cluster} to take the target from: create the first one \
                     with kubectl apply (see manifests/examples/escbackup-s3.yaml), or pass \
                     --target-from BACKUP"
                ))
            })?,
    };
    let spec = EscBackupSpec {
        cluster_ref: LocalObjectRef {
            name: cluster.to_owned(),
        },
        ..template.spec.clone()
    };
    let name = name.unwrap_or_else(|| format!("{cluster}-{}", stamp()));
    api.create(&PostParams::default(), &EscBackup::new(&name, spec))
        .await
        .map_err(|e| api_failure(&format!("creating EscBackup {name}"), e))?;
    println!(
        "created EscBackup {name} (target as in {})",
        template.name_any()
    );
    if let Some(timeout) = wait {
        follow(&api, &name, timeout, |b: &EscBackup| {
            let s = b.status.clone().unwrap_or_default();
            (
                s.phase,
                s.steps.last().map(|st| format!("{:?}", st.name)),
                s.message.clone(),
            )
        })
        .await?;
    }
    Ok(())
}

async fn restore(
    target: &Target,
    spec: EscRestoreSpec,
    name: Option<String>,
    wait: Option<Duration>,
) -> Result<(), Failure> {
    let cluster = spec.cluster_ref.name.clone();
    get_cluster(target, &cluster).await?;
    let api = target.namespaced::<EscRestore>();
    // One restore at a time: say so now rather than leave the new one waiting unseen.
    let running: Vec<String> = api
        .list(&ListParams::default())
        .await
        .map_err(|e| api_failure("listing EscRestores", e))?
        .items
        .into_iter()
        .filter(|r| r.spec.cluster_ref.name == cluster)
        .filter(|r| {
            !matches!(
                r.status.as_ref().and_then(|s| s.run.phase),
                Some(RunPhase::Succeeded | RunPhase::Failed)
            )
        })
        .map(|r| r.name_any())
        .collect();
    if !running.is_empty() {
        return Err(Failure::from(format!(
            "EscRestore {} is still running on {cluster}: wait for it (`kubectl esc status \
             {cluster}`) before asking for another restore",
            running.join(", ")
        )));
    }
    let name = name.unwrap_or_else(|| format!("{cluster}-restore-{}", stamp()));
    let dry = spec.dry_run;
    api.create(&PostParams::default(), &EscRestore::new(&name, spec))
        .await
        .map_err(|e| api_failure(&format!("creating EscRestore {name}"), e))?;
    println!(
        "created EscRestore {name}{}",
        if dry { " (dry run)" } else { "" }
    );
    if let Some(timeout) = wait {
        follow(&api, &name, timeout, |r: &EscRestore| {
            let s = r.status.clone().unwrap_or_default();
            (
                s.run.phase,
                s.run.steps.last().map(|st| format!("{:?}", st.name)),
                s.run.message.clone(),
            )
        })
        .await?;
    }
    Ok(())
}

/// Prints each step as the run reaches it, until it ends; a failed run is a failure.
async fn follow<K>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
    view: impl Fn(&K) -> (Option<RunPhase>, Option<String>, Option<String>),
) -> Result<(), Failure>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let deadline = Instant::now() + timeout;
    let mut last_step = None;
    loop {
        let object = api
            .get(name)
            .await
            .map_err(|e| api_failure(&format!("reading {name}"), e))?;
        let (phase, step, message) = view(&object);
        if step.is_some() && step != last_step {
            println!("  step {}", step.clone().unwrap_or_default());
            last_step = step;
        }
        match phase {
            Some(RunPhase::Succeeded) => {
                println!("Succeeded: {}", message.unwrap_or_default());
                return Ok(());
            }
            Some(RunPhase::Failed) => {
                return Err(Failure::from(format!(
                    "{name} failed: {}",
                    message.unwrap_or_default()
                )));
            }
            _ => {}
        }
        if Instant::now() > deadline {
            return Err(Failure::from(format!(
                "{name} did not end within {}s; it goes on: follow it with `kubectl esc status`",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn backups(
    target: &Target,
    cluster: Option<&str>,
    output: Option<Output>,
) -> Result<(), Failure> {
    if let Some(c) = cluster {
        get_cluster(target, c).await?;
    }
    let items: Vec<EscBackup> = target
        .api::<EscBackup>()
        .list(&ListParams::default())
        .await
        .map_err(|e| api_failure("listing EscBackups", e))?
        .items
        .into_iter()
        .filter(|b| cluster.is_none_or(|c| b.spec.cluster_ref.name == c))
        .collect();
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
    match output {
        Some(Output::Json) => println!(
            "{}",
            serde_json::to_string_pretty(&list).map_err(|e| format!("JSON: {e}"))?
        ),
        Some(Output::Yaml) => print!(
            "{}",
            serde_norway::to_string(&list).map_err(|e| format!("YAML: {e}"))?
        ),
        None if items.is_empty() => println!("no EscBackup in {}", scope_text(target)),
        None => print!(
            "{}",
            render::backups_table(&items, target.all, Timestamp::now())
        ),
    }
    Ok(())
}
