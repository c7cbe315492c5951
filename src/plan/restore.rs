//! The EscRestore decision: the run's status so far + the cluster + the resolved source + what
//! the last action found → the status to store, the one action to take next, the Events, and
//! when to look again.
//!
//! A restore is a step machine persisted in `status.steps` (see [`RestoreStep`]), stored before
//! each action, so an operator restarted at any point resumes the step it was in: escadm runs
//! detached on the node in a directory named after the run and the step (starting is
//! idempotent there, resuming polls it), the staging runs in a mover Job adopted by name, and
//! the node each step acts on comes from `status.plan`, fixed at the preflight — never from the
//! cluster's roles of the moment, which change while services are stopped.
//!
//! Order, as the manual demands: nothing changes before the preflight passed and the artifact
//! was staged and verified whole; then maintenance; then the BACKUP node is stopped and seen
//! stopped, and only then the MASTER (never the master while the standby runs, or the standby
//! takes over); restore on the master; restart the master and see it MASTER and healthy, then
//! the standby and see it BACKUP.
//!
//! Failure: before anything was stopped, the run cleans up and fails. Once services were
//! stopped, `onFailure: RestartServices` starts them again master first (each verified), and
//! `LeaveStopped` leaves them for a person; either way `status.stoppedNodes` says which nodes
//! are down because of this run, and the message says what to do. A failover seen at any check
//! stops the procedure. Deleting the EscRestore cancels it until the first stop; from then on
//! the run goes on to its end (the finalizer holds the deletion), because a half-done restore
//! is the worst place to leave a cluster.
//!
//! Fail closed: a node is stopped, running or in a role only on an observation that says so;
//! a history that cannot be read is not an empty one.

use std::time::Duration;

use super::report::{PlannedEvent, Problem};
pub use super::run::{
    COMPLETE, ClusterView, DATABASE_FILE, FAILED, MAINTENANCE_ENTRY_TIMEOUT, MAINTENANCE_EXIT_WAIT,
    READY, RECONCILING, RemoteCommand, RemoteOutcome, STALLED, short_uid, step_timeout,
};
use crate::api::{
    Artifact, ArtifactOrigin, ClusterState, EscNodeStatus, EscRestoreSpec, EscRestoreStatus,
    NodeFile, NodeFileKind, NodeRole, OnRestoreFailure, PlannedStep, RestoreStep, RunFailure,
    RunPhase, ServicesState, StepState, StepStatus, Time, Topology, TransferProgress,
};
use crate::esc::EscVersion;
use crate::esc::history::RestoreRecord;

/// Condition type of an EscRestore with `spec.dryRun` (besides the run conditions).
pub const DRY_RUN: &str = "DryRun";

/// Room left on the restore node beyond the staged database (escadm restore unpacks beside it).
pub const SPACE_MARGIN: u64 = 64 << 20;
/// How long a restarted node may take to report its role and healthy services.
pub const HEALTHY_WAIT: Duration = Duration::from_secs(10 * 60);
/// How long recording the restore in the nodes' history is retried before the run moves on.
pub const RECORD_WAIT: Duration = Duration::from_secs(60);

/// The artifact to restore, as resolved from `spec.source` (and the EscBackup it names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceView {
    /// `s3://bucket/key` or `sftp://user@host:port/path`.
    pub uri: String,
    /// The whole artifact's expected SHA-256 (hex).
    pub sha256: String,
    /// The EscBackup of `source.backupRef`.
    pub backup: Option<String>,
}

/// What the preflight read without changing anything.
#[derive(Clone, Debug, PartialEq)]
pub struct PreflightFacts {
    /// The artifact's manifest and stored digest.
    pub artifact: Result<ArtifactFacts, Problem>,
    /// The restore history of every node, merged.
    pub history: Result<Vec<RestoreRecord>, Problem>,
    /// Free bytes where the restore node stages the database.
    pub free_bytes: Result<u64, Problem>,
    /// Every node, probed now (`status --v`).
    pub nodes: Vec<EscNodeStatus>,
}

/// What the store and the manifest say about the artifact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactFacts {
    pub size: u64,
    /// The digest the store records (metadata, sidecar).
    pub stored_sha256: String,
    /// The ESC version the database was taken from.
    pub esc_version: String,
    /// `namespace/name` of the EscCluster it was taken from.
    pub cluster: String,
    pub created_at: Time,
    /// The database member's size: what is staged on the node.
    pub database_size: u64,
}

/// The staging Job, as seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StageView {
    Running(Option<TransferProgress>),
    /// The mover staged the database and checked the whole artifact.
    Staged {
        path: String,
        artifact_sha256: String,
    },
    Failed(Problem),
}

/// Every node as probed after a stop or restart, and ESC's operation mode where known.
#[derive(Clone, Debug, PartialEq)]
pub struct NodesView {
    pub nodes: Vec<EscNodeStatus>,
    pub op_mode: Option<crate::api::OpMode>,
}

/// What the last action found.
#[derive(Clone, Debug, PartialEq)]
pub enum Observed {
    Preflight(PreflightFacts),
    Job(StageView),
    Remote(RemoteOutcome),
    Nodes(NodesView),
    Recorded(Result<(), Problem>),
    Cleaned(Result<(), Problem>),
}

/// The one I/O to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoreAction {
    /// Read the artifact's head from the store, every node's history and status, and the free
    /// space under the run base on `restore_node`.
    Inspect { restore_node: String },
    /// Create the staging Job `name` if it does not exist (the database goes to `path` on
    /// `node`), then report what it does.
    Stage {
        name: String,
        node: String,
        path: String,
    },
    /// Start (if not started) or poll the detached `command` in directory `run` on `node`;
    /// `file` is the staged database for `Restore`.
    Remote {
        node: String,
        run: String,
        command: RemoteCommand,
        file: Option<String>,
    },
    /// `status --v` on every node (and `op_mode show` where services run).
    CheckNodes,
    /// Append `record` to the restore history of every node.
    Record { record: RestoreRecord },
    /// Remove these files and directories from the nodes; delete the staging Job if it runs.
    Cleanup {
        files: Vec<NodeFile>,
        stop_job: Option<String>,
    },
}

/// Everything [`plan`] looks at.
#[derive(Clone, Debug)]
pub struct RestoreInput<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    /// The directory on the nodes that holds run directories.
    pub run_base: &'a str,
    pub spec: &'a EscRestoreSpec,
    pub generation: Option<i64>,
    pub previous: &'a EscRestoreStatus,
    /// `None`: the EscCluster does not exist.
    pub cluster: Option<ClusterView>,
    /// The source resolved (only needed in the preflight).
    pub source: Result<SourceView, Problem>,
    /// Runs on the same cluster that go first (0: this one's turn).
    pub queue_position: u32,
    /// Every Secret the run needs is present with its keys.
    pub secrets: Result<(), Problem>,
    pub deleting: bool,
    pub observed: Option<Observed>,
    pub now: Time,
}

/// What to do next.
#[derive(Clone, Debug, PartialEq)]
pub struct RestorePlan {
    pub status: EscRestoreStatus,
    pub action: Option<RestoreAction>,
    pub events: Vec<PlannedEvent>,
    pub requeue: Option<Duration>,
}

/// The step a running run is in.
pub fn current_step(status: &EscRestoreStatus) -> Option<RestoreStep> {
    let last = status.run.steps.last()?;
    (status.run.phase == Some(RunPhase::Running) && last.state == StepState::Running)
        .then_some(last.name)
}

/// Whether the run is over.
pub fn finished(status: &EscRestoreStatus) -> bool {
    matches!(
        status.run.phase,
        Some(RunPhase::Succeeded | RunPhase::Failed)
    )
}

/// Whether this run holds ESC in maintenance now: from asking to enter until both nodes run
/// again (also while it restarts them after a failure). A run cancelled before anything
/// stopped holds nothing; with `LeaveStopped` the failed run lets go (no mode change is possible
/// while services are stopped; the EscCluster reports it).
pub fn holds_maintenance(status: &EscRestoreStatus) -> bool {
    match current_step(status) {
        Some(RestoreStep::EnterMaintenance) => status.run.failure.is_none(),
        Some(
            RestoreStep::StopStandby
            | RestoreStep::StopMaster
            | RestoreStep::Restore
            | RestoreStep::RestartMaster
            | RestoreStep::RestartStandby,
        ) => true,
        _ => false,
    }
}

/// Whether deleting the EscRestore now cancels it: only before the first node is stopped.
pub fn cancellable(status: &EscRestoreStatus) -> bool {
    !status
        .run
        .steps
        .iter()
        .any(|s| step_index(s.name) >= step_index(RestoreStep::StopStandby))
}

/// The directory name of `step`'s detached run (and of the staged database).
pub fn run_name(uid: &str, step: RestoreStep) -> String {
    let step = match step {
        RestoreStep::Stage => "stage",
        RestoreStep::StopStandby => "stop-standby",
        RestoreStep::StopMaster => "stop-master",
        RestoreStep::Restore => "restore",
        RestoreStep::RestartMaster => "restart-master",
        RestoreStep::RestartStandby => "restart-standby",
        other => return format!("esc-restore-{}-{other:?}", short_uid(uid, 12)).to_lowercase(),
    };
    format!("esc-restore-{}-{step}", short_uid(uid, 12))
}

/// The staged database's path on the restore node.
pub fn staged_path(run_base: &str, uid: &str) -> String {
    format!(
        "{}/{}/{DATABASE_FILE}",
        run_base.trim_end_matches('/'),
        run_name(uid, RestoreStep::Stage)
    )
}

/// The staging Job's name.
pub fn stage_job_name(name: &str, uid: &str) -> String {
    let head: String = name.chars().take(40).collect();
    format!(
        "{}-stage-{}",
        head.trim_end_matches(['-', '.']),
        short_uid(uid, 5)
    )
}

const ORDER: [RestoreStep; 11] = [
    RestoreStep::Preflight,
    RestoreStep::Stage,
    RestoreStep::EnterMaintenance,
    RestoreStep::StopStandby,
    RestoreStep::StopMaster,
    RestoreStep::Restore,
    RestoreStep::RestartMaster,
    RestoreStep::RestartStandby,
    RestoreStep::ExitMaintenance,
    RestoreStep::Cleanup,
    RestoreStep::Verify,
];

fn step_index(step: RestoreStep) -> usize {
    ORDER.iter().position(|s| *s == step).unwrap_or(0)
}

/// The escadm command of a remote step.
fn remote_command(step: RestoreStep) -> Option<RemoteCommand> {
    match step {
        RestoreStep::StopStandby | RestoreStep::StopMaster => Some(RemoteCommand::Stop),
        RestoreStep::Restore => Some(RemoteCommand::Restore),
        RestoreStep::RestartMaster | RestoreStep::RestartStandby => Some(RemoteCommand::Restart),
        _ => None,
    }
}

/// The steps a run takes, with the nodes each touches: fixed at the preflight.
pub fn step_plan(
    topology: Topology,
    master: &str,
    standby: Option<&str>,
    source: &str,
) -> Vec<PlannedStep> {
    let ha = topology == Topology::Ha;
    let one = |n: &str| vec![n.to_owned()];
    let mut all = one(master);
    if let Some(s) = standby {
        all.push(s.to_owned());
    }
    let mut steps = vec![
        PlannedStep {
            step: RestoreStep::Preflight,
            nodes: all.clone(),
            action: format!(
                "read {source}'s manifest and stored checksum, the nodes' status and restore \
                 history, and free space on {master}; change nothing"
            ),
        },
        PlannedStep {
            step: RestoreStep::Stage,
            nodes: one(master),
            action: format!(
                "a mover Job streams the database from {source} to {master}, checking the whole \
                 artifact's SHA-256"
            ),
        },
        PlannedStep {
            step: RestoreStep::EnterMaintenance,
            nodes: one(master),
            action: "hold maintenance mode (ipt_check) so no new transaction starts".to_owned(),
        },
    ];
    if let (true, Some(s)) = (ha, standby) {
        steps.push(PlannedStep {
            step: RestoreStep::StopStandby,
            nodes: one(s),
            action: format!(
                "escadm stop on the BACKUP {s}; status --v shows every service stopped"
            ),
        });
    }
    steps.push(PlannedStep {
        step: RestoreStep::StopMaster,
        nodes: one(master),
        action: format!(
            "escadm stop on {}{master}; status --v shows every service stopped",
            if ha { "the MASTER " } else { "" }
        ),
    });
    steps.push(PlannedStep {
        step: RestoreStep::Restore,
        nodes: one(master),
        action: format!(
            "escadm restore --file <staged database> on {master}; record it in the nodes' \
             restore history"
        ),
    });
    steps.push(PlannedStep {
        step: RestoreStep::RestartMaster,
        nodes: one(master),
        action: format!(
            "escadm restart on {master}; wait until it reports {} and healthy",
            if ha { "MASTER" } else { "its services running" }
        ),
    });
    if let (true, Some(s)) = (ha, standby) {
        steps.push(PlannedStep {
            step: RestoreStep::RestartStandby,
            nodes: one(s),
            action: format!("escadm restart on {s}; wait until it reports BACKUP and healthy"),
        });
    }
    steps.push(PlannedStep {
        step: RestoreStep::ExitMaintenance,
        nodes: one(master),
        action: "release maintenance mode: ESC returns to operation".to_owned(),
    });
    steps.push(PlannedStep {
        step: RestoreStep::Cleanup,
        nodes: one(master),
        action: "remove the staged database and run directories".to_owned(),
    });
    steps.push(PlannedStep {
        step: RestoreStep::Verify,
        nodes: all,
        action: "record the final roles, services, versions and mode".to_owned(),
    });
    steps
}

/// Decides. Pure: same input, same output.
pub fn plan(input: &RestoreInput<'_>) -> RestorePlan {
    let mut p = Planner {
        input,
        status: input.previous.clone(),
        action: None,
        events: Vec::new(),
        requeue: None,
    };
    p.status.run.observed_generation = input.generation;
    match input.previous.run.phase {
        Some(RunPhase::Succeeded | RunPhase::Failed) => {}
        None | Some(RunPhase::Pending) => p.admit(),
        Some(RunPhase::Running) => p.advance(),
    }
    p.set_conditions();
    RestorePlan {
        status: p.status,
        action: p.action,
        events: p.events,
        requeue: p.requeue,
    }
}

/// What a node must show for a check to pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Stopped,
    /// Services running, in this role (`None`: any role: a recovery restart).
    Running(Option<NodeRole>),
}

struct Planner<'i, 'a> {
    input: &'i RestoreInput<'a>,
    status: EscRestoreStatus,
    action: Option<RestoreAction>,
    events: Vec<PlannedEvent>,
    requeue: Option<Duration>,
}

impl Planner<'_, '_> {
    fn now(&self) -> Time {
        self.input.now.clone()
    }

    fn cluster_name(&self) -> &str {
        &self.input.spec.cluster_ref.name
    }

    fn topology(&self) -> Topology {
        self.input.cluster.as_ref().map(|c| c.topology).unwrap_or(
            if self.planned_node(RestoreStep::StopStandby).is_some() {
                Topology::Ha
            } else {
                Topology::Standalone
            },
        )
    }

    /// The node `step` acts on, as the preflight fixed it.
    fn planned_node(&self, step: RestoreStep) -> Option<String> {
        self.status
            .plan
            .iter()
            .find(|p| p.step == step)
            .and_then(|p| p.nodes.first().cloned())
    }

    fn master(&self) -> Option<String> {
        self.planned_node(RestoreStep::StopMaster)
    }

    fn standby(&self) -> Option<String> {
        self.planned_node(RestoreStep::StopStandby)
    }

    fn admit(&mut self) {
        if self.input.deleting {
            return self.finish_failed(Problem::new(
                "Cancelled",
                "deleted before it started; nothing was done on ESC",
            ));
        }
        if self.input.queue_position > 0 {
            let n = self.input.queue_position;
            self.status.run.phase = Some(RunPhase::Pending);
            self.status.run.queue_position = Some(n);
            self.status.run.message = Some(format!(
                "waiting for {n} earlier backup or restore run(s) on EscCluster {}: one run at a \
                 time per cluster",
                self.cluster_name()
            ));
            self.requeue = Some(Duration::from_secs(15));
            return;
        }
        self.status.run.phase = Some(RunPhase::Running);
        self.status.run.queue_position = None;
        self.status.run.message = None;
        self.status.run.started_at = Some(self.now());
        self.events.push(PlannedEvent::normal(
            "Started",
            format!(
                "{}restore of EscCluster {} started",
                if self.input.spec.dry_run {
                    "dry-run "
                } else {
                    ""
                },
                self.cluster_name()
            ),
        ));
        self.enter(RestoreStep::Preflight);
    }

    fn advance(&mut self) {
        let Some(step) = current_step(&self.status) else {
            return self.fail(Problem::new(
                "InconsistentStatus",
                "status says Running but no step is running; the run cannot be resumed safely: \
                 check the EscCluster, then create a new EscRestore",
            ));
        };
        if self.input.deleting && self.status.run.failure.is_none() && cancellable(&self.status) {
            return self.fail(Problem::new(
                "Cancelled",
                "the EscRestore was deleted before any ESC service was stopped",
            ));
        }
        match step {
            RestoreStep::Preflight => self.preflight(),
            RestoreStep::Stage => self.stage(),
            RestoreStep::EnterMaintenance => self.await_maintenance(),
            RestoreStep::StopStandby
            | RestoreStep::StopMaster
            | RestoreStep::Restore
            | RestoreStep::RestartMaster
            | RestoreStep::RestartStandby => self.remote(step),
            RestoreStep::ExitMaintenance => self.await_operation(),
            RestoreStep::Cleanup => self.cleanup(),
            RestoreStep::Verify => self.verify(),
        }
    }

    // ---- Preflight ---------------------------------------------------------------------

    fn preflight(&mut self) {
        let Some(cluster) = self.input.cluster.clone() else {
            return self.fail(Problem::new(
                "ClusterNotFound",
                format!(
                    "EscCluster {} does not exist in this namespace: create it, or fix \
                     spec.clusterRef",
                    self.cluster_name()
                ),
            ));
        };
        if let Some(why) = &cluster.degraded {
            return self.fail(Problem::new(
                "ClusterDegraded",
                format!(
                    "EscCluster {} is Degraded ({why}); a restore needs a healthy cluster",
                    self.cluster_name()
                ),
            ));
        }
        if !cluster.ready {
            return self.fail(Problem::new(
                "ClusterNotReady",
                format!(
                    "EscCluster {} is not Ready ({}); a restore needs a Ready cluster",
                    self.cluster_name(),
                    cluster.not_ready_message
                ),
            ));
        }
        let Some(master) = cluster.master.clone() else {
            return self.fail(Problem::new(
                "MasterUnknown",
                format!("EscCluster {} names no MASTER", self.cluster_name()),
            ));
        };
        if cluster.topology == Topology::Ha && cluster.standby.is_none() {
            return self.fail(Problem::new(
                "StandbyUnknown",
                format!("EscCluster {} names no standby node", self.cluster_name()),
            ));
        }
        if let Err(problem) = &self.input.secrets {
            return self.fail(problem.clone());
        }
        let source = match &self.input.source {
            Ok(s) => s.clone(),
            Err(problem) => return self.fail(problem.clone()),
        };
        let facts = match &self.input.observed {
            Some(Observed::Preflight(facts)) => facts.clone(),
            _ => {
                self.action = Some(RestoreAction::Inspect {
                    restore_node: master,
                });
                return;
            }
        };
        if let Err(problem) = self.judge(&cluster, &master, &source, &facts) {
            return self.fail(problem);
        }
        let artifact = facts.artifact.as_ref().expect("judged Ok");
        let this_cluster = format!("{}/{}", self.input.namespace, self.cluster_name());
        self.status.run.artifact = Some(Artifact {
            uri: source.uri.clone(),
            size: artifact.size as i64,
            sha256: source.sha256.clone(),
            esc_version: artifact.esc_version.clone(),
            created_at: artifact.created_at.clone(),
        });
        self.status.origin = Some(ArtifactOrigin {
            cluster: artifact.cluster.clone(),
            backup: source.backup.clone(),
            other_cluster: artifact.cluster != this_cluster,
        });
        self.status.plan = step_plan(
            cluster.topology,
            &master,
            cluster.standby.as_deref(),
            &source.uri,
        );
        let summary = format!(
            "{} (SHA-256 {}, ESC {} from {}) onto ESC {} — {}",
            source.uri,
            &source.sha256[..12.min(source.sha256.len())],
            artifact.esc_version,
            artifact.cluster,
            cluster.esc_version.clone().unwrap_or_default(),
            self.status
                .plan
                .iter()
                .map(|p| format!("{:?}({})", p.step, p.nodes.join(",")))
                .collect::<Vec<_>>()
                .join(" → ")
        );
        if self.input.spec.dry_run {
            self.end_step(StepState::Succeeded, &format!("would restore {summary}"));
            return self.finish_dry_run(&summary);
        }
        self.next(&format!("safe to restore {summary}"));
    }

    /// Every preflight rule, in the order a user would fix them.
    fn judge(
        &self,
        cluster: &ClusterView,
        master: &str,
        source: &SourceView,
        facts: &PreflightFacts,
    ) -> Result<(), Problem> {
        for n in &facts.nodes {
            if !n.reachable {
                return Err(Problem::new(
                    "NodeUnreachable",
                    format!(
                        "node {} did not answer over SSH; every node must be reachable",
                        n.name
                    ),
                ));
            }
            if n.services != ServicesState::Running {
                return Err(Problem::new(
                    "NodeNotRunning",
                    format!(
                        "node {} shows its services {:?}, not all running: a restore starts from \
                         a running cluster",
                        n.name, n.services
                    ),
                ));
            }
        }
        let expected_roles: Vec<(&str, NodeRole)> = match (cluster.topology, &cluster.standby) {
            (Topology::Ha, Some(s)) => vec![(master, NodeRole::Master), (s, NodeRole::Backup)],
            _ => vec![(master, NodeRole::Standalone)],
        };
        for (name, role) in expected_roles {
            match facts.nodes.iter().find(|n| n.name == name) {
                Some(n) if n.role == role => {}
                Some(n) => {
                    return Err(Problem::new(
                        "RolesChanged",
                        format!(
                            "node {name} reports {:?}, the EscCluster expected {role:?}: the roles \
                             changed (a failover?); wait for the EscCluster to settle",
                            n.role
                        ),
                    ));
                }
                None => {
                    return Err(Problem::new(
                        "NodeNotProbed",
                        format!("node {name} was not probed"),
                    ));
                }
            }
        }
        let artifact = facts.artifact.clone()?;
        if !artifact.stored_sha256.eq_ignore_ascii_case(&source.sha256) {
            return Err(Problem::new(
                "ChecksumMismatch",
                format!(
                    "{} records SHA-256 {}, but {} is expected{}: refusing a restore from an \
                     artifact that is not the one asked for",
                    source.uri,
                    artifact.stored_sha256,
                    source.sha256,
                    match &source.backup {
                        Some(b) => format!(" (EscBackup {b})"),
                        None => " (spec.source.sha256)".to_owned(),
                    }
                ),
            ));
        }
        let target_text = cluster.esc_version.clone().unwrap_or_default();
        let (Ok(from), Ok(to)) = (
            artifact.esc_version.parse::<EscVersion>(),
            target_text.parse::<EscVersion>(),
        ) else {
            return Err(Problem::new(
                "VersionUnknown",
                format!(
                    "cannot compare the artifact's ESC version {:?} with the cluster's {:?}: a \
                     restore needs both to rule out a schema downgrade",
                    artifact.esc_version, target_text
                ),
            ));
        };
        if from > to {
            return Err(Problem::new(
                "SchemaDowngrade",
                format!(
                    "the artifact was taken on ESC {from}, newer than the cluster's ESC {to}; ESC \
                     does not support a database schema downgrade: upgrade the cluster to {from} \
                     or later first, or restore an artifact from ESC {to} or older"
                ),
            ));
        }
        if !self.input.spec.allow_repeat {
            let history = facts.history.clone().map_err(|p| {
                Problem::new(
                    "RestoreHistoryUnreadable",
                    format!(
                        "{}; the restore history on the nodes cannot be read, so a repeat cannot \
                         be ruled out: fix or remove the file, or set spec.allowRepeat: true",
                        p.message
                    ),
                )
            })?;
            let this = format!("{}/{}", self.input.namespace, self.input.name);
            if let Some(r) = history.iter().find(|r| {
                r.uid != self.input.uid
                    && (r.restore == this || r.artifact_sha256.eq_ignore_ascii_case(&source.sha256))
            }) {
                return Err(Problem::new(
                    "AlreadyRestored",
                    format!(
                        "the nodes' restore history shows EscRestore {} (uid {}) restored artifact \
                         {} onto {} at {}; a re-created EscRestore (a GitOps prune and re-apply, a \
                         rebuilt namespace) does not restore twice: to restore again on purpose, \
                         create it with spec.allowRepeat: true",
                        r.restore, r.uid, r.artifact_sha256, r.cluster, r.restored_at
                    ),
                ));
            }
        }
        let free = facts.free_bytes.clone()?;
        let needed = artifact.database_size.saturating_add(SPACE_MARGIN);
        if free < needed {
            return Err(Problem::new(
                "InsufficientSpace",
                format!(
                    "{master} has {free} bytes free under {}, the staged database needs {} (plus \
                     {SPACE_MARGIN} bytes of room): free space there",
                    self.input.run_base, artifact.database_size
                ),
            ));
        }
        Ok(())
    }

    // ---- Stage -------------------------------------------------------------------------

    fn stage(&mut self) {
        let name = self
            .status
            .run
            .mover_job
            .clone()
            .unwrap_or_else(|| stage_job_name(self.input.name, self.input.uid));
        match &self.input.observed {
            Some(Observed::Job(StageView::Staged {
                path,
                artifact_sha256,
            })) => {
                let expected = self
                    .status
                    .run
                    .artifact
                    .as_ref()
                    .map(|a| a.sha256.clone())
                    .unwrap_or_default();
                if !artifact_sha256.eq_ignore_ascii_case(&expected) {
                    return self.fail(Problem::new(
                        "ChecksumMismatch",
                        format!(
                            "the mover read SHA-256 {artifact_sha256}, {expected} was expected"
                        ),
                    ));
                }
                self.next(&format!(
                    "database staged at {path}; the whole artifact's SHA-256 matches"
                ));
            }
            Some(Observed::Job(StageView::Failed(problem))) => self.fail(problem.clone()),
            Some(Observed::Job(StageView::Running(progress))) => {
                if progress.is_some() {
                    self.status.run.progress = progress.clone();
                }
                self.requeue = Some(Duration::from_secs(5));
            }
            _ => self.stage_action(name),
        }
    }

    fn stage_action(&mut self, name: String) {
        let Some(node) = self.master() else {
            return self.fail(Problem::new(
                "NodeUnknown",
                "the plan names no restore node",
            ));
        };
        self.status.run.mover_job = Some(name.clone());
        self.action = Some(RestoreAction::Stage {
            name,
            node,
            path: staged_path(self.input.run_base, self.input.uid),
        });
    }

    // ---- Maintenance -------------------------------------------------------------------

    fn await_maintenance(&mut self) {
        use super::run::{MaintenanceEntry, maintenance_entry, open_window};
        match maintenance_entry(self.input.cluster.as_ref(), self.step_age()) {
            MaintenanceEntry::Entered => {
                self.status.run.maintenance = Some(open_window(&self.input.now));
                self.next("ESC is in maintenance mode, held by this restore");
            }
            MaintenanceEntry::Waiting => self.requeue = Some(Duration::from_secs(2)),
            MaintenanceEntry::TimedOut(why) => self.fail(Problem::new(
                "MaintenanceNotEntered",
                format!(
                    "ESC did not enter maintenance mode within {}s ({why}); nothing was \
                     stopped: retry later with a new EscRestore",
                    MAINTENANCE_ENTRY_TIMEOUT.as_secs()
                ),
            )),
        }
    }

    fn await_operation(&mut self) {
        use super::run::{MaintenanceExit, maintenance_exit};
        match maintenance_exit(self.input.cluster.as_ref(), self.step_age()) {
            MaintenanceExit::Waiting => {
                self.requeue = Some(Duration::from_secs(1));
                return;
            }
            MaintenanceExit::StillHeld => self.events.push(PlannedEvent::warning(
                "MaintenanceStillHeld",
                format!(
                    "EscCluster {} still lists this restore as a maintenance holder {}s after \
                     both nodes run again; see its Maintenance condition",
                    self.cluster_name(),
                    MAINTENANCE_EXIT_WAIT.as_secs()
                ),
            )),
            MaintenanceExit::Released => {}
        }
        self.close_window();
        self.next("maintenance holder released");
    }

    fn close_window(&mut self) {
        super::run::close_window(&mut self.status.run.maintenance, &self.input.now);
    }

    // ---- Remote steps ------------------------------------------------------------------

    fn node_of(&self, step: RestoreStep) -> Option<String> {
        match step {
            RestoreStep::StopStandby | RestoreStep::RestartStandby => self.standby(),
            _ => self.master(),
        }
    }

    /// What every node must show once `step`'s command finished.
    fn expectations(&self, step: RestoreStep) -> Vec<(String, Expect)> {
        let ha = self.topology() == Topology::Ha;
        let recovering = self.status.run.failure.is_some();
        let (master, standby) = (self.master().unwrap_or_default(), self.standby());
        let mut out = Vec::new();
        let running_master = if recovering {
            Expect::Running(None)
        } else if ha {
            Expect::Running(Some(NodeRole::Master))
        } else {
            Expect::Running(Some(NodeRole::Standalone))
        };
        match step {
            RestoreStep::StopStandby => {
                if let Some(s) = standby {
                    out.push((s, Expect::Stopped));
                }
                // The master must still run as MASTER: no failover.
                out.push((master, Expect::Running(Some(NodeRole::Master))));
            }
            RestoreStep::StopMaster | RestoreStep::Restore => {
                out.push((master, Expect::Stopped));
                if let Some(s) = standby {
                    out.push((s, Expect::Stopped));
                }
            }
            RestoreStep::RestartMaster => {
                out.push((master, running_master));
                if let (Some(s), true) = (standby, self.status.stopped_nodes.len() > 1) {
                    out.push((s, Expect::Stopped));
                }
            }
            RestoreStep::RestartStandby => {
                if let Some(s) = standby {
                    out.push((
                        s,
                        if recovering {
                            Expect::Running(None)
                        } else {
                            Expect::Running(Some(NodeRole::Backup))
                        },
                    ));
                }
                if !recovering {
                    out.push((master, Expect::Running(Some(NodeRole::Master))));
                }
            }
            _ => {}
        }
        out
    }

    fn remote(&mut self, step: RestoreStep) {
        let command = remote_command(step).expect("a remote step");
        match self.input.observed.clone() {
            Some(Observed::Remote(RemoteOutcome::Finished(_))) => match step {
                // The database is restored: record it before anything else can go wrong.
                RestoreStep::Restore => self.record_action(),
                _ => self.action = Some(RestoreAction::CheckNodes),
            },
            Some(Observed::Recorded(result)) => match result {
                Ok(()) => {
                    self.next("escadm restore succeeded; recorded in the nodes' restore history")
                }
                // Asked again on the requeue (the finished run is polled, then recorded).
                Err(_) if self.step_age() < RECORD_WAIT => {
                    self.requeue = Some(Duration::from_secs(5));
                }
                Err(p) => {
                    self.events.push(PlannedEvent::warning(
                        "RestoreNotRecorded",
                        format!(
                            "the restore succeeded but could not be recorded in the nodes' \
                             restore history ({}); a re-created EscRestore would not be refused",
                            p.message
                        ),
                    ));
                    self.next("escadm restore succeeded; not recorded in the restore history");
                }
            },
            Some(Observed::Nodes(view)) => self.judge_nodes(step, &view),
            Some(Observed::Remote(RemoteOutcome::Failed(problem))) => self.fail(problem),
            Some(Observed::Remote(
                outcome @ (RemoteOutcome::Running | RemoteOutcome::Unreachable(_)),
            )) => {
                let limit = step_timeout(command);
                match super::run::still_running(&step, &outcome, self.step_age(), limit) {
                    Ok(after) => self.requeue = Some(after),
                    Err(problem) => self.fail(problem),
                }
            }
            _ => self.remote_action(step),
        }
    }

    fn remote_action(&mut self, step: RestoreStep) {
        let Some(node) = self.node_of(step) else {
            return self.fail(Problem::new(
                "NodeUnknown",
                format!("the plan names no node for {step:?}"),
            ));
        };
        let command = remote_command(step).expect("a remote step");
        self.action = Some(RestoreAction::Remote {
            node,
            run: run_name(self.input.uid, step),
            command,
            file: (command == RemoteCommand::Restore)
                .then(|| staged_path(self.input.run_base, self.input.uid)),
        });
    }

    fn record_action(&mut self) {
        let artifact_sha256 = self
            .status
            .run
            .artifact
            .as_ref()
            .map(|a| a.sha256.clone())
            .unwrap_or_default();
        self.action = Some(RestoreAction::Record {
            record: RestoreRecord {
                restore: format!("{}/{}", self.input.namespace, self.input.name),
                uid: self.input.uid.to_owned(),
                artifact_sha256,
                cluster: format!("{}/{}", self.input.namespace, self.cluster_name()),
                restored_at: self.now().0.to_string(),
            },
        });
    }

    /// After a stop or restart: every node as the step expects, or wait (a restarting node
    /// needs a moment), or fail.
    fn judge_nodes(&mut self, step: RestoreStep, view: &NodesView) {
        let mut waiting = Vec::new();
        for (name, expect) in self.expectations(step) {
            let Some(node) = view.nodes.iter().find(|n| n.name == name) else {
                waiting.push(format!("{name} was not probed"));
                continue;
            };
            match expect {
                Expect::Stopped => {
                    if node.reachable && node.services == ServicesState::Stopped {
                        continue;
                    }
                    if node.role == NodeRole::Master && node.services == ServicesState::Running {
                        return self.fail(Problem::new(
                            "FailoverObserved",
                            format!(
                                "{name} should be stopped but runs as MASTER: the procedure stops \
                                 here; check which node holds the current database"
                            ),
                        ));
                    }
                    waiting.push(format!(
                        "{name} shows services {:?}{}",
                        node.services,
                        if node.reachable { "" } else { " (unreachable)" }
                    ));
                }
                Expect::Running(role) => {
                    let role_ok = role.is_none_or(|r| r == node.role);
                    if node.reachable && node.services == ServicesState::Running && role_ok {
                        continue;
                    }
                    if let Some(r) = role
                        && node.reachable
                        && node.role != r
                        && node.role != NodeRole::Unknown
                        && node.services == ServicesState::Running
                    {
                        return self.fail(Problem::new(
                            if step == RestoreStep::StopStandby {
                                "FailoverObserved"
                            } else {
                                "UnexpectedRole"
                            },
                            format!(
                                "{name} runs as {:?}, {r:?} was expected after {step:?}: the \
                                 procedure stops here",
                                node.role
                            ),
                        ));
                    }
                    waiting.push(format!(
                        "{name} shows {:?} with services {:?}{}",
                        node.role,
                        node.services,
                        if node.reachable { "" } else { " (unreachable)" }
                    ));
                }
            }
        }
        if waiting.is_empty() {
            let node = self.node_of(step).unwrap_or_default();
            match step {
                RestoreStep::StopStandby | RestoreStep::StopMaster => {
                    self.next(&format!("{node}: every service stopped"))
                }
                _ => {
                    self.status.stopped_nodes.retain(|n| *n != node);
                    self.next(&format!("{node} runs again"))
                }
            }
            return;
        }
        let limit = match step {
            RestoreStep::RestartMaster | RestoreStep::RestartStandby => HEALTHY_WAIT,
            _ => step_timeout(RemoteCommand::Stop),
        };
        if self.step_age() >= limit {
            return self.fail(Problem::new(
                match step {
                    RestoreStep::StopStandby | RestoreStep::StopMaster => "StopNotVerified",
                    _ => "NotHealthy",
                },
                format!(
                    "after {step:?}, within {} minutes: {}",
                    limit.as_secs() / 60,
                    waiting.join("; ")
                ),
            ));
        }
        // Looked at again on the requeue: the finished run is polled (exited 0 at once) and the
        // nodes probed anew.
        self.requeue = Some(Duration::from_secs(3));
    }

    // ---- Cleanup and verification ------------------------------------------------------

    fn cleanup(&mut self) {
        let failing = self.status.run.failure.is_some();
        match &self.input.observed {
            Some(Observed::Cleaned(result)) => {
                if let Err(problem) = result {
                    self.events.push(PlannedEvent::warning(
                        "CleanupIncomplete",
                        format!(
                            "temporary files could not all be removed from the ESC nodes ({}): \
                             remove them by hand",
                            problem.message
                        ),
                    ));
                }
                let note = match result {
                    Ok(()) => "temporary files removed".to_owned(),
                    Err(p) => format!("some temporary files remain: {}", p.message),
                };
                if failing && !cancellable(&self.status) {
                    // Services were touched: the failure report carries the cluster's state.
                    if let Some(last) = self.status.run.steps.last_mut() {
                        last.message = Some(note);
                    }
                    self.action = Some(RestoreAction::CheckNodes);
                } else if failing {
                    self.end_step(StepState::Succeeded, &note);
                    self.finish_failure();
                } else {
                    self.next(&note);
                }
            }
            Some(Observed::Nodes(view)) if failing => {
                self.status.final_state = Some(ClusterState {
                    op_mode: view.op_mode,
                    nodes: view.nodes.clone(),
                });
                let note = self
                    .status
                    .run
                    .steps
                    .last()
                    .and_then(|s| s.message.clone())
                    .unwrap_or_default();
                self.end_step(StepState::Succeeded, &note);
                self.finish_failure();
            }
            _ => self.cleanup_action(),
        }
    }

    fn cleanup_action(&mut self) {
        let failing = self.status.run.failure.is_some();
        let stop_job = failing.then(|| self.status.run.mover_job.clone()).flatten();
        if failing && self.status.run.node_files.is_empty() && stop_job.is_none() {
            self.end_step(StepState::Succeeded, "nothing to remove");
            return self.finish_failure();
        }
        self.action = Some(RestoreAction::Cleanup {
            files: self.status.run.node_files.clone(),
            stop_job,
        });
    }

    fn finish_failure(&mut self) {
        let f = self.status.run.failure.clone().expect("failing");
        self.finish_failed(Problem::new(f.reason, f.message));
    }

    fn verify(&mut self) {
        let Some(Observed::Nodes(view)) = &self.input.observed else {
            self.action = Some(RestoreAction::CheckNodes);
            return;
        };
        self.status.final_state = Some(ClusterState {
            op_mode: view.op_mode,
            nodes: view.nodes.clone(),
        });
        let mut wrong = Vec::new();
        let expected: Vec<(String, NodeRole)> = match (self.topology(), self.standby()) {
            (Topology::Ha, Some(s)) => vec![
                (self.master().unwrap_or_default(), NodeRole::Master),
                (s, NodeRole::Backup),
            ],
            _ => vec![(self.master().unwrap_or_default(), NodeRole::Standalone)],
        };
        for (name, role) in expected {
            match view.nodes.iter().find(|n| n.name == name) {
                Some(n) if n.role == role && n.services == ServicesState::Running => {}
                Some(n) => wrong.push(format!(
                    "{name} shows {:?} with services {:?} ({role:?} expected)",
                    n.role, n.services
                )),
                None => wrong.push(format!("{name} was not probed")),
            }
        }
        if !wrong.is_empty() {
            if self.step_age() < Duration::from_secs(60) {
                self.requeue = Some(Duration::from_secs(3));
                return;
            }
            return self.fail(Problem::new(
                "RolesNotRestored",
                format!("after the restore: {}", wrong.join("; ")),
            ));
        }
        self.next("roles and services as before the restore");
    }

    // ---- Step bookkeeping --------------------------------------------------------------

    fn step_age(&self) -> Duration {
        super::run::step_age(&self.status.run.steps, &self.input.now)
    }

    fn end_step(&mut self, state: StepState, message: &str) {
        super::run::end_step(&mut self.status.run.steps, state, message, &self.input.now);
    }

    /// Whether `step` applies to this run (standby steps only in HA; after a failure only the
    /// restarts this run owes, then the cleanup).
    fn applies(&self, step: RestoreStep) -> bool {
        let ha = self.standby().is_some();
        let stopped = |n: Option<String>| n.is_some_and(|n| self.status.stopped_nodes.contains(&n));
        if let Some(failure) = &self.status.run.failure {
            let failed_in = failure.step.as_str();
            return match step {
                RestoreStep::RestartMaster => {
                    self.input.spec.on_failure == OnRestoreFailure::RestartServices
                        && stopped(self.master())
                        && failed_in != "RestartMaster"
                }
                RestoreStep::RestartStandby => {
                    self.input.spec.on_failure == OnRestoreFailure::RestartServices
                        && stopped(self.standby())
                        && !stopped(self.master())
                        && failed_in != "RestartStandby"
                }
                RestoreStep::Cleanup => true,
                _ => false,
            };
        }
        match step {
            RestoreStep::StopStandby | RestoreStep::RestartStandby => ha,
            _ => true,
        }
    }

    /// The current step succeeded: on to the next one that applies.
    fn next(&mut self, message: &str) {
        let Some(current) = current_step(&self.status) else {
            return;
        };
        self.end_step(StepState::Succeeded, message);
        let after = ORDER.iter().skip(step_index(current) + 1).copied();
        for step in after {
            if self.status.run.steps.iter().any(|s| s.name == step) {
                continue;
            }
            if self.applies(step) {
                return self.enter(step);
            }
            if self.status.run.failure.is_none() {
                self.status.run.steps.push(StepStatus {
                    name: step,
                    state: StepState::Skipped,
                    started_at: None,
                    finished_at: None,
                    message: None,
                });
            }
        }
        match self.status.run.failure.clone() {
            Some(f) => self.finish_failed(Problem::new(f.reason, f.message)),
            None => self.finish_succeeded(),
        }
    }

    fn enter(&mut self, step: RestoreStep) {
        if let Some(note) = self.step_note(step) {
            self.events
                .push(PlannedEvent::normal(&format!("{step:?}"), note));
        }
        self.status.run.steps.push(StepStatus {
            name: step,
            state: StepState::Running,
            started_at: Some(self.now()),
            finished_at: None,
            message: None,
        });
        match step {
            RestoreStep::Preflight => self.preflight(),
            RestoreStep::Stage => {
                if let Some(node) = self.master() {
                    self.add_run_dir(&node, step);
                }
                self.stage_action(stage_job_name(self.input.name, self.input.uid));
            }
            RestoreStep::EnterMaintenance => self.requeue = Some(Duration::from_secs(2)),
            RestoreStep::StopStandby
            | RestoreStep::StopMaster
            | RestoreStep::Restore
            | RestoreStep::RestartMaster
            | RestoreStep::RestartStandby => {
                if let Some(node) = self.node_of(step) {
                    self.add_run_dir(&node, step);
                    // Recorded before the command is sent: from here ESC may be down because
                    // of this run, and status must say so even if the operator dies now.
                    if matches!(step, RestoreStep::StopStandby | RestoreStep::StopMaster)
                        && !self.status.stopped_nodes.contains(&node)
                    {
                        self.status.stopped_nodes.push(node);
                    }
                }
                self.remote_action(step);
            }
            RestoreStep::ExitMaintenance => self.requeue = Some(Duration::from_secs(1)),
            // The observation in hand belongs to the step before.
            RestoreStep::Cleanup => self.cleanup_action(),
            RestoreStep::Verify => self.action = Some(RestoreAction::CheckNodes),
        }
    }

    fn add_run_dir(&mut self, node: &str, step: RestoreStep) {
        let dir = NodeFile {
            node: node.to_owned(),
            kind: NodeFileKind::RunDirectory,
            path: format!(
                "{}/{}",
                self.input.run_base.trim_end_matches('/'),
                run_name(self.input.uid, step)
            ),
        };
        if !self.status.run.node_files.contains(&dir) {
            self.status.run.node_files.push(dir);
        }
    }

    fn step_note(&self, step: RestoreStep) -> Option<String> {
        let master = self.master().unwrap_or_default();
        let standby = self.standby().unwrap_or_default();
        let recovering = if self.status.run.failure.is_some() {
            "onFailure RestartServices: "
        } else {
            ""
        };
        Some(match step {
            RestoreStep::Preflight => return None,
            RestoreStep::Stage => {
                format!("a mover Job stages the database on {master}")
            }
            RestoreStep::EnterMaintenance => {
                "asking the EscCluster to enter maintenance mode for the restore".to_owned()
            }
            RestoreStep::StopStandby => format!("escadm stop on the BACKUP {standby}"),
            RestoreStep::StopMaster => format!("escadm stop on {master}"),
            RestoreStep::Restore => format!("escadm restore on {master}"),
            RestoreStep::RestartMaster => format!("{recovering}escadm restart on {master}"),
            RestoreStep::RestartStandby => format!("{recovering}escadm restart on {standby}"),
            RestoreStep::ExitMaintenance => "both nodes run; releasing maintenance mode".to_owned(),
            RestoreStep::Cleanup => "removing the run's temporary files from the nodes".to_owned(),
            RestoreStep::Verify => "recording the final roles, services and mode".to_owned(),
        })
    }

    /// The current step failed: record why, then restart what this run stopped (as
    /// `onFailure` says), clean up, and end `Failed`.
    fn fail(&mut self, problem: Problem) {
        let step = current_step(&self.status);
        self.end_step(StepState::Failed, &problem.message);
        self.events.push(PlannedEvent::warning(
            &problem.reason,
            format!(
                "{}{}",
                step.map(|s| format!("{s:?}: ")).unwrap_or_default(),
                problem.message
            ),
        ));
        if self.status.run.failure.is_some() {
            // Failing again while recovering: no more restarts; clean up and report.
            self.close_window();
            if step == Some(RestoreStep::Cleanup)
                || self.status.run.phase != Some(RunPhase::Running)
            {
                let f = self.status.run.failure.clone().expect("failing");
                return self.finish_failed(Problem::new(f.reason, f.message));
            }
            self.status
                .run
                .failure
                .as_mut()
                .expect("failing")
                .message
                .push_str(&format!(
                    "; then {}: {}",
                    step.map(|s| format!("{s:?}")).unwrap_or_default(),
                    problem.message
                ));
            // Mark the restarts as owed no longer.
            self.status.run.failure.as_mut().expect("failing").step =
                step.map(|s| format!("{s:?}")).unwrap_or_default();
            return self.enter(RestoreStep::Cleanup);
        }
        self.status.run.failure = Some(RunFailure {
            step: step.map(|s| format!("{s:?}")).unwrap_or_default(),
            reason: problem.reason.clone(),
            message: problem.message.clone(),
        });
        if self.status.run.phase != Some(RunPhase::Running) || step.is_none() {
            return self.finish_failed(problem);
        }
        if self.status.stopped_nodes.is_empty() {
            self.close_window();
        } else if self.input.spec.on_failure == OnRestoreFailure::LeaveStopped {
            self.close_window();
            self.events.push(PlannedEvent::warning(
                "LeftStopped",
                format!(
                    "onFailure LeaveStopped: ESC services stay stopped on {} for a person to \
                     inspect; to bring them back run `escadm restart` on {} first{}",
                    self.status.stopped_nodes.join(", "),
                    self.master().unwrap_or_default(),
                    self.standby()
                        .map(|s| format!(", then on {s}"))
                        .unwrap_or_default()
                ),
            ));
        }
        for step in ORDER.iter().skip(step.map_or(0, step_index) + 1).copied() {
            if !self.status.run.steps.iter().any(|s| s.name == step) && self.applies(step) {
                return self.enter(step);
            }
        }
        let f = self.status.run.failure.clone().expect("failing");
        self.finish_failed(Problem::new(f.reason, f.message));
    }

    fn finish_failed(&mut self, problem: Problem) {
        let step = self
            .status
            .run
            .failure
            .as_ref()
            .map(|f| f.step.clone())
            .filter(|s| !s.is_empty());
        self.status.run.phase = Some(RunPhase::Failed);
        self.status.run.queue_position = None;
        self.status.run.completed_at = Some(self.now());
        let state = if self.status.stopped_nodes.is_empty() {
            if self.status.run.maintenance.is_some() {
                " ESC services run; ESC returns to operation unless another holder keeps it in \
                 maintenance."
                    .to_owned()
            } else {
                " Nothing on ESC was changed.".to_owned()
            }
        } else {
            format!(
                " ESC services are STOPPED on {} (spec.onFailure {:?}): run `escadm restart` on \
                 {} first{}, then check `escadm status --v`.",
                self.status.stopped_nodes.join(", "),
                self.input.spec.on_failure,
                self.master().unwrap_or_default(),
                self.standby()
                    .filter(|s| self.status.stopped_nodes.contains(s))
                    .map(|s| format!(", then on {s}"))
                    .unwrap_or_default()
            )
        };
        self.status.run.message = Some(format!(
            "{}{} ({}).{state}",
            step.map(|s| format!("failed in {s}: ")).unwrap_or_default(),
            problem.message,
            problem.reason
        ));
        if self.status.run.failure.is_none() {
            self.status.run.failure = Some(RunFailure {
                step: String::new(),
                reason: problem.reason.clone(),
                message: problem.message.clone(),
            });
        }
    }

    fn finish_succeeded(&mut self) {
        self.status.run.phase = Some(RunPhase::Succeeded);
        self.status.run.completed_at = Some(self.now());
        let message = match &self.status.run.artifact {
            Some(a) => format!(
                "restored {} (ESC {}) onto EscCluster {}; roles and services verified",
                a.uri,
                a.esc_version,
                self.cluster_name()
            ),
            None => "done".to_owned(),
        };
        self.status.run.message = Some(message.clone());
        self.events
            .push(PlannedEvent::normal("Succeeded", &message));
    }

    fn finish_dry_run(&mut self, summary: &str) {
        self.status.run.phase = Some(RunPhase::Succeeded);
        self.status.run.completed_at = Some(self.now());
        let message = format!("dry run: the preflight passed; a real run would restore {summary}");
        self.status.run.message = Some(message.clone());
        self.events
            .push(PlannedEvent::normal("DryRunSucceeded", &message));
    }

    /// The run conditions, and `DryRun` for a dry run: what it did not do is said from the
    /// start.
    fn set_conditions(&mut self) {
        use super::conditions::{Desired, merge};
        let dry_run = self.input.spec.dry_run;
        let succeeded = if dry_run { "DryRun" } else { "Succeeded" };
        let mut wanted = super::run::run_conditions(&self.status.run, succeeded);
        if dry_run && !wanted.is_empty() {
            wanted.push(Desired::new(
                DRY_RUN,
                true,
                "DryRun",
                "spec.dryRun: only the preflight runs; nothing on ESC is changed",
            ));
        }
        self.status.run.conditions = merge(
            &self.status.run.conditions,
            &wanted,
            self.input.generation,
            &self.input.now,
        );
    }
}

#[cfg(test)]
mod tests;
