//! `esc-operator run`: the operator itself.

use std::net::SocketAddr;
use std::time::Duration;

use super::Failure;
use crate::controller::backup::job::MoverTemplate;
use crate::controller::{ControllerOptions, WatchScope};
use crate::runtime::leader::LeaderConfig;
use crate::runtime::telemetry::{self, LogFormat};
use crate::runtime::{self, OperatorConfig};

#[derive(clap::Args)]
pub(super) struct RunArgs {
    /// Namespaces to watch, comma-separated. Empty: all namespaces (needs a ClusterRole).
    #[arg(
        long,
        env = "WATCH_NAMESPACES",
        value_delimiter = ',',
        default_value = ""
    )]
    namespaces: Vec<String>,
    /// Address of the HTTP server (/healthz, /readyz, /metrics).
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Log filter, in RUST_LOG syntax.
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// Reconcile without electing a leader (run exactly one replica then).
    #[arg(long)]
    no_leader_election: bool,
    /// Name of the leader Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "esc-operator")]
    lease_name: String,
    /// Namespace of the leader Lease (default: the pod's namespace, else the kubeconfig's).
    #[arg(long, env = "LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// How long a lease is valid without renewal: a standby takes over at most this long after
    /// the leader died.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    lease_duration: Duration,
    /// Close an SSH connection to an ESC node after it was unused this long.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    ssh_idle_timeout: Duration,
    /// At most this many SSH handshakes at once.
    #[arg(long, default_value_t = 16)]
    max_concurrent_connects: usize,
    /// At most this many reconciles at once, per watched scope. Each one in flight may hold an
    /// API connection, which the client's pool keeps afterwards: more reconciles than SSH
    /// handshakes at once (--max-concurrent-connects) only wait, and leave idle connections.
    #[arg(long, default_value_t = 16)]
    max_concurrent_reconciles: u16,
    /// When a deleted EscCluster's ESC cannot be returned to operation, give up after this long.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    release_timeout: Duration,
    /// The directory on the ESC nodes where backup and restore runs keep their temporary files.
    #[arg(long, default_value = "/var/tmp/esc-operator")]
    run_directory: String,
    /// The directory on the ESC nodes that keeps the restore history (one file per node): it
    /// must survive reboots and temporary-file cleaners, and be writable by the SSH user (or
    /// through sudo with spec.ssh.sudo).
    #[arg(long, default_value = "/var/lib/esc-operator")]
    state_directory: String,
    /// A backup does not start on a master with less free space under --run-directory (MiB).
    #[arg(long, default_value_t = 1024)]
    min_node_free_space_mib: u64,
    /// A YAML file: how mover pods run (image, resources, nodeSelector, tolerations,
    /// priorityClassName, hostNetwork, activeDeadlineSeconds, ttlSecondsAfterFinished).
    #[arg(long, env = "MOVER_TEMPLATE")]
    mover_template: Option<std::path::PathBuf>,
    /// The image the operator runs from: the mover's image unless the template names one.
    #[arg(long, env = "ESC_OPERATOR_IMAGE")]
    operator_image: Option<String>,
    /// TESTING ONLY (hidden): EscBackupSchedules read the current time from this file (one
    /// RFC 3339 timestamp, re-read at every reconcile) instead of the system clock. No
    /// environment variable sets it, so a deployment never picks it up by accident.
    #[arg(long, hide = true)]
    test_clock_file: Option<std::path::PathBuf>,
}

pub(super) fn run(args: RunArgs) -> Result<(), Failure> {
    telemetry::init(args.log_format, &args.log_level)?;
    if let Some(path) = &args.test_clock_file {
        tracing::warn!(path = %path.display(), "TESTING ONLY: schedules read the time from a file, not the system clock");
    }
    let namespaces: Vec<String> = args
        .namespaces
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    let mover = match &args.mover_template {
        None => MoverTemplate::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("read the mover template {}: {e}", path.display()))?;
            serde_norway::from_str(&text)
                .map_err(|e| format!("the mover template {}: {e}", path.display()))?
        }
    };
    mover
        .validate()
        .map_err(|e| format!("the mover template: {e}"))?;
    let config = OperatorConfig {
        scope: if namespaces.is_empty() {
            WatchScope::All
        } else {
            WatchScope::Namespaces(namespaces)
        },
        http_addr: args.http_addr,
        leader: (!args.no_leader_election).then_some(LeaderConfig {
            lease_name: args.lease_name,
            namespace: args.lease_namespace,
            identity: None,
            lease_duration: args.lease_duration,
        }),
        controller: ControllerOptions {
            ssh_idle_timeout: args.ssh_idle_timeout,
            max_concurrent_connects: args.max_concurrent_connects,
            release_timeout: args.release_timeout,
            max_concurrent_reconciles: args.max_concurrent_reconciles,
            run_directory: args.run_directory,
            state_directory: args.state_directory,
            min_node_free_bytes: args.min_node_free_space_mib.saturating_mul(1 << 20),
            mover,
            operator_image: args.operator_image.filter(|i| !i.trim().is_empty()),
            clock_file: args.test_clock_file,
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("start the async runtime: {e}"))?;
    runtime
        .block_on(runtime::run(config))
        .map_err(|e| Failure::from(e.to_string()))
}
