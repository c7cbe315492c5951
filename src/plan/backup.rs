//! The EscBackup decision: the run's status so far + what the cluster looks like + what the
//! last action found → the status to store, the one action to take next, the Events, and when
//! to look again.
//!
//! A backup is a step machine persisted in `status.steps` (see [`BackupStep`] for the order).
//! The status is stored *before* each action, so an operator restarted at any point finds the
//! step it was in and resumes it without repeating anything blindly:
//! - escadm commands run detached on the node in a directory named after the run and the step
//!   ([`run_name`]); resuming polls that directory, and starting is idempotent there;
//! - the maintenance window is not entered here: while the run is in `EnterMaintenance` or
//!   `BackupDatabase` it *holds* maintenance ([`holds_maintenance`]) and the EscCluster
//!   controller — the one owner of `op_mode` — enters and leaves it; this plan waits for the
//!   cluster's status to show its holder (and maintenance) before `escadm backup`, and for the
//!   holder to be gone before anything else runs, so the window covers `escadm backup` alone;
//! - the transfer runs in the mover Job, adopted by name after a restart.
//!
//! Failure at any step records [`RunFailure`] and moves to `Cleanup` (the holder is gone the
//! moment the step fails), so temporary files are removed after a failure too; only then is the
//! phase `Failed`. Deleting a running EscBackup cancels it the same way. `Succeeded` needs a
//! verified stored artifact.
//!
//! Fail closed: a step is done only on an observation that says so; a cluster whose state is
//! unknown is not Ready.

use std::time::Duration;

use super::report::{PlannedEvent, Problem};
use crate::api::{
    AfterBackup, Artifact, BackupStep, EscBackupSpec, EscBackupStatus, NodeFile, NodeFileKind,
    RunFailure, RunPhase, StepState, StepStatus, Time, Topology, TransferProgress,
};

pub use super::run::{
    COMPLETE, ClusterView, DATABASE_FILE, FAILED, MAINTENANCE_ENTRY_TIMEOUT, MAINTENANCE_EXIT_WAIT,
    READY, RECONCILING, RemoteCommand, RemoteOutcome, STALLED, short_uid, step_timeout,
};

/// How far the store's clock may be behind the operator's: leftovers of a killed mover are
/// looked for from this long before its step started (S3 stamps an upload with the store's
/// time, an SFTP host a file with its own).
const STORE_CLOCK_SKEW: k8s_openapi::jiff::SignedDuration =
    k8s_openapi::jiff::SignedDuration::from_secs(300);

/// What the last action found.
#[derive(Clone, Debug, PartialEq)]
pub enum Observed {
    /// A detached escadm run of the current step.
    Remote(RemoteOutcome),
    /// The mover Job.
    Job(JobView),
    /// The stored artifact, read back by the operator (size and SHA-256 from its metadata).
    Stored(Result<StoredArtifact, Problem>),
    /// Every node file of the run removed (or what could not be).
    Cleaned(Result<(), Problem>),
}

/// The mover Job, as seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobView {
    /// Created or running; its last progress line, if any.
    Running(Option<TransferProgress>),
    /// Completed; what the mover reported.
    Succeeded(StoredArtifact),
    /// Failed (the mover's reason, or the pod's: OOMKilled, DeadlineExceeded...).
    Failed(Problem),
}

/// An artifact as the mover reported it or as read back from the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredArtifact {
    pub uri: String,
    pub size: u64,
    pub sha256: String,
}

/// The one I/O to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackupAction {
    /// Start (if not started) or poll the detached `command` in directory `run` on `node`.
    /// `Backup` writes [`DATABASE_FILE`] inside that directory.
    Remote {
        node: String,
        run: String,
        command: RemoteCommand,
    },
    /// Create the mover Job `name` if it does not exist, then report what it is doing.
    Mover { name: String },
    /// Read back the stored artifact's size and SHA-256.
    Verify,
    /// Remove these files and directories from the nodes; delete the mover Job if it still
    /// runs (`stop_mover`: cancelled or failed while it ran); and remove what a killed mover
    /// left in the store for this artifact since `store_leftovers_since` (incomplete multipart
    /// uploads, SFTP temporary files), which only the operator can do after an OOM kill.
    Cleanup {
        files: Vec<NodeFile>,
        stop_mover: Option<String>,
        store_leftovers_since: Option<Time>,
    },
}

/// Everything [`plan`] looks at.
#[derive(Clone, Debug)]
pub struct BackupInput<'a> {
    /// The EscBackup's name and uid (run directories and the Job are named after them).
    pub name: &'a str,
    pub uid: &'a str,
    /// The directory on the nodes that holds run directories (`/var/tmp/esc-operator`).
    pub run_base: &'a str,
    pub spec: &'a EscBackupSpec,
    pub generation: Option<i64>,
    pub previous: &'a EscBackupStatus,
    /// `None`: the EscCluster does not exist.
    pub cluster: Option<ClusterView>,
    /// Runs on the same cluster that go first (0: this one's turn).
    pub queue_position: u32,
    /// Every Secret the run needs is present with its keys.
    pub secrets: Result<(), Problem>,
    /// The EscBackup is being deleted: cancel.
    pub deleting: bool,
    /// What the last action found (for the step in `previous`).
    pub observed: Option<Observed>,
    pub now: Time,
}

/// What to do next.
#[derive(Clone, Debug, PartialEq)]
pub struct BackupPlan {
    pub status: EscBackupStatus,
    pub action: Option<BackupAction>,
    pub events: Vec<PlannedEvent>,
    /// Look again after this long (also woken by changes of the cluster and the Job).
    pub requeue: Option<Duration>,
}

/// The step a running run is in: its last step entry, while that entry is `Running`.
pub fn current_step(status: &EscBackupStatus) -> Option<BackupStep> {
    let last = status.steps.last()?;
    (status.phase == Some(RunPhase::Running) && last.state == StepState::Running)
        .then_some(last.name)
}

/// Whether this run holds ESC in maintenance now: from the moment it asks to enter until
/// `escadm backup` has ended. A failed, cancelled or deleted run holds nothing.
pub fn holds_maintenance(status: &EscBackupStatus, deleting: bool) -> bool {
    !deleting
        && status.failure.is_none()
        && matches!(
            current_step(status),
            Some(BackupStep::EnterMaintenance | BackupStep::BackupDatabase)
        )
}

/// Whether the run is over (nothing more to do but the deletion policy).
pub fn finished(status: &EscBackupStatus) -> bool {
    matches!(status.phase, Some(RunPhase::Succeeded | RunPhase::Failed))
}

/// The directory name of `step`'s detached run: unique per EscBackup (its uid) and stable
/// across restarts.
pub fn run_name(uid: &str, step: BackupStep) -> String {
    let short: String = uid
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    let step = match step {
        BackupStep::CollectStandbyLogs => "standby-logs",
        BackupStep::BackupDatabase => "database",
        BackupStep::CollectMasterLogs => "master-logs",
        BackupStep::StopStandby => "stop-standby",
        BackupStep::StopMaster => "stop-master",
        other => return format!("esc-backup-{short}-{other:?}").to_lowercase(),
    };
    format!("esc-backup-{short}-{step}")
}

/// The escadm command of a remote step.
fn remote_command(step: BackupStep) -> RemoteCommand {
    match step {
        BackupStep::BackupDatabase => RemoteCommand::Backup,
        BackupStep::StopStandby | BackupStep::StopMaster => RemoteCommand::Stop,
        _ => RemoteCommand::LogCollect,
    }
}

/// The mover Job's name: the EscBackup's name, cut so the Job's pods stay within 63 characters.
pub fn mover_job_name(name: &str, uid: &str) -> String {
    let short: String = uid
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(5)
        .collect();
    let head: String = name.chars().take(40).collect();
    format!("{}-mover-{short}", head.trim_end_matches(['-', '.']))
}

/// The steps of this run in order, each with whether it applies.
fn sequence(spec: &EscBackupSpec, topology: Topology) -> Vec<(BackupStep, bool)> {
    let ha = topology == Topology::Ha;
    vec![
        (BackupStep::Preflight, true),
        (BackupStep::CollectStandbyLogs, ha && spec.include.logs),
        (BackupStep::EnterMaintenance, true),
        (BackupStep::BackupDatabase, true),
        (BackupStep::ExitMaintenance, true),
        (BackupStep::CollectMasterLogs, spec.include.logs),
        (BackupStep::Upload, true),
        (BackupStep::Verify, true),
        (BackupStep::Cleanup, true),
        (
            BackupStep::StopStandby,
            ha && spec.after_backup == AfterBackup::StopServices,
        ),
        (
            BackupStep::StopMaster,
            spec.after_backup == AfterBackup::StopServices,
        ),
    ]
}

/// Decides. Pure: same input, same output.
pub fn plan(input: &BackupInput<'_>) -> BackupPlan {
    let mut p = Planner {
        input,
        status: input.previous.clone(),
        action: None,
        events: Vec::new(),
        requeue: None,
    };
    p.status.observed_generation = input.generation;
    match input.previous.phase {
        Some(RunPhase::Succeeded | RunPhase::Failed) => {}
        None | Some(RunPhase::Pending) => p.admit(),
        Some(RunPhase::Running) => p.advance(),
    }
    p.status.conditions = super::conditions::merge(
        &p.status.conditions,
        &super::run::run_conditions(&p.status, "Succeeded"),
        input.generation,
        &input.now,
    );
    BackupPlan {
        status: p.status,
        action: p.action,
        events: p.events,
        requeue: p.requeue,
    }
}

struct Planner<'i, 'a> {
    input: &'i BackupInput<'a>,
    status: EscBackupStatus,
    action: Option<BackupAction>,
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

    /// Not started yet: wait for this run's turn, then start with the preflight.
    fn admit(&mut self) {
        if self.input.deleting {
            // Never started: nothing to undo.
            self.finish_failed(Problem::new(
                "Cancelled",
                "deleted before it started; nothing was done on ESC",
            ));
            return;
        }
        if self.input.queue_position > 0 {
            let n = self.input.queue_position;
            self.status.phase = Some(RunPhase::Pending);
            self.status.queue_position = Some(n);
            self.status.message = Some(format!(
                "waiting for {n} earlier backup or restore run(s) on EscCluster {}: one run at a \
                 time per cluster",
                self.cluster_name()
            ));
            self.requeue = Some(Duration::from_secs(15));
            return;
        }
        self.status.phase = Some(RunPhase::Running);
        self.status.queue_position = None;
        self.status.message = None;
        self.status.started_at = Some(self.now());
        self.events.push(PlannedEvent::normal(
            "Started",
            format!("backup of EscCluster {} started", self.cluster_name()),
        ));
        self.enter(BackupStep::Preflight);
    }

    /// Running: carry on with the current step.
    fn advance(&mut self) {
        let Some(step) = current_step(&self.status) else {
            // A running phase without a running step cannot be resumed safely: say so.
            self.fail(Problem::new(
                "InconsistentStatus",
                "status says Running but no step is running; the run cannot be resumed: create a \
                 new EscBackup",
            ));
            return;
        };
        if self.input.deleting && self.status.failure.is_none() && step != BackupStep::Cleanup {
            self.fail(Problem::new(
                "Cancelled",
                "the EscBackup was deleted while running",
            ));
            return;
        }
        match step {
            BackupStep::Preflight => self.preflight(),
            BackupStep::CollectStandbyLogs
            | BackupStep::BackupDatabase
            | BackupStep::CollectMasterLogs
            | BackupStep::StopStandby
            | BackupStep::StopMaster => self.remote(step),
            BackupStep::EnterMaintenance => self.await_maintenance(),
            BackupStep::ExitMaintenance => self.await_operation(),
            BackupStep::Upload => self.upload(),
            BackupStep::Verify => self.verify(),
            BackupStep::Cleanup => self.cleanup(),
        }
    }

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
                    "EscCluster {} is Degraded ({why}); a backup needs a healthy cluster: fix it, \
                     then create a new EscBackup",
                    self.cluster_name()
                ),
            ));
        }
        if !cluster.ready {
            return self.fail(Problem::new(
                "ClusterNotReady",
                format!(
                    "EscCluster {} is not Ready ({}); a backup needs a Ready cluster",
                    self.cluster_name(),
                    cluster.not_ready_message
                ),
            ));
        }
        if cluster.master.is_none() {
            return self.fail(Problem::new(
                "MasterUnknown",
                format!("EscCluster {} names no MASTER", self.cluster_name()),
            ));
        }
        if cluster.topology == Topology::Ha && cluster.standby.is_none() {
            return self.fail(Problem::new(
                "StandbyUnknown",
                format!("EscCluster {} names no standby node", self.cluster_name()),
            ));
        }
        if let Err(problem) = &self.input.secrets {
            return self.fail(problem.clone());
        }
        self.next("cluster Ready, Secrets present");
    }

    /// The node a remote step runs on.
    fn node_of(&self, step: BackupStep) -> Option<String> {
        let cluster = self.input.cluster.as_ref()?;
        match step {
            BackupStep::CollectStandbyLogs | BackupStep::StopStandby => cluster.standby.clone(),
            _ => cluster.master.clone(),
        }
    }

    fn remote(&mut self, step: BackupStep) {
        match &self.input.observed {
            Some(Observed::Remote(RemoteOutcome::Finished(files))) => {
                for f in files {
                    if !self.status.node_files.contains(f) {
                        self.status.node_files.push(f.clone());
                    }
                }
                let what = files
                    .iter()
                    .filter(|f| f.kind != NodeFileKind::RunDirectory)
                    .map(|f| format!("{} on {}", f.path, f.node))
                    .collect::<Vec<_>>()
                    .join(", ");
                self.next(&if what.is_empty() {
                    "done".to_owned()
                } else {
                    format!("wrote {what}")
                });
            }
            Some(Observed::Remote(RemoteOutcome::Failed(problem))) => self.fail(problem.clone()),
            Some(Observed::Remote(
                outcome @ (RemoteOutcome::Running | RemoteOutcome::Unreachable(_)),
            )) => {
                let limit = step_timeout(remote_command(step));
                match super::run::still_running(&step, outcome, self.step_age(), limit) {
                    Ok(after) => self.requeue = Some(after),
                    Err(problem) => self.fail(problem),
                }
            }
            _ => self.remote_action(step),
        }
    }

    fn remote_action(&mut self, step: BackupStep) {
        let Some(node) = self.node_of(step) else {
            return self.fail(Problem::new(
                "NodeUnknown",
                format!(
                    "the node for {step:?} is not known: is EscCluster {} still Ready?",
                    self.cluster_name()
                ),
            ));
        };
        let command = remote_command(step);
        self.action = Some(BackupAction::Remote {
            node,
            run: run_name(self.input.uid, step),
            command,
        });
    }

    fn await_maintenance(&mut self) {
        use super::run::{MaintenanceEntry, maintenance_entry, open_window};
        match maintenance_entry(self.input.cluster.as_ref(), self.step_age()) {
            MaintenanceEntry::Entered => {
                self.status.maintenance = Some(open_window(&self.input.now));
                self.next("ESC is in maintenance mode, held by this backup");
            }
            MaintenanceEntry::Waiting => self.requeue = Some(Duration::from_secs(2)),
            MaintenanceEntry::TimedOut(why) => self.fail(Problem::new(
                "MaintenanceNotEntered",
                format!(
                    "ESC did not enter maintenance mode within {}s ({why}); when transactions \
                     are in flight, retry later with a new EscBackup",
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
                    "EscCluster {} still lists this backup as a maintenance holder {}s after the \
                     database backup; see its Maintenance condition",
                    self.cluster_name(),
                    MAINTENANCE_EXIT_WAIT.as_secs()
                ),
            )),
            MaintenanceExit::Released => {}
        }
        self.close_window();
        self.next("maintenance holder released");
    }

    /// Records the end of the maintenance window (at most once).
    fn close_window(&mut self) {
        super::run::close_window(&mut self.status.maintenance, &self.input.now);
    }

    fn upload(&mut self) {
        let name = self
            .status
            .mover_job
            .clone()
            .unwrap_or_else(|| mover_job_name(self.input.name, self.input.uid));
        match &self.input.observed {
            Some(Observed::Job(JobView::Succeeded(stored))) => {
                let created_at = self.status.started_at.clone().unwrap_or_else(|| self.now());
                let esc_version = self
                    .input
                    .cluster
                    .as_ref()
                    .and_then(|c| c.esc_version.clone())
                    .unwrap_or_default();
                self.status.artifact = Some(Artifact {
                    uri: stored.uri.clone(),
                    size: stored.size as i64,
                    sha256: stored.sha256.clone(),
                    esc_version,
                    created_at,
                });
                self.status.progress = Some(TransferProgress {
                    bytes: stored.size as i64,
                    total_bytes: Some(stored.size as i64),
                    bytes_per_second: self
                        .status
                        .progress
                        .as_ref()
                        .and_then(|p| p.bytes_per_second),
                });
                self.next(&format!("stored {} ({} bytes)", stored.uri, stored.size));
            }
            Some(Observed::Job(JobView::Failed(problem))) => self.fail(problem.clone()),
            Some(Observed::Job(JobView::Running(progress))) => {
                if progress.is_some() {
                    self.status.progress = progress.clone();
                }
                self.requeue = Some(Duration::from_secs(5));
            }
            _ => {
                self.status.mover_job = Some(name.clone());
                self.action = Some(BackupAction::Mover { name });
            }
        }
    }

    fn verify(&mut self) {
        let Some(expected) = self.status.artifact.clone() else {
            return self.fail(Problem::new(
                "NoArtifact",
                "the upload recorded no artifact to verify",
            ));
        };
        match &self.input.observed {
            Some(Observed::Stored(Ok(stored))) => {
                if stored.size != expected.size as u64 {
                    return self.fail(Problem::new(
                        "SizeMismatch",
                        format!(
                            "{} holds {} bytes, the mover sent {}",
                            expected.uri, stored.size, expected.size
                        ),
                    ));
                }
                if !stored.sha256.eq_ignore_ascii_case(&expected.sha256) {
                    return self.fail(Problem::new(
                        "ChecksumMismatch",
                        format!(
                            "{} records SHA-256 {}, the mover computed {}",
                            expected.uri, stored.sha256, expected.sha256
                        ),
                    ));
                }
                self.next("stored size and SHA-256 match");
            }
            Some(Observed::Stored(Err(problem))) => self.fail(problem.clone()),
            _ => self.action = Some(BackupAction::Verify),
        }
    }

    fn cleanup(&mut self) {
        match &self.input.observed {
            Some(Observed::Cleaned(result)) => {
                if let Err(problem) = result {
                    self.events.push(PlannedEvent::warning(
                        "CleanupIncomplete",
                        format!(
                            "the run's temporary files could not all be removed ({}): remove \
                             by hand what remains of them, on the ESC nodes: {}",
                            problem.message,
                            self.files_listing()
                        ),
                    ));
                }
                let note = match result {
                    Ok(()) => "temporary files removed".to_owned(),
                    Err(p) => format!("some temporary files remain: {}", p.message),
                };
                if let Some(failure) = self.status.failure.clone() {
                    self.end_step(StepState::Succeeded, &note);
                    self.finish_failed(Problem::new(failure.reason, failure.message));
                } else {
                    self.next(&note);
                }
            }
            _ => {
                let stop_mover = (self.status.failure.is_some())
                    .then(|| self.status.mover_job.clone())
                    .flatten();
                let store_leftovers_since = stop_mover
                    .as_ref()
                    .and_then(|_| self.step_started(BackupStep::Upload))
                    .map(|t| Time(t.0 - STORE_CLOCK_SKEW));
                if self.status.node_files.is_empty() && stop_mover.is_none() {
                    self.input_less_cleanup();
                    return;
                }
                self.action = Some(BackupAction::Cleanup {
                    files: self.status.node_files.clone(),
                    stop_mover,
                    store_leftovers_since,
                });
            }
        }
    }

    /// Nothing to clean: the step ends at once.
    fn input_less_cleanup(&mut self) {
        if let Some(failure) = self.status.failure.clone() {
            self.end_step(StepState::Succeeded, "nothing to remove");
            self.finish_failed(Problem::new(failure.reason, failure.message));
        } else {
            self.next("nothing to remove");
        }
    }

    fn files_listing(&self) -> String {
        self.status
            .node_files
            .iter()
            .map(|f| format!("{}:{}", f.node, f.path))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// When `step` started, if it did.
    fn step_started(&self, step: BackupStep) -> Option<Time> {
        self.status
            .steps
            .iter()
            .find(|s| s.name == step)
            .and_then(|s| s.started_at.clone())
    }

    /// How long the current step has run.
    fn step_age(&self) -> Duration {
        super::run::step_age(&self.status.steps, &self.input.now)
    }

    fn end_step(&mut self, state: StepState, message: &str) {
        super::run::end_step(&mut self.status.steps, state, message, &self.input.now);
    }

    /// The current step succeeded: on to the next one that applies.
    fn next(&mut self, message: &str) {
        let Some(current) = current_step(&self.status) else {
            return;
        };
        self.end_step(StepState::Succeeded, message);
        let topology = self
            .input
            .cluster
            .as_ref()
            .map(|c| c.topology)
            .unwrap_or(Topology::Standalone);
        let mut after = sequence(self.input.spec, topology)
            .into_iter()
            .skip_while(|(s, _)| *s != current)
            .skip(1);
        for (step, applies) in after.by_ref() {
            if applies {
                return self.enter(step);
            }
            self.status.steps.push(StepStatus {
                name: step,
                state: StepState::Skipped,
                started_at: None,
                finished_at: None,
                message: None,
            });
        }
        self.finish_succeeded();
    }

    /// Starts `step`: recorded Running, then its first action (the caller stores the status
    /// before acting).
    fn enter(&mut self, step: BackupStep) {
        if let Some(note) = self.step_note(step) {
            self.events
                .push(PlannedEvent::normal(&format!("{step:?}"), note));
        }
        self.status.steps.push(StepStatus {
            name: step,
            state: StepState::Running,
            started_at: Some(self.now()),
            finished_at: None,
            message: None,
        });
        match step {
            BackupStep::Preflight => self.preflight(),
            BackupStep::CollectStandbyLogs
            | BackupStep::BackupDatabase
            | BackupStep::CollectMasterLogs
            | BackupStep::StopStandby
            | BackupStep::StopMaster => {
                if let Some(node) = self.node_of(step) {
                    let run = run_name(self.input.uid, step);
                    let dir = NodeFile {
                        node,
                        kind: NodeFileKind::RunDirectory,
                        path: format!("{}/{run}", self.input.run_base.trim_end_matches('/')),
                    };
                    if !self.status.node_files.contains(&dir) {
                        self.status.node_files.push(dir);
                    }
                }
                self.remote_action(step);
            }
            BackupStep::EnterMaintenance => {
                // The EscCluster controller sees this step and adds the holder.
                self.requeue = Some(Duration::from_secs(2));
            }
            BackupStep::ExitMaintenance => {
                self.close_window_pending();
            }
            BackupStep::Upload => self.upload_enter(),
            BackupStep::Verify => self.action = Some(BackupAction::Verify),
            BackupStep::Cleanup => self.cleanup(),
        }
    }

    /// The Event that announces `step` (the preflight has its own `Started`).
    fn step_note(&self, step: BackupStep) -> Option<String> {
        let master = self
            .input
            .cluster
            .as_ref()
            .and_then(|c| c.master.clone())
            .unwrap_or_default();
        let standby = self
            .input
            .cluster
            .as_ref()
            .and_then(|c| c.standby.clone())
            .unwrap_or_default();
        Some(match step {
            BackupStep::Preflight => return None,
            BackupStep::CollectStandbyLogs => {
                format!("escadm log collect on the standby {standby}")
            }
            BackupStep::EnterMaintenance => {
                "asking the EscCluster to enter maintenance mode for escadm backup".to_owned()
            }
            BackupStep::BackupDatabase => format!("escadm backup on {master}"),
            BackupStep::ExitMaintenance => {
                "database backed up; releasing maintenance mode at once".to_owned()
            }
            BackupStep::CollectMasterLogs => format!("escadm log collect on {master}"),
            BackupStep::Upload => "the mover Job streams the artifact to the target".to_owned(),
            BackupStep::Verify => "reading the stored artifact's size and SHA-256 back".to_owned(),
            BackupStep::Cleanup => "removing the run's temporary files from the nodes".to_owned(),
            BackupStep::StopStandby => {
                format!("afterBackup StopServices: escadm stop on {standby}")
            }
            BackupStep::StopMaster => format!("afterBackup StopServices: escadm stop on {master}"),
        })
    }

    fn close_window_pending(&mut self) {
        // Released the moment this step is stored: the holder exists only in EnterMaintenance
        // and BackupDatabase. Wait for the cluster to show it.
        self.requeue = Some(Duration::from_secs(1));
    }

    fn upload_enter(&mut self) {
        let name = mover_job_name(self.input.name, self.input.uid);
        self.status.mover_job = Some(name.clone());
        self.action = Some(BackupAction::Mover { name });
    }

    /// The current step failed: record why, then clean up (the holder is already gone: a run
    /// with a failure holds nothing).
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
        self.status.failure = Some(RunFailure {
            step: step.map(|s| format!("{s:?}")).unwrap_or_default(),
            reason: problem.reason.clone(),
            message: problem.message.clone(),
        });
        self.close_window();
        if step == Some(BackupStep::Cleanup) || self.status.phase != Some(RunPhase::Running) {
            return self.finish_failed(problem);
        }
        self.enter(BackupStep::Cleanup);
    }

    fn finish_failed(&mut self, problem: Problem) {
        let step = self
            .status
            .failure
            .as_ref()
            .map(|f| f.step.clone())
            .filter(|s| !s.is_empty());
        self.status.phase = Some(RunPhase::Failed);
        self.status.queue_position = None;
        self.status.completed_at = Some(self.now());
        let resumed = if self.status.maintenance.is_some() {
            " ESC was returned to operation (unless another holder keeps it in maintenance)."
        } else {
            ""
        };
        self.status.message = Some(format!(
            "{}{} ({}).{resumed}",
            step.map(|s| format!("failed in {s}: ")).unwrap_or_default(),
            problem.message,
            problem.reason
        ));
        if self.status.failure.is_none() {
            self.status.failure = Some(RunFailure {
                step: String::new(),
                reason: problem.reason.clone(),
                message: problem.message.clone(),
            });
        }
    }

    fn finish_succeeded(&mut self) {
        self.status.phase = Some(RunPhase::Succeeded);
        self.status.completed_at = Some(self.now());
        let message = match &self.status.artifact {
            Some(a) => format!("stored and verified {} ({} bytes)", a.uri, a.size),
            None => "done".to_owned(),
        };
        self.status.message = Some(message.clone());
        self.events
            .push(PlannedEvent::normal("Succeeded", &message));
    }
}

#[cfg(test)]
mod tests;
