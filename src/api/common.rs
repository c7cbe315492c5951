//! Types shared by the kinds: references to Secrets and clusters, durations, conditions.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
pub use kube::core::Duration;

/// The API group of every kind of this operator.
pub const GROUP: &str = "escoperator.dev";

/// A reference by name to an object in the namespace of the referring object: a Secret,
/// an EscCluster or an EscBackup, as the field that holds it says.
///
/// Secrets are read at fixed keys documented on each field, so Secrets of the standard types
/// (`kubernetes.io/ssh-auth`, `kubernetes.io/basic-auth`) work as they are.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
pub struct LocalObjectRef {
    /// Name of the object, in the same namespace.
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new(
        "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')"
    ).message("name must be the name of an object in the same namespace: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters"))]
    pub name: String,
}

/// CEL: a Go-style duration (`30s`, `5m`, `1h30m`) — the format `kube::core::Duration` parses.
/// The regular expression runs first, so `duration()` never sees a malformed string.
#[macro_export]
#[doc(hidden)]
macro_rules! cel_duration_at_least {
    ($min:literal) => {
        concat!(
            "self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$') && duration(self) >= duration('",
            $min,
            "')"
        )
    };
}

/// The lifecycle of a backup or restore run.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RunPhase {
    /// Accepted, waiting for its turn on the cluster or for preflight.
    Pending,
    /// Steps are being carried out.
    Running,
    /// Every step succeeded and the result was verified.
    Succeeded,
    /// A step failed; `message` and the conditions say which and why.
    Failed,
}

/// The state of one step of a backup or restore.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum StepState {
    Running,
    Succeeded,
    Failed,
    /// Not needed for this run (for example standby steps on a standalone cluster).
    Skipped,
}

/// One step of a run as persisted in status, so a restarted operator resumes where it was.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepStatus<S> {
    /// Which step.
    pub name: S,
    pub state: StepState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// What happened, for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A stored backup artifact: where it is and what it holds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// `s3://bucket/key` or `scp://user@host:port/path`. Never holds credentials.
    pub uri: String,
    /// Size in bytes.
    pub size: i64,
    /// Hex SHA-256 of the whole artifact.
    pub sha256: String,
    /// The ESC version of the master the database was taken from (restore refuses to go back).
    pub esc_version: String,
    pub created_at: Time,
}

/// The observed state of a backup or restore run.
// `S` is the run's step enum: BackupStep or RestoreStep.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
// Serde would otherwise ask `S: Default` for the defaulted `steps`; `Vec` needs no such thing.
#[serde(rename_all = "camelCase", bound(deserialize = "S: Deserialize<'de>"))]
pub struct RunStatus<S> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RunPhase>,
    /// Each step started so far, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub steps: Vec<StepStatus<S>>,
    /// The artifact: for a backup the stored and verified one, for a restore the one restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<Artifact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// What happened, for a person: on failure the step, the reason, the cluster's resulting
    /// state and what to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// While `Pending`: how many earlier runs on the same EscCluster go first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<u32>,
    /// Why the run failed: the step, a short stable reason, and what happened. Kept while the
    /// run cleans up after the failure, so a restarted operator still knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<RunFailure>,
    /// Files this run made on the ESC nodes, removed in its cleanup step (also after a failure).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_files: Vec<NodeFile>,
    /// The data mover Job of this run (in the run's namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mover_job: Option<String>,
    /// The maintenance window this run held: ESC's northbound API is blocked inside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<MaintenanceWindow>,
    /// Transfer progress, as the mover last reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<TransferProgress>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Why a run failed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunFailure {
    /// The step that failed (the step enum's name).
    pub step: String,
    /// Short, stable, CamelCase (also the Event reason and a metric label).
    pub reason: String,
    pub message: String,
}

/// A file (or a run's directory) on an ESC node.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeFile {
    /// The node's name in the EscCluster's `spec.nodes`.
    pub node: String,
    pub kind: NodeFileKind,
    /// Absolute path on the node.
    pub path: String,
}

/// What a file on an ESC node is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum NodeFileKind {
    /// The directory of one detached escadm run (its output, exit code, and the database
    /// archive of a backup).
    RunDirectory,
    /// The database archive `escadm backup` wrote.
    Database,
    /// An `escadm log collect` archive.
    Logs,
}

/// When a run held ESC in maintenance.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceWindow {
    pub started_at: Time,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Time>,
    /// `endedAt - startedAt` in whole seconds, once it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<i64>,
}

/// How far a transfer is.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransferProgress {
    pub bytes: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_second: Option<i64>,
}

// By hand: a derived Default would require `S: Default`, which step enums have no reason to be.
impl<S> Default for RunStatus<S> {
    fn default() -> Self {
        Self {
            observed_generation: None,
            phase: None,
            steps: Vec::new(),
            artifact: None,
            started_at: None,
            completed_at: None,
            message: None,
            queue_position: None,
            failure: None,
            node_files: Vec::new(),
            mover_job: None,
            maintenance: None,
            progress: None,
            conditions: Vec::new(),
        }
    }
}
