//! `EscBackup`: one backup run of an EscCluster, an immutable record with a step machine.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{LocalObjectRef, RunStatus};
use super::storage::{S3Connection, ScpLocation, ServerSideEncryption};

/// A request to back up an ESC deployment: the spec is immutable, the status records the run.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "escoperator.dev",
    version = "v1alpha1",
    kind = "EscBackup",
    doc = "One backup run of an EscCluster: maintenance mode, escadm backup and logs, streamed to S3 or an scp host with a checksum and a manifest",
    namespaced,
    status = "EscBackupStatus",
    shortname = "escbackup",
    category = "esc",
    printcolumn(
        name = "Cluster",
        type_ = "string",
        json_path = ".spec.clusterRef.name"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Size", type_ = "integer", json_path = ".status.artifact.size"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self == oldSelf")
    .message("spec is immutable: an EscBackup records one run; create a new EscBackup instead"))]
#[serde(rename_all = "camelCase")]
pub struct EscBackupSpec {
    /// The EscCluster to back up, in the same namespace.
    pub cluster_ref: LocalObjectRef,

    /// Where the artifact is stored: exactly one of `s3` or `scp`.
    pub target: BackupTarget,

    /// What goes into the artifact besides the database, which is always included.
    #[serde(default)]
    pub include: BackupInclude,

    /// Overrides the cluster's `spec.maintenance.iptCheck` for this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipt_check: Option<bool>,

    /// `Retain` (default) keeps the stored artifact when this EscBackup is deleted;
    /// `Delete` removes it.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// `Resume` (default): back to operation mode after the backup. `StopServices`: the
    /// manual's migration/upgrade flow — after a verified backup, stop the standby, then the
    /// master.
    #[serde(default)]
    pub after_backup: AfterBackup,
}

/// Where a backup is stored.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.s3) != has(self.scp)")
    .message("target must set exactly one of s3 or scp"))]
pub struct BackupTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Target>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scp: Option<ScpLocation>,
}

/// An S3 bucket and key prefix that backups are written under.
// JsonSchema rather than KubeSchema: KubeSchema cannot flatten; rules go in through `extend`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Target {
    #[serde(flatten)]
    pub connection: S3Connection,

    /// Key prefix, such as `esc/prod/`. The artifact's key is
    /// `<prefix><namespace>/<cluster>/<backup name>.tar`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "!self.startsWith('/')",
        "message": "prefix must not start with '/' and must be at most 512 characters"
    }]))]
    pub prefix: Option<String>,

    /// Storage class, such as `STANDARD` or `STANDARD_IA`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^[A-Z][A-Z0-9_]*$')",
        "message": "storageClass must be an S3 storage class such as STANDARD or STANDARD_IA"
    }]))]
    pub storage_class: Option<String>,

    /// Server-side encryption of the artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse: Option<ServerSideEncryption>,
}

/// Optional members of a backup artifact.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupInclude {
    /// `escadm log collect` archives, standby first then master. Default true.
    #[serde(default = "default_true")]
    pub logs: bool,
    /// The dynamic mapping file, when the node has one. Default true.
    #[serde(default = "default_true")]
    pub dynamic_mapping: bool,
}

impl Default for BackupInclude {
    fn default() -> Self {
        Self {
            logs: true,
            dynamic_mapping: true,
        }
    }
}

fn default_true() -> bool {
    true
}

/// What happens to the stored artifact when the EscBackup is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    #[default]
    Retain,
    Delete,
}

/// What ESC does after a successful backup.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum AfterBackup {
    #[default]
    Resume,
    StopServices,
}

/// The steps of a backup, in the order they run (the manual's, with the maintenance window
/// around `escadm backup` alone).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BackupStep {
    /// Cluster Ready and not Degraded, master (and standby) known, Secrets present.
    Preflight,
    /// HA: `escadm log collect` on the standby (before the window: it does not need it).
    CollectStandbyLogs,
    /// The maintenance holder is added; ESC enters maintenance (with ipt_check).
    EnterMaintenance,
    /// `escadm backup` to a unique temporary file on the master (or the standalone node).
    BackupDatabase,
    /// The holder is released at once: ESC returns to operation unless another holder keeps it.
    ExitMaintenance,
    /// `escadm log collect` on the master (or the standalone node).
    CollectMasterLogs,
    /// The mover Job streams the artifact to the target.
    Upload,
    /// Size and checksum of the stored artifact checked by the operator itself.
    Verify,
    /// Temporary files removed from the nodes (after a failure too).
    Cleanup,
    /// `afterBackup: StopServices`, HA: `escadm stop` on the standby, verified with
    /// `status --v` (first, so the master never fails over to it).
    StopStandby,
    /// `afterBackup: StopServices`: `escadm stop` on the master (or the standalone node),
    /// verified with `status --v`.
    StopMaster,
}

/// The observed state of a backup run.
pub type EscBackupStatus = RunStatus<BackupStep>;
