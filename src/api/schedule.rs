//! `EscBackupSchedule`: EscBackups of an EscCluster created on a cron schedule, with retention.
//!
//! The cron text is checked at admission field by field (CEL regular expressions, so a typo is
//! rejected by the API server with a message naming the field); what a regular expression
//! cannot see (a reversed range, `30 2 30 2 *` which never fires, a time zone that does not
//! exist) the operator's own parser reports as `Stalled` with the same kind of message.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::backup::{BackupInclude, BackupTarget, DeletionPolicy};
use super::common::{Condition, Duration, LocalObjectRef, Time};
use crate::cel_duration_at_least;

/// One cron field at admission: a comma-separated list of `*`, `*/step`, `v`, `a-b` or
/// `a-b/step`, where `v` matches `$value` (a regular expression of the field's values).
macro_rules! cron_field_rule {
    ($position:literal, $value:literal) => {
        concat!(
            r"self.startsWith('@') || self.matches('^\\s*(\\S+\\s+){",
            $position,
            r"}(\\*(/[0-9]{1,2})?|(",
            $value,
            r")(-(",
            $value,
            r")(/[0-9]{1,2})?)?)(,(\\*(/[0-9]{1,2})?|(",
            $value,
            r")(-(",
            $value,
            r")(/[0-9]{1,2})?)?))*(\\s|$)')"
        )
    };
}

/// Regular backups of an EscCluster: an EscBackup from `template` at each time `schedule` names,
/// never two at once, at most one late run after an outage, and the old ones removed by
/// `retention`.
///
/// Time zones and daylight saving: `schedule` is read as wall-clock time in `timeZone` (IANA,
/// from the tz database built into the operator; default UTC). A wall time that does not exist
/// (spring forward: 02:30 in Europe/Berlin on the last Sunday of March) runs once, at the first
/// instant after the gap (03:00). A wall time that occurs twice (fall back) runs once, at its
/// first occurrence. This holds for every field, stepped ones too: `*/15` runs once at 03:00
/// after a skipped hour and does not run again in a repeated hour (Vixie cron would repeat
/// wildcard jobs there; a backup does not need to run twice in the same wall-clock hour).
///
/// Runs are EscBackups named `<schedule>-<yyyymmddhhmm>` (the scheduled time in UTC), owned by
/// the schedule and labelled `escoperator.dev/schedule=<schedule>`. Deleting the schedule deletes
/// them too (garbage collection), and with `deletionPolicy: Delete` their artifacts: delete it
/// with `kubectl delete --cascade=orphan` to keep them.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "escoperator.dev",
    version = "v1alpha1",
    kind = "EscBackupSchedule",
    doc = "Regular EscBackups of an EscCluster on a cron schedule in a time zone: no overlapping runs, at most one late run after an outage, and retention that never removes the last good backup",
    namespaced,
    status = "EscBackupScheduleStatus",
    shortname = "escschedule",
    category = "esc",
    printcolumn(
        name = "Cluster",
        type_ = "string",
        json_path = ".spec.clusterRef.name"
    ),
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "Suspend", type_ = "boolean", json_path = ".spec.suspend"),
    printcolumn(
        name = "Last Success",
        type_ = "date",
        json_path = ".status.lastSuccessfulTime"
    ),
    printcolumn(
        name = "Next",
        type_ = "date",
        json_path = ".status.nextScheduleTime"
    ),
    validation = Rule::new("self.metadata.name.size() <= 50").message(
        "metadata.name must be at most 50 characters: runs are named <schedule>-<yyyymmddhhmm> and labelled with the schedule's name"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct EscBackupScheduleSpec {
    /// The EscCluster to back up, in the same namespace.
    pub cluster_ref: LocalObjectRef,

    /// Standard 5-field cron (`minute hour day-of-month month day-of-week`: `*`, lists, ranges,
    /// steps, names JAN-DEC and SUN-SAT; when both day fields are restricted a day matching
    /// either runs, as in Vixie cron) or `@hourly`, `@daily` (`@midnight`), `@weekly`,
    /// `@monthly`, `@yearly` (`@annually`). Read in `timeZone`.
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(
        validation = Rule::new(
            r"self.startsWith('@') ? self in ['@hourly', '@daily', '@midnight', '@weekly', '@monthly', '@yearly', '@annually'] : self.matches('^\\s*\\S+(\\s+\\S+){4}\\s*$')"
        ).message("schedule must be five fields, minute hour day-of-month month day-of-week (such as '30 2 * * *'), or one of @hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually"),
        validation = Rule::new(cron_field_rule!("0", "[0-5]?[0-9]"))
            .message("schedule: the minute (1st field) must be *, 0-59, a range such as 0-29, a list such as 0,30 or a step such as */15"),
        validation = Rule::new(cron_field_rule!("1", "[01]?[0-9]|2[0-3]"))
            .message("schedule: the hour (2nd field) must be *, 0-23, a range such as 1-5, a list such as 2,14 or a step such as */6"),
        validation = Rule::new(cron_field_rule!("2", "0?[1-9]|[12][0-9]|3[01]"))
            .message("schedule: the day of month (3rd field) must be *, 1-31, a range such as 1-7, a list such as 1,15 or a step such as */2"),
        validation = Rule::new(cron_field_rule!("3", "0?[1-9]|1[0-2]|(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)"))
            .message("schedule: the month (4th field) must be *, 1-12 or JAN-DEC, a range such as 1-6, a list such as JAN,JUL or a step such as */3"),
        validation = Rule::new(cron_field_rule!("4", "[0-7]|(?i:sun|mon|tue|wed|thu|fri|sat)"))
            .message("schedule: the day of week (5th field) must be *, 0-7 (0 and 7 are Sunday) or SUN-SAT, a range such as MON-FRI, a list such as 1,3 or a step such as */2")
    )]
    pub schedule: String,

    /// IANA time zone the schedule is read in, such as `Europe/Berlin`. Default `UTC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new(
        r"self.matches('^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$')"
    ).message("timeZone must be an IANA time zone name such as UTC, Europe/Berlin or America/New_York"))]
    pub time_zone: Option<String>,

    /// No new runs while true; a running one goes on. Runs that come due while suspended are
    /// not made up after resuming: the next run is the next scheduled time after the resume.
    #[serde(default)]
    pub suspend: bool,

    /// A run may start at most this many seconds after its scheduled time (the operator was
    /// down, or busy); later it counts as missed. After an outage only the latest missed run is
    /// considered at all. Unset: the latest missed run starts however late (mind that a backup
    /// holds ESC in maintenance mode, which blocks its northbound API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 10")
        .message("startingDeadlineSeconds must be at least 10"))]
    pub starting_deadline_seconds: Option<i64>,

    /// What each run backs up and where it stores it.
    pub template: BackupTemplate,

    /// Which finished runs are removed. Unset: none (but failed ones beyond
    /// `failedHistoryLimit`).
    #[serde(default)]
    pub retention: Retention,
}

/// The EscBackup spec of each run (its `clusterRef` is the schedule's).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupTemplate {
    /// Where each artifact is stored: exactly one of `s3` or `scp`.
    pub target: BackupTarget,
    /// What goes into each artifact besides the database.
    #[serde(default)]
    pub include: BackupInclude,
    /// `Retain` (default) keeps a run's artifact when retention (or anyone) deletes the
    /// EscBackup; `Delete` removes it with the EscBackup.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// Which runs to keep. Applied only to EscBackups this schedule created, and to a succeeded
/// one only when a newer run has succeeded: the newest succeeded backup is never removed. A
/// succeeded backup is kept when any rule keeps it and removed when none does; with no rule
/// set, every succeeded backup is kept. Days and weeks (ISO, from Monday) are those of the
/// scheduled time in `timeZone`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    /// Keep the newest N succeeded backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("keepLast must be at least 1"))]
    pub keep_last: Option<u32>,
    /// Keep the newest succeeded backup of each of the last N days that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("keepDaily must be at least 1"))]
    pub keep_daily: Option<u32>,
    /// Keep the newest succeeded backup of each of the last N weeks that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("keepWeekly must be at least 1"))]
    pub keep_weekly: Option<u32>,
    /// Keep every succeeded backup scheduled less than this long ago (`720h` is 30 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(cel_duration_at_least!("1m"))
        .message("maxAge must be a duration of at least 1m, such as 168h (a week) or 720h (30 days)"))]
    pub max_age: Option<Duration>,
    /// How many failed runs to keep, newest first. Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 100")
        .message("failedHistoryLimit must be between 0 and 100"))]
    pub failed_history_limit: Option<u32>,
}

/// A scheduled time that did not get a run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SkippedRun {
    pub scheduled_time: Time,
    /// `Overlap` (the previous run was still active), `Missed` (the operator was not running
    /// and a later time came due too) or `DeadlineExceeded` (later than
    /// `startingDeadlineSeconds`).
    pub reason: String,
    pub message: String,
}

/// The observed state of a schedule.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EscBackupScheduleStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The scheduled time of the last run created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// When the newest succeeded run completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
    /// The next time a run comes due (none while suspended or when the schedule is invalid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
    /// The latest scheduled time dealt with (run, skipped or missed): only later times come due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_considered_time: Option<Time>,
    /// The run that is active now (EscBackup name), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<String>,
    /// The last scheduled time that got no run, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_skipped: Option<SkippedRun>,
    /// `Ready` (valid and scheduling, or suspended) and `Stalled` (the schedule or time zone
    /// cannot be used: the message says what to fix).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
