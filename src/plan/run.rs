//! What the backup and restore plans share: the EscCluster as a run sees it, detached escadm
//! commands and their outcomes, and the maintenance timing rules. Pure; imports
//! [`crate::api`] and [`super::report`].

use std::time::Duration;

use super::report::Problem;
use crate::api::{MaintenanceWindow, NodeFile, StepState, StepStatus, Time, Topology};

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
