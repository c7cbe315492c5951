//! `EscCluster`: one ESC deployment — a standalone VM or an HA pair — reached over SSH.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Condition, Duration, LocalObjectRef, Time};
use crate::cel_duration_at_least;

/// The desired state of an ESC deployment the operator manages.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "escoperator.dev",
    version = "v1alpha1",
    kind = "EscCluster",
    doc = "An ESC deployment (a standalone VM or an HA pair) that the operator probes, puts into maintenance, backs up and restores over SSH",
    namespaced,
    status = "EscClusterStatus",
    shortname = "esc",
    category = "esc",
    printcolumn(name = "Topology", type_ = "string", json_path = ".spec.topology"),
    printcolumn(name = "Mode", type_ = "string", json_path = ".status.opMode"),
    printcolumn(name = "Master", type_ = "string", json_path = ".status.master"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new(
    "self.topology == 'Standalone' ? size(self.nodes) == 1 : size(self.nodes) == 2"
).message("a Standalone cluster has exactly 1 node and an HA cluster exactly 2: fix spec.nodes or spec.topology").field_path(".nodes"))]
#[serde(rename_all = "camelCase")]
pub struct EscClusterSpec {
    /// `Standalone` (one ESC VM) or `HA` (a MASTER and a BACKUP with keepalived and DRBD).
    pub topology: Topology,

    /// The ESC VMs: one for Standalone, two for HA, in any order — the operator finds the
    /// MASTER with `escadm status --v`.
    #[schemars(length(min = 1, max = 2))]
    #[x_kube(validation = Rule::new("self.all(a, self.exists_one(b, b.name == a.name))")
        .message("node names must be unique within the cluster"))]
    pub nodes: Vec<EscNodeSpec>,

    /// How the operator logs in to every node.
    pub ssh: SshSpec,

    /// How maintenance mode is entered and how long it may last.
    #[serde(default)]
    pub maintenance: MaintenanceSpec,

    /// How often the operator probes every node over SSH (at least 5s). Default 60s.
    #[serde(default = "default_probe_interval")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(cel_duration_at_least!("5s"))
        .message("probeInterval must be a duration of at least 5s, such as 30s, 5m or 1h"))]
    pub probe_interval: Duration,
}

/// The shape of an ESC deployment.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Topology {
    Standalone,
    #[serde(rename = "HA")]
    Ha,
}

/// One ESC VM.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct EscNodeSpec {
    /// A short name for the node, used in status, Events and logs (a DNS label).
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new(
        "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')"
    ).message("node name must be a DNS label: lower-case letters, digits and '-', at most 63 characters"))]
    pub name: String,

    /// Host name or IP address of the VM's SSH endpoint.
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new(
        "self.matches('^[A-Za-z0-9]([-A-Za-z0-9.:]*[A-Za-z0-9])?$')"
    ).message("host must be a host name or an IP address (no scheme, user or port: use the port field)"))]
    pub host: String,

    /// SSH port. Default 22.
    #[serde(default = "default_ssh_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
}

/// SSH access shared by the nodes of a cluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SshSpec {
    /// The login user on every node.
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(
        "self.matches('^[a-z_][a-z0-9_-]*[$]?$')"
    ).message("user must be a POSIX user name such as admin or esc_admin"))]
    pub user: String,

    /// Secret with the login credentials: key `ssh-privatekey` (OpenSSH or PEM private key)
    /// with an optional `passphrase`, or key `password`. A `kubernetes.io/ssh-auth` Secret works.
    pub credentials_secret_ref: LocalObjectRef,

    /// Secret with key `known_hosts` in OpenSSH format (hashed entries and `[host]:port`
    /// supported). Required: host keys are always verified.
    pub known_hosts_secret_ref: LocalObjectRef,

    /// Run escadm through `sudo -n` (the user needs passwordless sudo for escadm).
    #[serde(default)]
    pub sudo: bool,

    /// Time allowed to connect and authenticate (1s to 5m). Default 10s.
    #[serde(default = "default_connect_timeout")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(
        concat!(cel_duration_at_least!("1s"), " && duration(self) <= duration('5m')")
    ).message("connectTimeout must be a duration between 1s and 5m, such as 10s"))]
    pub connect_timeout: Duration,
}

/// How maintenance mode is entered and bounded.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceSpec {
    /// Enter maintenance with `--ipt_check=true`, so ESC refuses while transactions are in
    /// flight (the manual's advice: interrupted deployments can leak resources). Default true.
    #[serde(default = "default_true")]
    pub ipt_check: bool,

    /// Return ESC to operation mode when one holder has kept it in maintenance longer than
    /// this (at least 1m), and say so with a Warning Event. Unset: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(cel_duration_at_least!("1m"))
        .message("maxDuration must be a duration of at least 1m, such as 30m or 2h"))]
    pub max_duration: Option<Duration>,
}

impl Default for MaintenanceSpec {
    fn default() -> Self {
        Self {
            ipt_check: true,
            max_duration: None,
        }
    }
}

fn default_probe_interval() -> Duration {
    std::time::Duration::from_secs(60).into()
}

fn default_connect_timeout() -> Duration {
    std::time::Duration::from_secs(10).into()
}

fn default_ssh_port() -> u16 {
    22
}

fn default_true() -> bool {
    true
}

/// What the operator last observed of the ESC deployment.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct EscClusterStatus {
    /// The `metadata.generation` this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// ESC's operation mode, as `escadm op_mode show` reports it on the master.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op_mode: Option<OpMode>,

    /// Name of the node that reports MASTER (or the standalone node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,

    /// Each node as last probed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub nodes: Vec<EscNodeStatus>,

    /// Who currently needs ESC in maintenance mode. ESC enters maintenance when the first
    /// holder appears and returns to operation when the last one goes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub maintenance_holders: Vec<MaintenanceHolder>,

    /// Holders dropped because they held maintenance longer than `spec.maintenance.maxDuration`.
    /// While the request that made one persists (the annotation is still set), it is not taken
    /// up again: remove the annotation and set it again to start a new window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expired_holders: Vec<MaintenanceHolder>,

    /// `Ready`, `Reachable`, `Maintenance`, `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// ESC's operation mode.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum OpMode {
    Operation,
    Maintenance,
    /// Not known: no node answered.
    Unknown,
}

/// One node as last probed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EscNodeStatus {
    pub name: String,
    /// The role `escadm status --v` reports.
    pub role: NodeRole,
    /// Whether the last SSH probe connected and authenticated.
    pub reachable: bool,
    /// Whether ESC's services run on the node.
    pub services: ServicesState,
    /// Services that are stopped while others run (only when `services` is `Partial`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stopped_services: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub esc_version: Option<String>,
}

/// A node's role in its deployment.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum NodeRole {
    Master,
    Backup,
    Standalone,
    Unknown,
}

/// Whether ESC's services run on a node.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ServicesState {
    Running,
    Stopped,
    /// Some run, some are stopped.
    Partial,
    Unknown,
}

/// One reason to keep ESC in maintenance mode.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceHolder {
    pub kind: HolderKind,
    /// The annotation's key, or the name of the EscBackup / EscRestore.
    pub name: String,
    /// When the holder was added (for `maxDuration`).
    pub since: Time,
}

/// What holds a cluster in maintenance.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum HolderKind {
    /// A person, through the `escoperator.dev/maintenance: "true"` annotation.
    Annotation,
    EscBackup,
    EscRestore,
}
