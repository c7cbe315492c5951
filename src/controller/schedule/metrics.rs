//! The schedules' Prometheus series, registered with the operator's others (see
//! [`crate::controller::metrics::Metrics`]) and dropped when their schedule goes.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::controller::metrics::ClusterLabels;

/// Per schedule (labels `namespace`, `name`: the EscBackupSchedule's).
#[derive(Debug, Default)]
pub struct ScheduleMetrics {
    last_success: Family<ClusterLabels, Gauge>,
    missed: Family<ClusterLabels, Counter>,
    skipped: Family<ClusterLabels, Counter>,
}

impl ScheduleMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "esc_backup_schedule_last_success_timestamp_seconds",
            "When the newest succeeded run of the EscBackupSchedule completed (Unix time)",
            self.last_success.clone(),
        );
        registry.register(
            "esc_backup_schedule_missed_runs",
            "Scheduled times that got no run because the operator was not there in time (an outage, or later than startingDeadlineSeconds)",
            self.missed.clone(),
        );
        registry.register(
            "esc_backup_schedule_skipped_runs",
            "Scheduled times skipped because the schedule's previous run was still active",
            self.skipped.clone(),
        );
    }

    /// What one reconcile of a schedule decided.
    pub fn observed(
        &self,
        schedule: &ClusterLabels,
        last_success: Option<i64>,
        missed: u64,
        skipped: u64,
    ) {
        if let Some(at) = last_success {
            self.last_success.get_or_create(schedule).set(at);
        }
        // Created at zero so that a rate() over them works before the first miss.
        self.missed.get_or_create(schedule).inc_by(missed);
        self.skipped.get_or_create(schedule).inc_by(skipped);
    }

    /// Drops every series of a deleted schedule.
    pub fn deleted(&self, schedule: &ClusterLabels) {
        self.last_success.remove(schedule);
        self.missed.remove(schedule);
        self.skipped.remove(schedule);
    }
}
