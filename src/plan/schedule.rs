//! The EscBackupSchedule decision: the schedule's spec and status so far + its runs as listed +
//! `now` → the status to store, at most one run to create, the runs retention removes, the
//! Events, and when to look again.
//!
//! Scheduling keeps a cursor, `status.lastConsideredTime`: the latest scheduled time already
//! dealt with. The times due are those in `(cursor, now]`:
//! - only the latest of them is a candidate; earlier ones are counted as missed (an outage, or
//!   a clock jump) — never a storm of catch-up runs;
//! - the candidate starts only within `startingDeadlineSeconds`, only if no run of this
//!   schedule is active (otherwise it is skipped and recorded, not queued), and not while
//!   suspended;
//! - its run is named after the scheduled time ([`run_name`]), so a run found with that name
//!   was created by an earlier reconcile whose status write was lost: it counts as started.
//!
//! The cursor of a schedule seen for the first time is `now`: a new schedule starts with the
//! next time due, never with a run for a time before it existed. Suspending moves the cursor
//! along; on resume, times that came due while suspended are passed over.
//!
//! Retention ([`retain`]) is pure too. Fail closed: a run whose phase or scheduled time is
//! unknown is never removed, and counts as active while its phase is unknown.

use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::conditions::{self, Desired};
use super::cron::{Cron, time_zone};
use super::report::PlannedEvent;
use crate::api::{
    EscBackupScheduleSpec, EscBackupScheduleStatus, Retention, RunPhase, SkippedRun, Time,
};

/// Condition types of an EscBackupSchedule.
pub const READY: &str = "Ready";
pub const STALLED: &str = "Stalled";
/// The Ready reason while suspended (also how a resume is recognised).
pub const SUSPENDED: &str = "Suspended";

/// The label on every run: the schedule's name.
pub const SCHEDULE_LABEL: &str = "escoperator.dev/schedule";
/// The annotation on every run: its scheduled time (RFC 3339, UTC).
pub const SCHEDULED_TIME_ANNOTATION: &str = "escoperator.dev/scheduled-time";
/// Failed runs kept when `failedHistoryLimit` is unset.
pub const DEFAULT_FAILED_HISTORY_LIMIT: u32 = 3;
/// Due times counted after an outage (beyond, the count says "at least").
const MISSED_COUNT_LIMIT: usize = 10_000;
/// The longest sleep between looks: a host that slept, or a clock that jumped, is noticed.
const MAX_REQUEUE: Duration = Duration::from_secs(15 * 60);

/// One run of the schedule as listed (an EscBackup it owns).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunView {
    pub name: String,
    /// From its scheduled-time annotation; `None` when missing or garbled.
    pub scheduled: Option<Timestamp>,
    /// `None`: not yet picked up by the EscBackup controller, or unreadable.
    pub phase: Option<RunPhase>,
    pub completed: Option<Timestamp>,
    /// Being deleted already.
    pub deleting: bool,
}

impl RunView {
    fn finished(&self) -> bool {
        matches!(self.phase, Some(RunPhase::Succeeded | RunPhase::Failed))
    }
}

/// Everything [`plan`] looks at.
#[derive(Clone, Debug)]
pub struct ScheduleInput<'a> {
    pub name: &'a str,
    pub spec: &'a EscBackupScheduleSpec,
    pub generation: Option<i64>,
    pub previous: &'a EscBackupScheduleStatus,
    /// The EscBackups this schedule created (label and owner), as listed.
    pub runs: &'a [RunView],
    pub now: Timestamp,
}

/// A run to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRun {
    pub name: String,
    pub scheduled: Timestamp,
}

/// What to do.
#[derive(Clone, Debug, PartialEq)]
pub struct SchedulePlan {
    pub status: EscBackupScheduleStatus,
    pub create: Option<NewRun>,
    /// Runs retention removes (EscBackup names).
    pub delete: Vec<String>,
    pub events: Vec<PlannedEvent>,
    /// Look again after this long (also woken by changes of the schedule and its runs).
    pub requeue: Option<Duration>,
    /// Scheduled times passed over because the operator was not there in time (metrics).
    pub missed: u64,
    /// Scheduled times skipped because the previous run was still active (metrics).
    pub skipped: u64,
}

/// The run of `schedule` for `scheduled`: `<schedule>-<yyyymmddhhmm>`, the time in UTC (unique:
/// a wall time that occurs twice runs once).
pub fn run_name(schedule: &str, scheduled: Timestamp) -> String {
    format!("{schedule}-{}", scheduled.strftime("%Y%m%d%H%M"))
}

/// How a time reads for a person: wall time in the schedule's zone, and UTC.
fn show(at: Timestamp, tz: &TimeZone) -> String {
    let local = at.to_zoned(tz.clone());
    if tz == &TimeZone::UTC {
        local.strftime("%Y-%m-%d %H:%M UTC").to_string()
    } else {
        format!(
            "{} ({})",
            local.strftime("%Y-%m-%d %H:%M %Z"),
            at.strftime("%H:%M UTC")
        )
    }
}

fn time(at: Timestamp) -> Time {
    Time(at)
}

/// Decides one reconcile of a schedule.
pub fn plan(input: &ScheduleInput) -> SchedulePlan {
    let spec = input.spec;
    let previous = input.previous;
    let now = input.now;
    let mut status = previous.clone();
    status.observed_generation = input.generation;
    let mut events = Vec::new();
    let mut plan = SchedulePlan {
        status: EscBackupScheduleStatus::default(),
        create: None,
        delete: Vec::new(),
        events: Vec::new(),
        requeue: None,
        missed: 0,
        skipped: 0,
    };

    status.last_successful_time = last_success(previous, input.runs);
    let mut active: Vec<&RunView> = input
        .runs
        .iter()
        .filter(|r| !r.finished() && !r.deleting)
        .collect();
    active.sort_by(|a, b| (a.scheduled, &a.name).cmp(&(b.scheduled, &b.name)));
    status.active = active.first().map(|r| r.name.clone());

    let parsed = Cron::parse(&spec.schedule)
        .map_err(|m| {
            (
                "InvalidSchedule",
                format!("schedule {:?}: {m}", spec.schedule),
            )
        })
        .and_then(|cron| {
            let tz = time_zone(spec.time_zone.as_deref()).map_err(|m| ("UnknownTimeZone", m))?;
            match cron.next_after(now, &tz) {
                Some(_) => Ok((cron, tz)),
                None => Err((
                    "NeverFires",
                    format!(
                        "schedule {:?} never fires: no date matches it (such as 30 February); \
                         fix the day of month or the month",
                        spec.schedule
                    ),
                )),
            }
        });
    let (cron, tz) = match parsed {
        Ok(ok) => ok,
        Err((reason, message)) => {
            let was_stalled = conditions::is_true(&previous.conditions, STALLED);
            if !was_stalled {
                events.push(PlannedEvent::warning(reason, message.clone()));
            }
            status.next_schedule_time = None;
            status.conditions = conditions::merge(
                &previous.conditions,
                &[
                    Desired::new(READY, false, reason, message.clone()),
                    Desired::new(STALLED, true, reason, message),
                ],
                input.generation,
                &time(now),
            );
            plan.status = status;
            plan.events = events;
            return plan;
        }
    };

    let was_suspended =
        conditions::find(&previous.conditions, READY).is_some_and(|c| c.reason == SUSPENDED);
    let cursor = previous
        .last_considered_time
        .as_ref()
        .map(|t| t.0)
        // A clock that went back does not move the cursor back: nothing runs twice.
        .unwrap_or(now);
    let due = cron.between(cursor, now, &tz, MISSED_COUNT_LIMIT);
    // Counting stopped at the limit: the latest time due is found from `now` backwards.
    let capped = due.len() == MISSED_COUNT_LIMIT;
    let latest = match (capped, due.last()) {
        (true, Some(&last)) => Some(cron.last_at_or_before(now, &tz).unwrap_or(last)),
        (false, last) => last.copied(),
        (true, None) => None,
    };
    let mut considered = cursor;
    if let Some(latest) = latest {
        considered = latest;
        let passed_over: &[Timestamp] = if capped { &due } else { &due[..due.len() - 1] };
        let earlier = passed_over.len() as u64;
        let name = run_name(input.name, latest);
        if spec.suspend || was_suspended {
            // Suspended (or just resumed): times that came due meanwhile are passed over.
        } else if input
            .runs
            .iter()
            .any(|r| r.name == name || r.scheduled == Some(latest))
        {
            // Created by an earlier reconcile whose status write was lost.
            status.last_schedule_time = Some(time(latest));
        } else {
            if earlier > 0 {
                plan.missed += earlier;
                let more = if capped { "at least " } else { "" };
                events.push(PlannedEvent::warning(
                    "MissedRuns",
                    format!(
                        "{more}{earlier} scheduled run(s) from {} on were missed (the operator \
                         was not running, or could not reconcile this schedule); only the latest, \
                         {}, is considered",
                        show(passed_over[0], &tz),
                        show(latest, &tz)
                    ),
                ));
                status.last_skipped = Some(SkippedRun {
                    scheduled_time: time(passed_over[passed_over.len() - 1]),
                    reason: "Missed".into(),
                    message: format!(
                        "{more}{earlier} scheduled run(s) missed while the operator was not running"
                    ),
                });
            }
            let late = now.duration_since(latest).as_secs();
            match spec.starting_deadline_seconds {
                Some(deadline) if late > deadline => {
                    plan.missed += 1;
                    let message = format!(
                        "the run for {} was not started: it is {late}s late, more than \
                         startingDeadlineSeconds ({deadline})",
                        show(latest, &tz)
                    );
                    events.push(PlannedEvent::warning("DeadlineExceeded", message.clone()));
                    status.last_skipped = Some(SkippedRun {
                        scheduled_time: time(latest),
                        reason: "DeadlineExceeded".into(),
                        message,
                    });
                }
                _ => match active.first() {
                    Some(running) => {
                        plan.skipped += 1;
                        let message = format!(
                            "the run for {} was skipped: the previous run, EscBackup {}, is \
                             still active (runs never overlap and are not queued)",
                            show(latest, &tz),
                            running.name
                        );
                        events.push(PlannedEvent::warning("RunSkipped", message.clone()));
                        status.last_skipped = Some(SkippedRun {
                            scheduled_time: time(latest),
                            reason: "Overlap".into(),
                            message,
                        });
                    }
                    None => {
                        events.push(PlannedEvent::normal(
                            "RunCreated",
                            format!("created EscBackup {name} for {}", show(latest, &tz)),
                        ));
                        status.last_schedule_time = Some(time(latest));
                        status.active = Some(name.clone());
                        plan.create = Some(NewRun {
                            name,
                            scheduled: latest,
                        });
                    }
                },
            }
        }
    }
    status.last_considered_time = Some(time(considered));

    let next = cron.next_after(now, &tz);
    let zone = spec.time_zone.as_deref().unwrap_or("UTC");
    let ready = if spec.suspend {
        status.next_schedule_time = None;
        Desired::new(
            READY,
            true,
            SUSPENDED,
            "suspended: no new runs; times that come due meanwhile are not made up",
        )
    } else {
        status.next_schedule_time = next.map(time);
        Desired::new(
            READY,
            true,
            "Scheduled",
            format!("schedule {:?} in {zone}", spec.schedule),
        )
    };
    status.conditions = conditions::merge(
        &previous.conditions,
        &[
            ready,
            Desired::new(
                STALLED,
                false,
                "Valid",
                "the schedule and time zone are valid",
            ),
        ],
        input.generation,
        &time(now),
    );

    // Retention: the run created now is not finished, so it plays no part.
    plan.delete = retain(input.runs, &spec.retention, &tz, now);
    for name in &plan.delete {
        events.push(PlannedEvent::normal(
            "RunDeleted",
            format!("retention: deleting EscBackup {name}"),
        ));
    }

    // While suspended the cursor still moves at each due time (so a resume finds nothing due).
    plan.requeue = next.map(|at| {
        Duration::try_from(at.duration_since(now))
            .unwrap_or_default()
            .clamp(Duration::from_secs(1), MAX_REQUEUE)
    });
    plan.status = status;
    plan.events = events;
    plan
}

/// When the newest succeeded run completed: from the runs, or as stored before (the runs may
/// have been deleted by hand).
fn last_success(previous: &EscBackupScheduleStatus, runs: &[RunView]) -> Option<Time> {
    let listed = runs
        .iter()
        .filter(|r| r.phase == Some(RunPhase::Succeeded))
        .filter_map(|r| r.completed)
        .max();
    let stored = previous.last_successful_time.as_ref().map(|t| t.0);
    listed.max(stored).map(Time)
}

/// The runs `retention` removes, given every run of the schedule: finished ones only, a
/// succeeded one only when a newer run succeeded (the newest succeeded run always stays), and
/// never one whose phase or scheduled time is unknown.
pub fn retain(
    runs: &[RunView],
    retention: &Retention,
    tz: &TimeZone,
    now: Timestamp,
) -> Vec<String> {
    let known = |phase: RunPhase| {
        let mut list: Vec<(Timestamp, &str)> = runs
            .iter()
            .filter(|r| !r.deleting && r.phase == Some(phase))
            .filter_map(|r| Some((r.scheduled?, r.name.as_str())))
            .collect();
        // Newest first (the name breaks a tie of equal times).
        list.sort_by(|a, b| b.cmp(a));
        list
    };
    let mut delete = Vec::new();

    let succeeded = known(RunPhase::Succeeded);
    let any_rule = retention.keep_last.is_some()
        || retention.keep_daily.is_some()
        || retention.keep_weekly.is_some()
        || retention.max_age.is_some();
    if any_rule {
        let mut keep = vec![false; succeeded.len()];
        if let Some(first) = keep.first_mut() {
            *first = true;
        }
        let last = retention.keep_last.unwrap_or(0) as usize;
        for k in keep.iter_mut().take(last) {
            *k = true;
        }
        let mut keep_per = |limit: Option<u32>, key: &dyn Fn(Timestamp) -> (i16, i16)| {
            let Some(limit) = limit else { return };
            let mut seen: Option<(i16, i16)> = None;
            let mut kept = 0;
            for (i, (at, _)) in succeeded.iter().enumerate() {
                let k = key(*at);
                if seen != Some(k) && kept < limit {
                    keep[i] = true;
                    kept += 1;
                }
                seen = Some(k);
            }
        };
        keep_per(retention.keep_daily, &|at| {
            let date = tz.to_datetime(at).date();
            (date.year(), date.day_of_year())
        });
        keep_per(retention.keep_weekly, &|at| {
            let week = tz.to_datetime(at).date().iso_week_date();
            (week.year(), week.week() as i16)
        });
        if let Some(max_age) = retention.max_age {
            let max_age: Duration = max_age.into();
            for (i, (at, _)) in succeeded.iter().enumerate() {
                let age = Duration::try_from(now.duration_since(*at)).unwrap_or_default();
                if age < max_age {
                    keep[i] = true;
                }
            }
        }
        delete.extend(
            succeeded
                .iter()
                .zip(&keep)
                .filter(|(_, kept)| !**kept)
                .map(|((_, name), _)| (*name).to_owned()),
        );
    }

    let failed_limit = retention
        .failed_history_limit
        .unwrap_or(DEFAULT_FAILED_HISTORY_LIMIT) as usize;
    delete.extend(
        known(RunPhase::Failed)
            .iter()
            .skip(failed_limit)
            .map(|(_, name)| (*name).to_owned()),
    );
    delete.sort();
    delete
}

#[cfg(test)]
mod tests;
