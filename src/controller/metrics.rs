//! The operator's Prometheus metrics, registered once and shared by every controller.
//!
//! Per-cluster series are removed when their EscCluster goes, so a churn of objects leaves no
//! stale series behind.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterInfoLabels {
    pub namespace: String,
    pub name: String,
    pub topology: String,
    pub version: String,
    pub master: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunFailureLabels {
    pub namespace: String,
    pub cluster: String,
    pub reason: String,
}

type DurationHistogram = Family<ControllerLabels, Histogram, fn() -> Histogram>;
type ClusterHistogram = Family<ClusterLabels, Histogram, fn() -> Histogram>;

fn backup_buckets() -> Histogram {
    // 1 s … ~4.5 h: a backup of a small simulator takes seconds, of a large ESC hours.
    Histogram::new(exponential_buckets(1.0, 2.0, 15))
}

fn window_buckets() -> Histogram {
    // 0.25 s … ~68 min: the maintenance window around `escadm backup`.
    Histogram::new(exponential_buckets(0.25, 2.0, 15))
}

/// How a backup run ended, for its metrics.
pub struct BackupOutcome<'a> {
    pub succeeded: bool,
    pub reason: &'a str,
    pub seconds: f64,
    pub bytes: Option<u64>,
    pub maintenance_seconds: Option<f64>,
    pub finished_at: SystemTime,
}

fn reconcile_buckets() -> Histogram {
    // 5 ms … ~80 s: a probe over SSH takes tens of milliseconds, a stuck one its timeout.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// All metric families of the operator.
#[derive(Debug)]
pub struct Metrics {
    cluster_info: Family<ClusterInfoLabels, Gauge>,
    info_labels: Mutex<HashMap<ClusterLabels, ClusterInfoLabels>>,
    cluster_reachable: Family<ClusterLabels, Gauge>,
    cluster_maintenance: Family<ClusterLabels, Gauge>,
    maintenance_since: std::sync::Arc<MaintenanceSeconds>,
    reconciles: Family<ControllerLabels, Counter>,
    reconcile_errors: Family<ErrorLabels, Counter>,
    reconcile_duration: DurationHistogram,
    ssh_connections: Gauge<i64, std::sync::atomic::AtomicI64>,
    ssh_connects: Counter<u64, AtomicU64>,
    backups: Family<ClusterLabels, Counter>,
    backup_failures: Family<RunFailureLabels, Counter>,
    failure_reasons: Mutex<HashMap<ClusterLabels, std::collections::BTreeSet<String>>>,
    backup_duration: ClusterHistogram,
    backup_bytes: Family<ClusterLabels, Gauge>,
    backup_last_success: Family<ClusterLabels, Gauge>,
    backup_maintenance: ClusterHistogram,
    restores: Family<ClusterLabels, Counter>,
    restore_failures: Family<RunFailureLabels, Counter>,
    restore_duration: ClusterHistogram,
    /// The EscBackupSchedules' series.
    pub schedules: super::schedule::metrics::ScheduleMetrics,
}

impl Metrics {
    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Metrics {
            cluster_info: Family::default(),
            info_labels: Mutex::default(),
            cluster_reachable: Family::default(),
            cluster_maintenance: Family::default(),
            maintenance_since: std::sync::Arc::default(),
            reconciles: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_duration: Family::new_with_constructor(reconcile_buckets),
            ssh_connections: Gauge::default(),
            ssh_connects: Counter::default(),
            backups: Family::default(),
            backup_failures: Family::default(),
            failure_reasons: Mutex::default(),
            backup_duration: Family::new_with_constructor(backup_buckets),
            backup_bytes: Family::default(),
            backup_last_success: Family::default(),
            backup_maintenance: Family::new_with_constructor(window_buckets),
            restores: Family::default(),
            restore_failures: Family::default(),
            restore_duration: Family::new_with_constructor(backup_buckets),
            schedules: Default::default(),
        };
        m.schedules.register(registry);
        registry.register(
            "esc_backup",
            "EscBackup runs finished, per cluster",
            m.backups.clone(),
        );
        registry.register(
            "esc_backup_failure",
            "EscBackup runs that failed, per cluster and reason",
            m.backup_failures.clone(),
        );
        registry.register(
            "esc_backup_duration_seconds",
            "How long EscBackup runs took, start to end, per cluster",
            m.backup_duration.clone(),
        );
        registry.register(
            "esc_backup_bytes",
            "Size of the last stored and verified backup artifact, per cluster",
            m.backup_bytes.clone(),
        );
        registry.register(
            "esc_backup_last_success_timestamp_seconds",
            "When the last successful backup of the cluster finished (Unix time)",
            m.backup_last_success.clone(),
        );
        registry.register(
            "esc_backup_maintenance_seconds",
            "How long a backup held ESC in maintenance mode (the window around escadm backup)",
            m.backup_maintenance.clone(),
        );
        registry.register(
            "esc_restore",
            "EscRestore runs that ended (dry runs included), per cluster",
            m.restores.clone(),
        );
        registry.register(
            "esc_restore_failure",
            "EscRestore runs that failed, per cluster and reason",
            m.restore_failures.clone(),
        );
        registry.register(
            "esc_restore_duration_seconds",
            "How long EscRestore runs took, from start to Succeeded or Failed",
            m.restore_duration.clone(),
        );
        registry.register(
            "esc_cluster_info",
            "One series per EscCluster with its topology, ESC version and MASTER as labels (value 1)",
            m.cluster_info.clone(),
        );
        registry.register(
            "esc_cluster_reachable",
            "1 when every node of the EscCluster answers over SSH",
            m.cluster_reachable.clone(),
        );
        registry.register(
            "esc_cluster_maintenance",
            "1 when ESC is in maintenance mode",
            m.cluster_maintenance.clone(),
        );
        registry.register_collector(Box::new(m.maintenance_since.clone()));
        registry.register(
            "esc_operator_reconcile",
            "Reconciles run, per controller",
            m.reconciles.clone(),
        );
        registry.register(
            "esc_operator_reconcile_errors",
            "Reconciles that failed, per controller and reason",
            m.reconcile_errors.clone(),
        );
        registry.register(
            "esc_operator_reconcile_duration_seconds",
            "Time a reconcile took, per controller",
            m.reconcile_duration.clone(),
        );
        registry.register(
            "esc_operator_ssh_connections",
            "SSH connections to ESC nodes open now (the pool)",
            m.ssh_connections.clone(),
        );
        registry.register(
            "esc_operator_ssh_connects",
            "SSH connections opened (handshakes)",
            m.ssh_connects.clone(),
        );
        m
    }

    pub fn reconciled(&self, controller: &str, took: Duration) {
        let labels = ControllerLabels {
            controller: controller.to_owned(),
        };
        self.reconciles.get_or_create(&labels).inc();
        self.reconcile_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    pub fn reconcile_failed(&self, controller: &str, reason: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                controller: controller.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Records what the last probe of a cluster showed.
    pub fn cluster_observed(
        &self,
        cluster: &ClusterLabels,
        info: ClusterInfoLabels,
        reachable: bool,
        maintenance_since: Option<SystemTime>,
    ) {
        let mut infos = self.info_labels.lock().expect("metrics lock");
        if let Some(old) = infos.get(cluster)
            && *old != info
        {
            self.cluster_info.remove(old);
        }
        self.cluster_info.get_or_create(&info).set(1);
        infos.insert(cluster.clone(), info);
        self.cluster_reachable
            .get_or_create(cluster)
            .set(i64::from(reachable));
        self.cluster_maintenance
            .get_or_create(cluster)
            .set(i64::from(maintenance_since.is_some()));
        self.maintenance_since.set(cluster, maintenance_since);
    }

    /// Drops every series of a deleted cluster.
    pub fn cluster_deleted(&self, cluster: &ClusterLabels) {
        if let Some(info) = self
            .info_labels
            .lock()
            .expect("metrics lock")
            .remove(cluster)
        {
            self.cluster_info.remove(&info);
        }
        self.cluster_reachable.remove(cluster);
        self.cluster_maintenance.remove(cluster);
        self.maintenance_since.set(cluster, None);
        self.backups.remove(cluster);
        self.backup_duration.remove(cluster);
        self.backup_bytes.remove(cluster);
        self.backup_last_success.remove(cluster);
        self.backup_maintenance.remove(cluster);
        self.restores.remove(cluster);
        self.restore_duration.remove(cluster);
        // Failure series carry a reason label: drop every one this cluster has.
        let reasons = self
            .failure_reasons
            .lock()
            .expect("metrics lock")
            .remove(cluster)
            .unwrap_or_default();
        for reason in reasons {
            let labels = RunFailureLabels {
                namespace: cluster.namespace.clone(),
                cluster: cluster.name.clone(),
                reason,
            };
            self.backup_failures.remove(&labels);
            self.restore_failures.remove(&labels);
        }
    }

    /// Records a restore run that ended.
    pub fn restore_finished(
        &self,
        cluster: &ClusterLabels,
        succeeded: bool,
        reason: &str,
        seconds: f64,
    ) {
        self.restores.get_or_create(cluster).inc();
        self.restore_duration
            .get_or_create(cluster)
            .observe(seconds);
        if !succeeded {
            self.failure_reasons
                .lock()
                .expect("metrics lock")
                .entry(cluster.clone())
                .or_default()
                .insert(reason.to_owned());
            self.restore_failures
                .get_or_create(&RunFailureLabels {
                    namespace: cluster.namespace.clone(),
                    cluster: cluster.name.clone(),
                    reason: reason.to_owned(),
                })
                .inc();
        }
    }

    /// Records a backup run that ended.
    pub fn backup_finished(&self, cluster: &ClusterLabels, outcome: &BackupOutcome<'_>) {
        self.backups.get_or_create(cluster).inc();
        self.backup_duration
            .get_or_create(cluster)
            .observe(outcome.seconds);
        if let Some(window) = outcome.maintenance_seconds {
            self.backup_maintenance
                .get_or_create(cluster)
                .observe(window);
        }
        if outcome.succeeded {
            if let Some(bytes) = outcome.bytes {
                self.backup_bytes
                    .get_or_create(cluster)
                    .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
            let at = outcome
                .finished_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            self.backup_last_success
                .get_or_create(cluster)
                .set(i64::try_from(at).unwrap_or(i64::MAX));
        } else {
            self.failure_reasons
                .lock()
                .expect("metrics lock")
                .entry(cluster.clone())
                .or_default()
                .insert(outcome.reason.to_owned());
            self.backup_failures
                .get_or_create(&RunFailureLabels {
                    namespace: cluster.namespace.clone(),
                    cluster: cluster.name.clone(),
                    reason: outcome.reason.to_owned(),
                })
                .inc();
        }
    }

    pub fn ssh_connection_opened(&self) {
        self.ssh_connects.inc();
        self.ssh_connections.inc();
    }

    pub fn ssh_connection_closed(&self) {
        self.ssh_connections.dec();
    }
}

/// `esc_cluster_maintenance_seconds`: computed at scrape time from when maintenance began, so
/// the value is current between probes without any timer.
#[derive(Debug, Default)]
struct MaintenanceSeconds {
    since: Mutex<HashMap<ClusterLabels, SystemTime>>,
}

impl MaintenanceSeconds {
    fn set(&self, cluster: &ClusterLabels, since: Option<SystemTime>) {
        let mut map = self.since.lock().expect("metrics lock");
        match since {
            Some(t) => {
                map.insert(cluster.clone(), t);
            }
            None => {
                map.remove(cluster);
            }
        }
    }
}

impl Collector for MaintenanceSeconds {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = SystemTime::now();
        let map = self.since.lock().expect("metrics lock");
        let mut family = encoder.encode_descriptor(
            "esc_cluster_maintenance_seconds",
            "Seconds the EscCluster has been in maintenance mode (absent when in operation)",
            None,
            MetricType::Gauge,
        )?;
        for (labels, since) in map.iter() {
            let seconds = now.duration_since(*since).unwrap_or_default().as_secs_f64();
            ConstGauge::new(seconds).encode(family.encode_family(labels)?)?;
        }
        Ok(())
    }
}
