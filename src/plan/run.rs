//! What the backup and restore plans share: the EscCluster as a run sees it, detached escadm
//! commands and their outcomes, and the maintenance timing rules. Pure; imports
//! [`crate::api`] and [`super::report`].

use std::time::Duration;

use std::fmt::Debug;

use super::conditions::Desired;
use super::report::Problem;
use crate::api::{
    MaintenanceWindow, NodeFile, RunPhase, RunStatus, StepState, StepStatus, Time, Topology,
};

/// Condition types of a run (EscBackup, EscRestore). `Ready`, `Reconciling` and `Stalled` are
/// the kstatus set that Flux and Argo CD health checks read: a run is `Ready` only once it
/// succeeded, `Reconciling` while queued or running, and `Stalled` when it failed for good, so a
/// pipeline that waits for it fails at once instead of timing out. `Complete` and `Failed` are
/// for `kubectl wait --for=condition=Complete`, as on a Job.
pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";
pub const COMPLETE: &str = "Complete";
pub const FAILED: &str = "Failed";

/// How long a run waits for ESC to enter maintenance (in-flight transactions draining) before
/// it gives up.
pub const MAINTENANCE_ENTRY_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a run waits for the cluster to drop its holder before it moves on anyway (ESC's
/// return to operation is then the EscCluster's business, shown in its conditions).
pub const MAINTENANCE_EXIT_WAIT: Duration = Duration::from_secs(60);

/// File name of the database archive inside the backup step's run directory.
pub const DATABASE_FILE: &str = "esc-db.tar.bz2";

/// The EscCluster as this run needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterView {
    pub topology: Topology,
    /// `Ready=True` on the EscCluster.
    pub ready: bool,
    /// The `Ready` condition's message when not ready (what the user sees there).
    pub not_ready_message: String,
    /// `Degraded=True`: its message.
    pub degraded: Option<String>,
    /// The MASTER (or the standalone node), as the cluster's status names it.
    pub master: Option<String>,
    /// HA: the other node.
    pub standby: Option<String>,
    /// The master's ESC version.
    pub esc_version: Option<String>,
    /// The cluster's status lists this run as a maintenance holder.
    pub lists_this_holder: bool,
    /// The cluster's status says ESC is in maintenance.
    pub in_maintenance: bool,
    /// The cluster's `Maintenance` condition message (why entering has not happened yet).
    pub maintenance_message: String,
}

/// A detached escadm run, as polled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteOutcome {
    /// Still running (or just started).
    Running,
    /// Exited 0 and its output was understood; the files it wrote.
    Finished(Vec<NodeFile>),
    /// Failed, was lost, or its output was not understood.
    Failed(Problem),
    /// The node could not be asked (connection refused, timed out): the run itself may well go
    /// on there. Asked again until the step's time is up.
    Unreachable(Problem),
}

/// A detached step that still runs, or whose node could not be asked: when to look again, or
/// the run's failure once the step has had `limit`. An unreachable node is asked less often
/// (the command may well go on there), and its last error is kept for the failure's message.
pub fn still_running(
    step: &impl Debug,
    outcome: &RemoteOutcome,
    age: Duration,
    limit: Duration,
) -> Result<Duration, Problem> {
    if age >= limit {
        let last = match outcome {
            RemoteOutcome::Unreachable(p) => format!("; last: {}", p.message),
            _ => String::new(),
        };
        return Err(Problem::new(
            "StepTimedOut",
            format!(
                "{step:?} did not finish within {} minutes{last}",
                limit.as_secs() / 60
            ),
        ));
    }
    Ok(match outcome {
        RemoteOutcome::Unreachable(_) => Duration::from_secs(10),
        _ => Duration::from_secs(2),
    })
}

/// What a run's `EnterMaintenance` step sees at a look.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MaintenanceEntry {
    /// The cluster lists this run as a holder and ESC is in maintenance: the window is open.
    Entered,
    /// Not yet: look again shortly.
    Waiting,
    /// Not within [`MAINTENANCE_ENTRY_TIMEOUT`]; why, as the cluster says it.
    TimedOut(String),
}

/// Whether ESC is in maintenance for this run, after `waited` in the step. Fail closed: a
/// cluster that is gone or does not list this run never counts as entered.
pub fn maintenance_entry(cluster: Option<&ClusterView>, waited: Duration) -> MaintenanceEntry {
    match cluster {
        Some(c) if c.lists_this_holder && c.in_maintenance => MaintenanceEntry::Entered,
        _ if waited < MAINTENANCE_ENTRY_TIMEOUT => MaintenanceEntry::Waiting,
        other => MaintenanceEntry::TimedOut(
            other
                .map(|c| c.maintenance_message.clone())
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| "the EscCluster is gone".to_owned()),
        ),
    }
}

/// What a run's `ExitMaintenance` step sees at a look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaintenanceExit {
    /// The cluster no longer lists this run as a holder.
    Released,
    /// Still listed: look again shortly.
    Waiting,
    /// Still listed after [`MAINTENANCE_EXIT_WAIT`]: the run moves on and says so (returning
    /// to operation is then the EscCluster's business, shown in its conditions).
    StillHeld,
}

pub fn maintenance_exit(cluster: Option<&ClusterView>, waited: Duration) -> MaintenanceExit {
    let held = cluster.is_some_and(|c| c.lists_this_holder);
    match (held, waited < MAINTENANCE_EXIT_WAIT) {
        (false, _) => MaintenanceExit::Released,
        (true, true) => MaintenanceExit::Waiting,
        (true, false) => MaintenanceExit::StillHeld,
    }
}

/// A maintenance window opening at `now`.
pub fn open_window(now: &Time) -> MaintenanceWindow {
    MaintenanceWindow {
        started_at: now.clone(),
        ended_at: None,
        seconds: None,
    }
}

/// How long a detached escadm step may take before the run gives up on it (the driver's
/// timeouts for the same commands run attached).
pub fn step_timeout(command: RemoteCommand) -> Duration {
    match command {
        RemoteCommand::LogCollect => Duration::from_secs(15 * 60),
        RemoteCommand::Backup => Duration::from_secs(30 * 60),
        RemoteCommand::Stop | RemoteCommand::Restart => Duration::from_secs(10 * 60),
        RemoteCommand::Restore => Duration::from_secs(30 * 60),
    }
}

/// A detached escadm command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteCommand {
    LogCollect,
    Backup,
    Stop,
    /// `escadm restore --file` (the staged file).
    Restore,
    Restart,
}

/// The first 12 alphanumerics of a uid: unique enough to name a run's directories and Job.
pub fn short_uid(uid: &str, len: usize) -> String {
    uid.chars()
        .filter(char::is_ascii_alphanumeric)
        .take(len)
        .collect()
}

/// How long the run's current (last) step has run at `now`.
pub fn step_age<S>(steps: &[StepStatus<S>], now: &Time) -> Duration {
    let started = steps
        .last()
        .and_then(|s| s.started_at.as_ref())
        .map(|t| t.0.as_second())
        .unwrap_or_else(|| now.0.as_second());
    Duration::from_secs((now.0.as_second() - started).max(0) as u64)
}

/// Ends the current step, if it runs, in `state` with `message`.
pub fn end_step<S>(steps: &mut [StepStatus<S>], state: StepState, message: &str, now: &Time) {
    if let Some(last) = steps.last_mut()
        && last.state == StepState::Running
    {
        last.state = state;
        last.finished_at = Some(now.clone());
        last.message = Some(message.to_owned());
    }
}

/// Records the end of a maintenance window (at most once).
pub fn close_window(window: &mut Option<MaintenanceWindow>, now: &Time) {
    if let Some(w) = window
        && w.ended_at.is_none()
    {
        w.seconds = Some(now.0.as_second() - w.started_at.0.as_second());
        w.ended_at = Some(now.clone());
    }
}

/// The conditions of a run, derived from its status alone (so a resumed operator writes the same
/// list, and an unchanged run writes nothing). `succeeded_reason` is the `Ready` reason of a
/// successful run (`Succeeded`, or `DryRun` for a restore that only checked).
///
/// `Reconciling` and `Stalled` are present only while true, as Flux's own kinds do; `Complete`
/// and `Failed` only once the run has ended.
pub fn run_conditions<S: Debug>(run: &RunStatus<S>, succeeded_reason: &str) -> Vec<Desired> {
    let message = run.message.clone().unwrap_or_default();
    match run.phase {
        None => Vec::new(),
        Some(RunPhase::Pending) => {
            let message = if message.is_empty() {
                "accepted; waiting for its turn".to_owned()
            } else {
                message
            };
            vec![
                Desired::new(READY, false, "Queued", message.clone()),
                Desired::new(RECONCILING, true, "Queued", message),
            ]
        }
        Some(RunPhase::Running) => {
            let step = run
                .steps
                .last()
                .filter(|s| s.state == StepState::Running)
                .map(|s| format!("{:?}", s.name));
            let (reason, message) = match (&run.failure, step) {
                (Some(f), step) => (
                    "CleaningUp",
                    format!(
                        "failed in {} ({}): {}; undoing what the run changed{}",
                        if f.step.is_empty() {
                            "preflight"
                        } else {
                            &f.step
                        },
                        f.reason,
                        f.message,
                        step.map(|s| format!(" ({s})")).unwrap_or_default()
                    ),
                ),
                (None, Some(step)) => ("Running", format!("step {step} is running")),
                (None, None) => ("Running", "running".to_owned()),
            };
            vec![
                Desired::new(READY, false, reason, message.clone()),
                Desired::new(RECONCILING, true, reason, message),
            ]
        }
        Some(RunPhase::Succeeded) => vec![
            Desired::new(READY, true, succeeded_reason, message.clone()),
            Desired::new(COMPLETE, true, succeeded_reason, message.clone()),
            Desired::new(FAILED, false, succeeded_reason, message),
        ],
        Some(RunPhase::Failed) => {
            // A failed phase without a recorded failure is still a failure; never Ready.
            let reason = run
                .failure
                .as_ref()
                .map_or("Failed".to_owned(), |f| f.reason.clone());
            vec![
                Desired::new(READY, false, reason.clone(), message.clone()),
                Desired::new(STALLED, true, reason.clone(), message.clone()),
                Desired::new(COMPLETE, false, "Failed", message.clone()),
                Desired::new(FAILED, true, reason, message),
            ]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{BackupStep, RunFailure};

    fn status(phase: Option<RunPhase>) -> RunStatus<BackupStep> {
        RunStatus {
            phase,
            ..serde_json::from_str("{}").unwrap()
        }
    }

    fn step(name: BackupStep, state: StepState) -> StepStatus<BackupStep> {
        StepStatus {
            name,
            state,
            started_at: None,
            finished_at: None,
            message: None,
        }
    }

    fn kstatus(conditions: &[Desired]) -> Vec<(&str, bool, &str)> {
        conditions
            .iter()
            .map(|c| (c.type_, c.status, c.reason.as_str()))
            .collect()
    }

    #[test]
    fn a_run_is_ready_only_once_it_succeeded_and_stalled_once_it_failed() {
        assert!(run_conditions(&status(None), "Succeeded").is_empty());
        let queued = RunStatus {
            queue_position: Some(2),
            message: Some("waiting for 2 earlier runs".into()),
            ..status(Some(RunPhase::Pending))
        };
        assert_eq!(
            kstatus(&run_conditions(&queued, "Succeeded")),
            [(READY, false, "Queued"), (RECONCILING, true, "Queued")]
        );
        let running = RunStatus {
            steps: vec![
                step(BackupStep::Preflight, StepState::Succeeded),
                step(BackupStep::BackupDatabase, StepState::Running),
            ],
            ..status(Some(RunPhase::Running))
        };
        let conditions = run_conditions(&running, "Succeeded");
        assert_eq!(
            kstatus(&conditions),
            [(READY, false, "Running"), (RECONCILING, true, "Running")]
        );
        assert_eq!(conditions[0].message, "step BackupDatabase is running");
        let failure = RunFailure {
            step: "Upload".into(),
            reason: "UploadFailed".into(),
            message: "the bucket refused the write".into(),
        };
        let cleaning = RunStatus {
            failure: Some(failure.clone()),
            steps: vec![step(BackupStep::Cleanup, StepState::Running)],
            ..status(Some(RunPhase::Running))
        };
        let conditions = run_conditions(&cleaning, "Succeeded");
        // Not terminal yet: the cleanup still runs, so not Stalled.
        assert_eq!(
            kstatus(&conditions),
            [
                (READY, false, "CleaningUp"),
                (RECONCILING, true, "CleaningUp")
            ]
        );
        assert!(conditions[0].message.contains("UploadFailed"));
        let failed = RunStatus {
            failure: Some(failure),
            message: Some("failed in Upload: the bucket refused the write".into()),
            ..status(Some(RunPhase::Failed))
        };
        assert_eq!(
            kstatus(&run_conditions(&failed, "Succeeded")),
            [
                (READY, false, "UploadFailed"),
                (STALLED, true, "UploadFailed"),
                (COMPLETE, false, "Failed"),
                (FAILED, true, "UploadFailed"),
            ]
        );
        assert_eq!(
            kstatus(&run_conditions(
                &status(Some(RunPhase::Succeeded)),
                "DryRun"
            )),
            [
                (READY, true, "DryRun"),
                (COMPLETE, true, "DryRun"),
                (FAILED, false, "DryRun"),
            ]
        );
    }

    fn view(lists_this_holder: bool, in_maintenance: bool) -> ClusterView {
        ClusterView {
            topology: Topology::Ha,
            ready: true,
            not_ready_message: String::new(),
            degraded: None,
            master: Some("esc-a".into()),
            standby: Some("esc-b".into()),
            esc_version: Some("5.10.0.86".into()),
            lists_this_holder,
            in_maintenance,
            maintenance_message: "waiting: 3 transactions in flight".into(),
        }
    }

    #[test]
    fn maintenance_counts_as_entered_only_for_this_holder_and_times_out_with_the_reason() {
        let soon = Duration::from_secs(1);
        let late = MAINTENANCE_ENTRY_TIMEOUT;
        let entered = view(true, true);
        assert_eq!(
            maintenance_entry(Some(&entered), soon),
            MaintenanceEntry::Entered
        );
        // ESC in maintenance for someone else, or listed but not in maintenance yet, or a
        // cluster that is gone: never entered (fail closed).
        for cluster in [Some(view(false, true)), Some(view(true, false)), None] {
            assert_eq!(
                maintenance_entry(cluster.as_ref(), soon),
                MaintenanceEntry::Waiting
            );
        }
        assert_eq!(
            maintenance_entry(Some(&view(true, false)), late),
            MaintenanceEntry::TimedOut("waiting: 3 transactions in flight".into())
        );
        assert_eq!(
            maintenance_entry(None, late),
            MaintenanceEntry::TimedOut("the EscCluster is gone".into())
        );
    }

    #[test]
    fn a_holder_is_released_when_the_cluster_drops_it_or_after_the_wait() {
        let soon = Duration::from_secs(1);
        assert_eq!(
            maintenance_exit(Some(&view(false, true)), soon),
            MaintenanceExit::Released
        );
        assert_eq!(maintenance_exit(None, soon), MaintenanceExit::Released);
        assert_eq!(
            maintenance_exit(Some(&view(true, true)), soon),
            MaintenanceExit::Waiting
        );
        assert_eq!(
            maintenance_exit(Some(&view(true, true)), MAINTENANCE_EXIT_WAIT),
            MaintenanceExit::StillHeld
        );
    }

    #[test]
    fn a_running_step_is_looked_at_again_until_its_time_is_up() {
        let limit = Duration::from_secs(600);
        let early = Duration::from_secs(5);
        let unreachable = RemoteOutcome::Unreachable(Problem::new("ConnectTimeout", "no answer"));
        assert_eq!(
            still_running(&"Backup", &RemoteOutcome::Running, early, limit),
            Ok(Duration::from_secs(2))
        );
        assert_eq!(
            still_running(&"Backup", &unreachable, early, limit),
            Ok(Duration::from_secs(10))
        );
        let late = still_running(&"Backup", &unreachable, limit, limit).unwrap_err();
        assert_eq!(late.reason, "StepTimedOut");
        assert_eq!(
            late.message,
            "\"Backup\" did not finish within 10 minutes; last: no answer"
        );
    }

    #[test]
    fn a_failed_phase_without_a_recorded_failure_is_never_ready() {
        let conditions = run_conditions(&status(Some(RunPhase::Failed)), "Succeeded");
        assert_eq!(
            kstatus(&conditions),
            [
                (READY, false, "Failed"),
                (STALLED, true, "Failed"),
                (COMPLETE, false, "Failed"),
                (FAILED, true, "Failed"),
            ]
        );
    }

    #[test]
    fn an_unchanged_run_gives_the_same_conditions() {
        let running = RunStatus {
            steps: vec![step(BackupStep::Upload, StepState::Running)],
            ..status(Some(RunPhase::Running))
        };
        let now = Time(jiff::Timestamp::from_second(1_000).unwrap());
        let later = Time(jiff::Timestamp::from_second(2_000).unwrap());
        let wanted = run_conditions(&running, "Succeeded");
        let first = super::super::conditions::merge(&[], &wanted, Some(1), &now);
        let second = super::super::conditions::merge(&first, &wanted, Some(1), &later);
        assert_eq!(first, second);
    }
}
