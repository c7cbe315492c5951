use super::*;
use crate::api::{BackupInclude, BackupTarget, BackupTemplate, DeletionPolicy, LocalObjectRef};

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn spec(schedule: &str) -> EscBackupScheduleSpec {
    EscBackupScheduleSpec {
        cluster_ref: LocalObjectRef { name: "esc".into() },
        schedule: schedule.into(),
        time_zone: None,
        suspend: false,
        starting_deadline_seconds: None,
        template: BackupTemplate {
            target: BackupTarget {
                s3: None,
                scp: None,
            },
            include: BackupInclude::default(),
            deletion_policy: DeletionPolicy::Retain,
        },
        retention: Retention::default(),
    }
}

fn run(name: &str, scheduled: &str, phase: Option<RunPhase>) -> RunView {
    RunView {
        name: name.into(),
        scheduled: Some(ts(scheduled)),
        phase,
        completed: matches!(phase, Some(RunPhase::Succeeded | RunPhase::Failed))
            .then(|| ts(scheduled)),
        deleting: false,
    }
}

/// Plans at `now` from `previous`, and returns the plan.
fn at(
    spec: &EscBackupScheduleSpec,
    previous: &EscBackupScheduleStatus,
    runs: &[RunView],
    now: &str,
) -> SchedulePlan {
    plan(&ScheduleInput {
        name: "nightly",
        spec,
        generation: Some(1),
        previous,
        runs,
        now: ts(now),
    })
}

fn cursor(at: &str) -> EscBackupScheduleStatus {
    EscBackupScheduleStatus {
        last_considered_time: Some(Time(ts(at))),
        ..Default::default()
    }
}

fn reasons(plan: &SchedulePlan) -> Vec<&str> {
    plan.events.iter().map(|e| e.reason.as_str()).collect()
}

#[test]
fn a_new_schedule_starts_with_the_next_time_and_sleeps_until_then() {
    let s = spec("0 * * * *");
    let p = at(&s, &Default::default(), &[], "2026-03-01T00:30:00Z");
    assert_eq!(p.create, None);
    assert_eq!(
        p.status.last_considered_time,
        Some(Time(ts("2026-03-01T00:30:00Z")))
    );
    assert_eq!(
        p.status.next_schedule_time,
        Some(Time(ts("2026-03-01T01:00:00Z")))
    );
    assert_eq!(
        p.requeue,
        Some(Duration::from_secs(30 * 60).min(MAX_REQUEUE))
    );
    assert!(conditions::is_true(&p.status.conditions, READY));
    assert!(!conditions::is_true(&p.status.conditions, STALLED));
    // Planned again from what it stored, a minute later: nothing changes but time.
    let again = at(&s, &p.status, &[], "2026-03-01T00:31:00Z");
    assert_eq!(again.status, p.status, "no status write while waiting");
}

#[test]
fn a_due_time_creates_one_run_named_after_it() {
    let s = spec("0 * * * *");
    let p = at(
        &s,
        &cursor("2026-03-01T00:30:00Z"),
        &[],
        "2026-03-01T01:00:05Z",
    );
    assert_eq!(
        p.create,
        Some(NewRun {
            name: "nightly-202603010100".into(),
            scheduled: ts("2026-03-01T01:00:00Z")
        })
    );
    assert_eq!(
        p.status.last_schedule_time,
        Some(Time(ts("2026-03-01T01:00:00Z")))
    );
    assert_eq!(p.status.active.as_deref(), Some("nightly-202603010100"));
    assert_eq!(
        p.status.next_schedule_time,
        Some(Time(ts("2026-03-01T02:00:00Z")))
    );
    assert_eq!(reasons(&p), ["RunCreated"]);
    assert_eq!((p.missed, p.skipped), (0, 0));
    // The status write was lost; the run exists: it is not created again, nor skipped.
    let runs = [run("nightly-202603010100", "2026-03-01T01:00:00Z", None)];
    let again = at(
        &s,
        &cursor("2026-03-01T00:30:00Z"),
        &runs,
        "2026-03-01T01:00:09Z",
    );
    assert_eq!(again.create, None);
    assert_eq!((again.missed, again.skipped), (0, 0));
    assert!(again.events.is_empty(), "{:?}", again.events);
    assert_eq!(
        again.status.last_schedule_time,
        Some(Time(ts("2026-03-01T01:00:00Z")))
    );
}

#[test]
fn a_run_due_while_the_previous_is_active_is_skipped_not_queued() {
    let s = spec("*/10 * * * *");
    for phase in [None, Some(RunPhase::Pending), Some(RunPhase::Running)] {
        let runs = [run("nightly-202603010100", "2026-03-01T01:00:00Z", phase)];
        let p = at(
            &s,
            &cursor("2026-03-01T01:00:00Z"),
            &runs,
            "2026-03-01T01:10:00Z",
        );
        assert_eq!(p.create, None, "{phase:?}");
        assert_eq!(p.skipped, 1);
        assert_eq!(reasons(&p), ["RunSkipped"]);
        let skipped = p.status.last_skipped.clone().unwrap();
        assert_eq!(skipped.reason, "Overlap");
        assert_eq!(skipped.scheduled_time, Time(ts("2026-03-01T01:10:00Z")));
        assert!(
            skipped.message.contains("nightly-202603010100"),
            "{}",
            skipped.message
        );
        // Not queued: once the active run ends, nothing starts until the next time.
        let done = [run(
            "nightly-202603010100",
            "2026-03-01T01:00:00Z",
            Some(RunPhase::Succeeded),
        )];
        let later = at(&s, &p.status, &done, "2026-03-01T01:15:00Z");
        assert_eq!(later.create, None);
        let next = at(&s, &later.status, &done, "2026-03-01T01:20:00Z");
        assert_eq!(next.create.unwrap().name, "nightly-202603010120");
    }
    // A run being deleted is not active.
    let mut gone = run(
        "nightly-202603010100",
        "2026-03-01T01:00:00Z",
        Some(RunPhase::Running),
    );
    gone.deleting = true;
    let p = at(
        &s,
        &cursor("2026-03-01T01:00:00Z"),
        &[gone],
        "2026-03-01T01:10:00Z",
    );
    assert!(p.create.is_some());
}

#[test]
fn after_a_long_outage_at_most_one_missed_run_starts() {
    let mut s = spec("0 * * * *");
    // Down from 01:30 to 11:20: ten hourly times passed; only 11:00 starts.
    let p = at(
        &s,
        &cursor("2026-03-01T01:30:00Z"),
        &[],
        "2026-03-01T11:20:00Z",
    );
    assert_eq!(p.create.clone().unwrap().name, "nightly-202603011100");
    assert_eq!(p.missed, 9);
    assert_eq!(reasons(&p), ["MissedRuns", "RunCreated"]);
    assert!(
        p.events[0]
            .note
            .contains("9 scheduled run(s) from 2026-03-01 02:00 UTC on were missed"),
        "{}",
        p.events[0].note
    );
    assert_eq!(p.status.last_skipped.as_ref().unwrap().reason, "Missed");
    assert_eq!(
        p.status.last_skipped.as_ref().unwrap().scheduled_time,
        Time(ts("2026-03-01T10:00:00Z"))
    );
    assert_eq!(
        p.status.last_considered_time,
        Some(Time(ts("2026-03-01T11:00:00Z")))
    );
    // Within the deadline: still starts. Beyond it: missed too, nothing starts.
    s.starting_deadline_seconds = Some(1200);
    let within = at(
        &s,
        &cursor("2026-03-01T01:30:00Z"),
        &[],
        "2026-03-01T11:20:00Z",
    );
    assert!(within.create.is_some());
    let beyond = at(
        &s,
        &cursor("2026-03-01T01:30:00Z"),
        &[],
        "2026-03-01T11:20:01Z",
    );
    assert_eq!(beyond.create, None);
    assert_eq!(beyond.missed, 10);
    assert_eq!(reasons(&beyond), ["MissedRuns", "DeadlineExceeded"]);
    assert_eq!(
        beyond.status.last_skipped.as_ref().unwrap().reason,
        "DeadlineExceeded"
    );
    // And the next reconcile does not look back again.
    let next = at(&s, &beyond.status, &[], "2026-03-01T11:25:00Z");
    assert_eq!((next.create.clone(), next.missed), (None, 0));
    assert_eq!(
        next.status.next_schedule_time,
        Some(Time(ts("2026-03-01T12:00:00Z")))
    );
}

#[test]
fn suspended_schedules_create_nothing_and_do_not_make_up_runs_on_resume() {
    let mut s = spec("0 * * * *");
    s.suspend = true;
    let p = at(
        &s,
        &cursor("2026-03-01T00:30:00Z"),
        &[],
        "2026-03-01T01:00:00Z",
    );
    assert_eq!(p.create, None);
    assert_eq!((p.missed, p.skipped), (0, 0));
    assert_eq!(p.status.next_schedule_time, None);
    let ready = conditions::find(&p.status.conditions, READY).unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", SUSPENDED)
    );
    assert!(p.requeue.is_some(), "the cursor moves at each due time");
    // Resumed at 02:10 after the operator was down across 02:00: 02:00 is not made up.
    s.suspend = false;
    let resumed = at(&s, &p.status, &[], "2026-03-01T02:10:00Z");
    assert_eq!(resumed.create, None);
    assert_eq!(resumed.missed, 0);
    assert_eq!(
        resumed.status.next_schedule_time,
        Some(Time(ts("2026-03-01T03:00:00Z")))
    );
    let next = at(&s, &resumed.status, &[], "2026-03-01T03:00:00Z");
    assert_eq!(next.create.unwrap().name, "nightly-202603010300");
}

#[test]
fn invalid_schedules_stall_with_what_to_fix_and_fail_closed() {
    for (schedule, zone, reason, says) in [
        ("0 5-1 * * *", None, "InvalidSchedule", "goes backwards"),
        ("0 0 30 2 *", None, "NeverFires", "never fires"),
        (
            "0 0 * * *",
            Some("Europe/Berlinn"),
            "UnknownTimeZone",
            "not in the tz database",
        ),
        ("garbage", None, "InvalidSchedule", "has 1 fields"),
    ] {
        let mut s = spec(schedule);
        s.time_zone = zone.map(str::to_owned);
        let runs = [run(
            "nightly-1",
            "2026-03-01T00:00:00Z",
            Some(RunPhase::Succeeded),
        )];
        let p = at(
            &s,
            &cursor("2026-03-01T00:30:00Z"),
            &runs,
            "2026-03-02T00:00:00Z",
        );
        assert_eq!(p.create, None);
        assert!(p.delete.is_empty());
        assert_eq!(p.requeue, None);
        assert_eq!(p.status.next_schedule_time, None);
        let stalled = conditions::find(&p.status.conditions, STALLED).unwrap();
        assert_eq!(
            (stalled.status.as_str(), stalled.reason.as_str()),
            ("True", reason)
        );
        assert!(stalled.message.contains(says), "{}", stalled.message);
        assert!(!conditions::is_true(&p.status.conditions, READY));
        assert_eq!(reasons(&p), [reason]);
        // Said once, not at every reconcile.
        let again = at(&s, &p.status, &runs, "2026-03-02T00:01:00Z");
        assert!(again.events.is_empty());
        assert_eq!(again.status, p.status);
    }
}

#[test]
fn daylight_saving_days_run_once_in_the_schedules_zone() {
    let mut s = spec("30 2 * * *");
    s.time_zone = Some("Europe/Berlin".into());
    // Spring forward: 02:30 does not exist; it runs at 03:00 CEST = 01:00 UTC.
    let p = at(
        &s,
        &cursor("2026-03-28T12:00:00Z"),
        &[],
        "2026-03-29T01:00:00Z",
    );
    assert_eq!(p.create.unwrap().name, "nightly-202603290100");
    // Fall back: 02:30 occurs twice; the first (00:30 UTC) runs, the second does not.
    let first = at(
        &s,
        &cursor("2026-10-24T12:00:00Z"),
        &[],
        "2026-10-25T00:30:00Z",
    );
    assert_eq!(first.create.clone().unwrap().name, "nightly-202610250030");
    let second = at(&s, &first.status, &[], "2026-10-25T01:30:00Z");
    assert_eq!(second.create, None);
    assert_eq!(
        second.status.next_schedule_time,
        Some(Time(ts("2026-10-26T01:30:00Z")))
    );
}

fn succeeded(name: &str, at: &str) -> RunView {
    run(name, at, Some(RunPhase::Succeeded))
}

fn failed(name: &str, at: &str) -> RunView {
    run(name, at, Some(RunPhase::Failed))
}

fn keep(f: impl FnOnce(&mut Retention)) -> Retention {
    let mut r = Retention::default();
    f(&mut r);
    r
}

#[test]
fn retention_keep_last_deletes_the_older_succeeded_runs() {
    let runs = [
        succeeded("a", "2026-03-01T01:00:00Z"),
        succeeded("b", "2026-03-01T02:00:00Z"),
        succeeded("c", "2026-03-01T03:00:00Z"),
        succeeded("d", "2026-03-01T04:00:00Z"),
    ];
    let now = ts("2026-03-01T05:00:00Z");
    let r = keep(|r| r.keep_last = Some(2));
    assert_eq!(retain(&runs, &r, &TimeZone::UTC, now), ["a", "b"]);
    // No rule: nothing.
    assert!(retain(&runs, &Retention::default(), &TimeZone::UTC, now).is_empty());
}

#[test]
fn retention_never_deletes_the_last_good_backup_when_newer_runs_fail() {
    let runs = [
        succeeded("good", "2026-03-01T01:00:00Z"),
        failed("f1", "2026-03-01T02:00:00Z"),
        failed("f2", "2026-03-01T03:00:00Z"),
        failed("f3", "2026-03-01T04:00:00Z"),
    ];
    let now = ts("2026-04-01T00:00:00Z");
    // keepLast 1 and a maxAge the good one is far beyond: it stays all the same.
    let r = keep(|r| {
        r.keep_last = Some(1);
        r.max_age = Some("1h".parse().unwrap());
        r.failed_history_limit = Some(2);
    });
    assert_eq!(retain(&runs, &r, &TimeZone::UTC, now), ["f1"]);
    // Only once a newer run succeeded does the old one go.
    let mut more = runs.to_vec();
    more.push(succeeded("newer", "2026-03-01T05:00:00Z"));
    assert_eq!(retain(&more, &r, &TimeZone::UTC, now), ["f1", "good"]);
}

#[test]
fn retention_daily_weekly_and_max_age_keep_the_union() {
    // Two runs a day for ten days (2026-03-02 is a Monday).
    let mut runs = Vec::new();
    for day in 2..=11 {
        for hour in ["06", "18"] {
            let at = format!("2026-03-{day:02}T{hour}:00:00Z");
            runs.push(succeeded(&format!("d{day:02}-{hour}"), &at));
        }
    }
    let now = ts("2026-03-11T20:00:00Z");
    let kept = |r: &Retention| -> Vec<String> {
        let deleted = retain(&runs, r, &TimeZone::UTC, now);
        runs.iter()
            .map(|r| r.name.clone())
            .filter(|n| !deleted.contains(n))
            .collect()
    };
    // The newest of each of the last three days.
    assert_eq!(
        kept(&keep(|r| r.keep_daily = Some(3))),
        ["d09-18", "d10-18", "d11-18"]
    );
    // The newest of each of the last two ISO weeks (Mon 9th-Wed 11th, Mon 2nd-Sun 8th).
    assert_eq!(
        kept(&keep(|r| r.keep_weekly = Some(2))),
        ["d08-18", "d11-18"]
    );
    // Younger than 27 h (back to 10th 17:00), plus the newest one.
    assert_eq!(
        kept(&keep(|r| {
            r.max_age = Some("27h".parse().unwrap());
            r.keep_last = Some(1);
        })),
        ["d10-18", "d11-06", "d11-18"]
    );
    assert_eq!(
        kept(&keep(|r| r.keep_daily = Some(2))),
        ["d10-18", "d11-18"]
    );
    // Days are the schedule zone's: at 18:00 UTC it is already the next day in Tokyo.
    let tokyo = time_zone(Some("Asia/Tokyo")).unwrap();
    let deleted = retain(&runs, &keep(|r| r.keep_daily = Some(2)), &tokyo, now);
    let tokyo_kept: Vec<&str> = runs
        .iter()
        .map(|r| r.name.as_str())
        .filter(|n| !deleted.iter().any(|d| d == n))
        .collect();
    assert_eq!(tokyo_kept, ["d11-06", "d11-18"]);
}

#[test]
fn retention_fails_closed_on_unknown_phase_or_time_and_leaves_active_runs() {
    let mut garbled = succeeded("garbled", "2026-03-01T00:00:00Z");
    garbled.scheduled = None;
    let runs = [
        garbled,
        run("unknown", "2026-03-01T01:00:00Z", None),
        run("pending", "2026-03-01T02:00:00Z", Some(RunPhase::Pending)),
        run("running", "2026-03-01T03:00:00Z", Some(RunPhase::Running)),
        succeeded("old", "2026-03-01T04:00:00Z"),
        succeeded("new", "2026-03-01T05:00:00Z"),
    ];
    let r = keep(|r| {
        r.keep_last = Some(1);
        r.failed_history_limit = Some(0);
    });
    assert_eq!(
        retain(&runs, &r, &TimeZone::UTC, ts("2026-03-02T00:00:00Z")),
        ["old"]
    );
    // A run already being deleted is not deleted again (and does not count as the newest).
    let mut deleting = succeeded("new", "2026-03-01T05:00:00Z");
    deleting.deleting = true;
    let runs = [succeeded("old", "2026-03-01T04:00:00Z"), deleting];
    assert!(retain(&runs, &r, &TimeZone::UTC, ts("2026-03-02T00:00:00Z")).is_empty());
}

#[test]
fn failed_runs_are_kept_up_to_the_limit_default_three() {
    let runs: Vec<RunView> = (1..=5)
        .map(|h| failed(&format!("f{h}"), &format!("2026-03-01T0{h}:00:00Z")))
        .collect();
    let now = ts("2026-03-02T00:00:00Z");
    assert_eq!(
        retain(&runs, &Retention::default(), &TimeZone::UTC, now),
        ["f1", "f2"]
    );
    let none = keep(|r| r.failed_history_limit = Some(0));
    assert_eq!(retain(&runs, &none, &TimeZone::UTC, now).len(), 5);
}

#[test]
fn retention_deletions_come_with_the_plan_and_an_event_each() {
    let mut s = spec("0 * * * *");
    s.retention.keep_last = Some(1);
    let runs = [
        succeeded("nightly-202603010100", "2026-03-01T01:00:00Z"),
        succeeded("nightly-202603010200", "2026-03-01T02:00:00Z"),
    ];
    let p = at(
        &s,
        &cursor("2026-03-01T02:00:00Z"),
        &runs,
        "2026-03-01T02:30:00Z",
    );
    assert_eq!(p.delete, ["nightly-202603010100"]);
    assert_eq!(reasons(&p), ["RunDeleted"]);
    assert_eq!(
        p.status.last_successful_time,
        Some(Time(ts("2026-03-01T02:00:00Z")))
    );
    assert_eq!(p.status.active, None);
}

#[test]
fn run_names_are_the_utc_minute() {
    assert_eq!(
        run_name("nightly", ts("2026-10-25T00:30:00Z")),
        "nightly-202610250030"
    );
}

#[test]
// (Planned in well under a second: next_after does no tz lookup before its start.)
fn a_year_long_outage_of_a_minutely_schedule_is_counted_cheaply_and_starts_one_run() {
    let s = spec("* * * * *");
    let p = at(
        &s,
        &cursor("2026-01-01T00:00:00Z"),
        &[],
        "2027-01-01T00:00:30Z",
    );
    // Capped: the count says "at least"; the latest time is still the one that runs.
    assert_eq!(p.missed, MISSED_COUNT_LIMIT as u64);
    assert!(
        p.events[0].note.starts_with("at least "),
        "{}",
        p.events[0].note
    );
    assert_eq!(p.create.unwrap().name, "nightly-202701010000");
    assert_eq!(
        p.status.last_considered_time,
        Some(Time(ts("2027-01-01T00:00:00Z")))
    );
}
