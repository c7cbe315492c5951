//! `EscRestore`: one restore of an EscCluster's database, refused up front when unsafe.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::cluster::{EscNodeStatus, OpMode};
use super::common::{LocalObjectRef, RunStatus};
use super::storage::{S3Connection, ScpLocation};

/// A request to restore an ESC deployment's database: the spec is immutable, the status
/// records every step so a restarted operator resumes exactly where it was.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "escoperator.dev",
    version = "v1alpha1",
    kind = "EscRestore",
    doc = "One restore of an EscCluster database: refused up front when unsafe, then standby stopped before master, restored, restarted and verified",
    namespaced,
    status = "EscRestoreStatus",
    shortname = "escrestore",
    category = "esc",
    printcolumn(
        name = "Cluster",
        type_ = "string",
        json_path = ".spec.clusterRef.name"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Step", type_ = "string", json_path = ".status.steps[-1:].name"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self == oldSelf")
    .message("spec is immutable: an EscRestore records one run; create a new EscRestore instead"))]
#[serde(rename_all = "camelCase")]
pub struct EscRestoreSpec {
    /// The EscCluster to restore, in the same namespace.
    pub cluster_ref: LocalObjectRef,

    /// The artifact to restore: exactly one of `backupRef`, `s3` or `scp`.
    pub source: RestoreSource,

    /// `RestartServices` (default): after a failure, bring services back master first, then
    /// standby. `LeaveStopped`: leave them stopped for a person to inspect.
    #[serde(default)]
    pub on_failure: OnRestoreFailure,

    /// Run the preflight alone: check the source, the checksum, the versions and the cluster,
    /// report in status the step plan a real run would follow (with the nodes each step
    /// touches), and end `Succeeded` with a `DryRun` condition. Nothing on ESC changes.
    #[serde(default)]
    pub dry_run: bool,

    /// Restore even though the cluster's restore history (kept on the ESC nodes themselves, so
    /// a rebuilt Kubernetes cluster still sees it) shows that an EscRestore of this name, or
    /// this same artifact, was already restored there. Without it such a restore is refused
    /// with `AlreadyRestored`: a GitOps tool that prunes and re-creates an EscRestore must not
    /// restore the database a second time.
    #[serde(default)]
    pub allow_repeat: bool,
}

/// Where the artifact to restore comes from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("[has(self.backupRef), has(self.s3), has(self.scp)].filter(x, x).size() == 1")
        .message("source must set exactly one of backupRef, s3 or scp"),
    validation = Rule::new("has(self.backupRef) || has(self.sha256)")
        .message("source.sha256 is required with an s3 or scp source: the artifact is verified before anything is stopped")
)]
pub struct RestoreSource {
    /// A `Succeeded` EscBackup in the same namespace; its artifact and checksum are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_ref: Option<LocalObjectRef>,

    /// An artifact in S3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Source>,

    /// An artifact on an SSH host (`path` is the artifact file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scp: Option<ScpLocation>,

    /// Hex SHA-256 of the whole artifact. Required with `s3` and `scp`; with `backupRef` it
    /// pins the expected checksum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^[a-f0-9]{64}$')")
        .message("sha256 must be 64 lower-case hexadecimal characters"))]
    pub sha256: Option<String>,
}

/// An artifact object in S3.
// JsonSchema rather than KubeSchema: KubeSchema cannot flatten; rules go in through `extend`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Source {
    #[serde(flatten)]
    pub connection: S3Connection,

    /// The artifact's object key.
    #[schemars(length(max = 1024))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "size(self) >= 1 && !self.startsWith('/')",
        "message": "key must be an object key of 1-1024 characters, not starting with '/'"
    }]))]
    pub key: String,
}

/// What the operator does with ESC's services when a restore fails after stopping them.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum OnRestoreFailure {
    #[default]
    RestartServices,
    LeaveStopped,
}

/// The steps of a restore, in order. Each is idempotent and persisted before and after it runs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RestoreStep {
    /// Source resolved, artifact readable, manifest and checksum verified, no schema
    /// downgrade, cluster Ready and not held by another run. Changes nothing.
    Preflight,
    /// The database backup streamed to a temporary file on the master, checksum verified.
    Stage,
    /// Maintenance holder added (with ipt_check).
    EnterMaintenance,
    /// HA: `escadm stop` on the BACKUP node, verified stopped.
    StopStandby,
    /// `escadm stop` on the MASTER (or standalone) node, verified stopped.
    StopMaster,
    /// `escadm restore` on the master from the staged file.
    Restore,
    /// `escadm restart` on the master, waited until it reports MASTER and healthy.
    RestartMaster,
    /// HA: `escadm restart` on the standby, waited until it reports BACKUP.
    RestartStandby,
    /// Maintenance holder released.
    ExitMaintenance,
    /// Temporary files (the staged database, run directories) removed from the nodes; also
    /// after a failure.
    Cleanup,
    /// Final roles, mode and services recorded.
    Verify,
}

/// The observed state of a restore run: the run (shared with EscBackup) and what only a
/// restore has.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EscRestoreStatus {
    #[serde(flatten)]
    pub run: RunStatus<RestoreStep>,
    /// Where the restored artifact was taken, from its manifest: it may come from another
    /// EscCluster (a migration to new VMs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<ArtifactOrigin>,
    /// The steps this run takes, in order, with the nodes each touches (what a dry run
    /// reports).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<PlannedStep>,
    /// Nodes whose ESC services this run stopped and has not started again. Never empty
    /// while ESC is down because of this run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stopped_nodes: Vec<String>,
    /// The cluster as the run left it: each node's role, services and version, and the mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_state: Option<ClusterState>,
}

/// The EscCluster and EscBackup an artifact was taken from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactOrigin {
    /// `namespace/name` of the EscCluster the backup was taken from.
    pub cluster: String,
    /// The EscBackup named in `source.backupRef`, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// Whether the artifact was taken from another EscCluster than the one restored.
    pub other_cluster: bool,
}

/// One step of a restore's plan.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlannedStep {
    pub step: RestoreStep,
    /// The ESC nodes the step acts on (none for steps that act on Kubernetes or the store).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// What the step does, for a person.
    pub action: String,
}

/// An ESC deployment as observed at one moment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op_mode: Option<OpMode>,
    pub nodes: Vec<EscNodeStatus>,
}
