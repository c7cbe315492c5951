use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn tz(name: &str) -> TimeZone {
    time_zone(Some(name)).unwrap()
}

fn next(expr: &str, zone: &str, after: &str) -> Option<Timestamp> {
    Cron::parse(expr).unwrap().next_after(ts(after), &tz(zone))
}

/// The next `n` instants after `after`.
fn upcoming(expr: &str, zone: &str, after: &str, n: usize) -> Vec<String> {
    let cron = Cron::parse(expr).unwrap();
    let zone = tz(zone);
    let mut at = ts(after);
    (0..n)
        .map(|_| {
            at = cron.next_after(at, &zone).unwrap();
            at.to_string()
        })
        .collect()
}

#[test]
fn fields_lists_ranges_steps_and_names() {
    assert_eq!(
        upcoming("*/20 * * * *", "UTC", "2026-01-01T00:00:00Z", 3),
        [
            "2026-01-01T00:20:00Z",
            "2026-01-01T00:40:00Z",
            "2026-01-01T01:00:00Z"
        ]
    );
    assert_eq!(
        upcoming("5 1-10/3 * * *", "UTC", "2026-01-01T00:00:00Z", 5),
        [
            "2026-01-01T01:05:00Z",
            "2026-01-01T04:05:00Z",
            "2026-01-01T07:05:00Z",
            "2026-01-01T10:05:00Z",
            "2026-01-02T01:05:00Z"
        ]
    );
    // Names in either case; 7 is Sunday as well as 0. 2026-01-03 is a Saturday.
    assert_eq!(
        upcoming("0 12 * jan Sat,7", "UTC", "2026-01-01T00:00:00Z", 3),
        [
            "2026-01-03T12:00:00Z",
            "2026-01-04T12:00:00Z",
            "2026-01-10T12:00:00Z"
        ]
    );
    assert_eq!(
        upcoming("0 0 1,15 */6 *", "UTC", "2026-01-01T00:00:00Z", 3),
        [
            "2026-01-15T00:00:00Z",
            "2026-07-01T00:00:00Z",
            "2026-07-15T00:00:00Z"
        ]
    );
    // Weekday ranges across the end of the week: 5-7 is Friday to Sunday.
    assert_eq!(
        upcoming("0 0 * * 5-7", "UTC", "2026-01-05T00:00:00Z", 3),
        [
            "2026-01-09T00:00:00Z",
            "2026-01-10T00:00:00Z",
            "2026-01-11T00:00:00Z"
        ]
    );
}

#[test]
fn macros_expand_as_in_vixie_cron() {
    let after = "2026-01-07T10:30:00Z"; // a Wednesday
    for (macro_, expected) in [
        ("@hourly", "2026-01-07T11:00:00Z"),
        ("@daily", "2026-01-08T00:00:00Z"),
        ("@midnight", "2026-01-08T00:00:00Z"),
        ("@weekly", "2026-01-11T00:00:00Z"),
        ("@monthly", "2026-02-01T00:00:00Z"),
        ("@yearly", "2027-01-01T00:00:00Z"),
        ("@annually", "2027-01-01T00:00:00Z"),
    ] {
        assert_eq!(
            next(macro_, "UTC", after).unwrap().to_string(),
            expected,
            "{macro_}"
        );
    }
}

#[test]
fn day_of_month_and_day_of_week_or_when_both_restricted_and_when_one_is_starred() {
    // Both restricted: the 13th OR any Monday (2026-02-02 and 2026-02-09 are Mondays).
    assert_eq!(
        upcoming("0 0 13 * MON", "UTC", "2026-02-01T00:00:00Z", 3),
        [
            "2026-02-02T00:00:00Z",
            "2026-02-09T00:00:00Z",
            "2026-02-13T00:00:00Z"
        ]
    );
    // A starred field (`*/2` starts with `*` too): both must match.
    assert_eq!(
        upcoming("0 0 */2 * MON", "UTC", "2026-02-01T00:00:00Z", 2),
        ["2026-02-09T00:00:00Z", "2026-02-23T00:00:00Z"]
    );
}

#[test]
fn rare_schedules_are_found_and_impossible_ones_never_fire() {
    // Feb 29: 2028 is the next leap year.
    assert_eq!(
        next("0 0 29 2 *", "UTC", "2026-03-01T00:00:00Z")
            .unwrap()
            .to_string(),
        "2028-02-29T00:00:00Z"
    );
    // Across 2100, which is not a leap year: eight years.
    assert_eq!(
        next("0 0 29 2 *", "UTC", "2096-03-01T00:00:00Z")
            .unwrap()
            .to_string(),
        "2104-02-29T00:00:00Z"
    );
    assert_eq!(next("0 0 30 2 *", "UTC", "2026-01-01T00:00:00Z"), None);
    assert_eq!(
        next("0 0 31 4,6,9,11 *", "UTC", "2026-01-01T00:00:00Z"),
        None
    );
}

#[test]
fn bad_text_is_rejected_with_what_to_fix() {
    for (text, says) in [
        ("* * * *", "has 4 fields"),
        ("* * * * * *", "has 6 fields"),
        ("", "has 0 fields"),
        ("60 * * * *", "the minute (1st field) has 60, outside 0-59"),
        ("0 24 * * *", "the hour (2nd field) has 24, outside 0-23"),
        (
            "0 0 0 * *",
            "the day of month (3rd field) has 0, outside 1-31",
        ),
        ("0 0 * 13 *", "the month (4th field) has 13, outside 1-12"),
        ("0 0 * FOO *", "not a number or a name (JAN-DEC)"),
        (
            "0 0 * * 8",
            "the day of week (5th field) has 8, outside 0-7",
        ),
        (
            "0 5-1 * * *",
            "the range 5-1, which goes backwards: write 1-5",
        ),
        ("*/0 * * * *", "a step is a number of at least 1"),
        ("5/15 * * * *", "a step needs * or a range before it"),
        ("1,,2 * * * *", "which is not a number"),
        ("@reboot", "is not a known macro"),
        ("CRON_TZ=UTC 0 0 * * *", "has 6 fields"),
    ] {
        let error = Cron::parse(text).unwrap_err();
        assert!(error.contains(says), "{text:?}: {error}");
    }
}

#[test]
fn unknown_time_zones_fail_and_utc_is_the_default() {
    assert_eq!(time_zone(None).unwrap(), TimeZone::UTC);
    assert!(time_zone(Some("UTC")).is_ok());
    assert!(time_zone(Some("America/Argentina/Buenos_Aires")).is_ok());
    let error = time_zone(Some("Mars/Olympus_Mons")).unwrap_err();
    assert!(
        error.contains("\"Mars/Olympus_Mons\" is not in the tz database"),
        "{error}"
    );
    assert!(time_zone(Some("")).is_err());
}

#[test]
fn a_wall_time_in_the_spring_gap_runs_once_at_the_end_of_the_gap() {
    // Europe/Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC).
    assert_eq!(
        upcoming("30 2 * * *", "Europe/Berlin", "2026-03-28T00:00:00Z", 3),
        [
            "2026-03-28T01:30:00Z", // 02:30 CET
            "2026-03-29T01:00:00Z", // 02:30 does not exist: 03:00 CEST
            "2026-03-30T00:30:00Z", // 02:30 CEST
        ]
    );
    // Every quarter hour: 02:00-02:45 all fall into the gap and run once, at 03:00; 03:00 is
    // that same instant and does not run a second time.
    assert_eq!(
        upcoming("*/15 * * * *", "Europe/Berlin", "2026-03-29T00:40:00Z", 4),
        [
            "2026-03-29T00:45:00Z", // 01:45 CET
            "2026-03-29T01:00:00Z", // 03:00 CEST
            "2026-03-29T01:15:00Z", // 03:15 CEST
            "2026-03-29T01:30:00Z",
        ]
    );
    // America/New_York, 2026-03-08: 02:00 EST becomes 03:00 EDT (07:00 UTC).
    assert_eq!(
        upcoming("0 2 * * *", "America/New_York", "2026-03-07T00:00:00Z", 3),
        [
            "2026-03-07T07:00:00Z", // 02:00 EST
            "2026-03-08T07:00:00Z", // 03:00 EDT
            "2026-03-09T06:00:00Z", // 02:00 EDT
        ]
    );
}

#[test]
fn a_wall_time_in_the_repeated_autumn_hour_runs_once_at_its_first_occurrence() {
    // Europe/Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET (01:00 UTC); 02:30 occurs at
    // 00:30 UTC and again at 01:30 UTC.
    assert_eq!(
        upcoming("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", 2),
        [
            "2026-10-25T00:30:00Z", // 02:30 CEST, the first
            "2026-10-26T01:30:00Z", // the next day, 02:30 CET
        ]
    );
    // Started inside the repeated hour (after the first 02:30): the second 02:30 does not run.
    assert_eq!(
        next("30 2 * * *", "Europe/Berlin", "2026-10-25T00:45:00Z")
            .unwrap()
            .to_string(),
        "2026-10-26T01:30:00Z"
    );
    // Stepped minutes do not repeat in the repeated hour either.
    assert_eq!(
        upcoming("*/30 * * * *", "Europe/Berlin", "2026-10-25T00:00:00Z", 4),
        [
            "2026-10-25T00:30:00Z", // 02:30 CEST
            "2026-10-25T02:00:00Z", // 03:00 CET (02:00 and 02:30 CET were seen)
            "2026-10-25T02:30:00Z",
            "2026-10-25T03:00:00Z",
        ]
    );
    // America/New_York, 2026-11-01: 02:00 EDT becomes 01:00 EST (06:00 UTC); 01:30 occurs at
    // 05:30 and 06:30 UTC.
    assert_eq!(
        upcoming("30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z", 2),
        ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]
    );
}

#[test]
fn between_lists_every_due_time_up_to_a_limit() {
    let cron = Cron::parse("0 * * * *").unwrap();
    let due = cron.between(
        ts("2026-01-01T00:00:00Z"),
        ts("2026-01-01T03:00:00Z"),
        &TimeZone::UTC,
        10,
    );
    assert_eq!(due.len(), 3, "(after, until]: 01:00, 02:00, 03:00");
    let capped = cron.between(
        ts("2026-01-01T00:00:00Z"),
        ts("2026-01-02T00:00:00Z"),
        &TimeZone::UTC,
        5,
    );
    assert_eq!(capped.len(), 5);
}

#[test]
fn the_last_time_at_or_before_mirrors_the_next_one_across_both_transitions() {
    let berlin = tz("Europe/Berlin");
    let nightly = Cron::parse("30 2 * * *").unwrap();
    // In the repeated hour, after the first 02:30: that first one is the last.
    assert_eq!(
        nightly
            .last_at_or_before(ts("2026-10-25T01:45:00Z"), &berlin)
            .unwrap()
            .to_string(),
        "2026-10-25T00:30:00Z"
    );
    assert_eq!(
        nightly
            .last_at_or_before(ts("2026-03-29T01:00:00Z"), &berlin)
            .unwrap()
            .to_string(),
        "2026-03-29T01:00:00Z"
    );
    assert_eq!(
        nightly
            .last_at_or_before(ts("2026-03-29T00:59:00Z"), &berlin)
            .unwrap()
            .to_string(),
        "2026-03-28T01:30:00Z"
    );
    assert_eq!(
        Cron::parse("0 0 30 2 *")
            .unwrap()
            .last_at_or_before(ts("2026-03-29T00:59:00Z"), &berlin),
        None
    );
    // Every 7 minutes across both transition days in two zones: last <= t < next, and nothing
    // scheduled lies between them.
    for (zone, from) in [
        ("Europe/Berlin", "2026-03-28T22:00:00Z"),
        ("Europe/Berlin", "2026-10-24T22:00:00Z"),
        ("America/New_York", "2026-03-08T04:00:00Z"),
        ("America/New_York", "2026-11-01T03:00:00Z"),
    ] {
        let zone = tz(zone);
        let quarter = Cron::parse("*/15 * * * *").unwrap();
        let mut t = ts(from);
        for _ in 0..80 {
            let last = quarter.last_at_or_before(t, &zone).unwrap();
            let next = quarter.next_after(t, &zone).unwrap();
            assert!(last <= t && t < next, "{t}: {last} {next}");
            // Nothing scheduled between them: the next after the last is the next after t.
            assert_eq!(quarter.next_after(last, &zone), Some(next), "{t}");
            t = t.checked_add(SignedDuration::from_mins(7)).unwrap();
        }
    }
}
