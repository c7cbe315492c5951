//! Cron expressions in a time zone: parsing (5 fields as Vixie cron reads them, plus the `@`
//! macros) and the next scheduled instant after a given one, with the daylight-saving rule of
//! [`crate::api::EscBackupSchedule`]: a wall time in a gap runs once at the first instant after
//! the gap, a wall time that occurs twice runs once at its first occurrence.
//!
//! Pure: the caller passes the instant to start from. Time zones come from the tz database
//! compiled into the binary (jiff's bundled copy), so every replica and every image agrees.

use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp};

/// How far ahead [`Cron::next_after`] looks. A schedule such as `0 0 29 2 *` fires once in
/// four years, and once in eight across 2100, which is no leap year.
const HORIZON_DAYS: u32 = 366 * 8 + 31;

/// A parsed 5-field cron expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    /// Bit d for day of month d (1-31).
    days_of_month: u32,
    /// Bit m for month m (1-12).
    months: u16,
    /// Bit d for weekday d (0 Sunday … 6 Saturday).
    days_of_week: u8,
    /// Vixie cron: when either day field starts with `*`, a day must match both fields (the
    /// starred one matches all); when both are restricted, a day matching either runs.
    day_star: bool,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

struct Field {
    name: &'static str,
    position: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// The value of the first name (JAN is 1, SUN is 0).
    first_name: u32,
}

const MINUTE: Field = Field {
    name: "minute",
    position: "1st",
    min: 0,
    max: 59,
    names: &[],
    first_name: 0,
};
const HOUR: Field = Field {
    name: "hour",
    position: "2nd",
    min: 0,
    max: 23,
    names: &[],
    first_name: 0,
};
const DAY_OF_MONTH: Field = Field {
    name: "day of month",
    position: "3rd",
    min: 1,
    max: 31,
    names: &[],
    first_name: 0,
};
const MONTH: Field = Field {
    name: "month",
    position: "4th",
    min: 1,
    max: 12,
    names: &MONTHS,
    first_name: 1,
};
/// 7 is Sunday too, as in Vixie cron.
const DAY_OF_WEEK: Field = Field {
    name: "day of week",
    position: "5th",
    min: 0,
    max: 7,
    names: &WEEKDAYS,
    first_name: 0,
};

impl Field {
    fn value(&self, text: &str) -> Result<u32, String> {
        let upper = text.to_ascii_uppercase();
        if let Some(i) = self.names.iter().position(|n| *n == upper) {
            return Ok(i as u32 + self.first_name);
        }
        let v: u32 = text.parse().map_err(|_| {
            format!(
                "the {} ({} field) has {text:?}, which is not a number{}",
                self.name,
                self.position,
                if self.names.is_empty() {
                    String::new()
                } else {
                    format!(
                        " or a name ({}-{})",
                        self.names[0],
                        self.names[self.names.len() - 1]
                    )
                }
            )
        })?;
        if v < self.min || v > self.max {
            return Err(format!(
                "the {} ({} field) has {v}, outside {}-{}",
                self.name, self.position, self.min, self.max
            ));
        }
        Ok(v)
    }

    /// The set of values as a bit mask (bit v for value v).
    fn parse(&self, text: &str) -> Result<u64, String> {
        let mut mask = 0u64;
        for element in text.split(',') {
            let (range, step) = match element.split_once('/') {
                Some((range, step)) => {
                    let step: u32 = step.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                        format!(
                            "the {} ({} field) has step {step:?}: a step is a number of at least 1",
                            self.name, self.position
                        )
                    })?;
                    (range, Some(step))
                }
                None => (element, None),
            };
            let (low, high) = if range == "*" {
                (self.min, self.max)
            } else if let Some((a, b)) = range.split_once('-') {
                let (a, b) = (self.value(a)?, self.value(b)?);
                if a > b {
                    return Err(format!(
                        "the {} ({} field) has the range {range}, which goes backwards: write {b}-{a}, or a list",
                        self.name, self.position
                    ));
                }
                (a, b)
            } else if step.is_some() {
                return Err(format!(
                    "the {} ({} field) has {element:?}: a step needs * or a range before it, such as */15 or 0-30/15",
                    self.name, self.position
                ));
            } else {
                let v = self.value(range)?;
                (v, v)
            };
            let mut v = low;
            while v <= high {
                mask |= 1 << v;
                v += step.unwrap_or(1);
            }
        }
        Ok(mask)
    }
}

impl Cron {
    /// Parses `text`: 5 fields or one of `@hourly`, `@daily`, `@midnight`, `@weekly`,
    /// `@monthly`, `@yearly`, `@annually`. The error says what to fix.
    pub fn parse(text: &str) -> Result<Cron, String> {
        let text = text.trim();
        let expanded = match text {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            other if other.starts_with('@') => {
                return Err(format!(
                    "{other:?} is not a known macro: use @hourly, @daily, @midnight, @weekly, \
                     @monthly, @yearly or @annually"
                ));
            }
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, dom, month, dow] = fields[..] else {
            return Err(format!(
                "{text:?} has {} fields; a schedule has five: minute hour day-of-month month \
                 day-of-week (such as '30 2 * * *')",
                fields.len()
            ));
        };
        let mut days_of_week = DAY_OF_WEEK.parse(dow)?;
        if days_of_week & (1 << 7) != 0 {
            days_of_week = (days_of_week | 1) & !(1 << 7);
        }
        Ok(Cron {
            minutes: MINUTE.parse(minute)?,
            hours: HOUR.parse(hour)? as u32,
            days_of_month: DAY_OF_MONTH.parse(dom)? as u32,
            months: MONTH.parse(month)? as u16,
            days_of_week: days_of_week as u8,
            day_star: dom.starts_with('*') || dow.starts_with('*'),
        })
    }

    fn day_matches(&self, date: Date) -> bool {
        if self.months & (1 << date.month()) == 0 {
            return false;
        }
        let dom = self.days_of_month & (1 << date.day()) != 0;
        let dow = self.days_of_week & (1 << date.weekday().to_sunday_zero_offset()) != 0;
        if self.day_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first scheduled instant strictly after `after`, reading the schedule in `tz`; `None`
    /// when it never fires (such as `0 0 30 2 *`).
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        // Wall times map to instants in order (a gap to its end, a fold to its first
        // occurrence), and `after`'s own wall time maps to `after` or, in the second occurrence
        // of a fold, earlier: so no wall time up to it can map to a later instant, and those
        // are passed over without a tz lookup.
        let earliest = tz.to_datetime(after);
        let mut date = earliest.date();
        for _ in 0..HORIZON_DAYS {
            if self.day_matches(date) {
                for hour in (0..24).filter(|h| self.hours & (1 << h) != 0) {
                    if date.at(hour as i8, 59, 59, 0) <= earliest {
                        continue;
                    }
                    for minute in (0..60).filter(|m| self.minutes & (1 << m) != 0) {
                        let wall = date.at(hour as i8, minute as i8, 0, 0);
                        if wall <= earliest {
                            continue;
                        }
                        let Some(at) = instant_of(wall, tz) else {
                            continue;
                        };
                        if at > after {
                            return Some(at);
                        }
                    }
                }
            }
            date = date.tomorrow().ok()?;
        }
        None
    }

    /// The last scheduled instant at or before `until`; `None` when there is none within the
    /// horizon.
    pub fn last_at_or_before(&self, until: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        // The mirror of `next_after`: a wall time after `until`'s own maps to an instant at or
        // before it only inside a fold, and no zone's fold is longer than a day (26 hours is a
        // margin).
        let latest = tz
            .to_datetime(until)
            .checked_add(SignedDuration::from_hours(26))
            .ok()?;
        let mut date = latest.date();
        for _ in 0..HORIZON_DAYS {
            if self.day_matches(date) {
                for hour in (0..24).rev().filter(|h| self.hours & (1 << h) != 0) {
                    if date.at(hour as i8, 0, 0, 0) > latest {
                        continue;
                    }
                    for minute in (0..60).rev().filter(|m| self.minutes & (1 << m) != 0) {
                        let wall = date.at(hour as i8, minute as i8, 0, 0);
                        if wall > latest {
                            continue;
                        }
                        // Wall times map to instants in order, so the first one at or before
                        // `until`, going back, is the last.
                        let Some(at) = instant_of(wall, tz) else {
                            continue;
                        };
                        if at <= until {
                            return Some(at);
                        }
                    }
                }
            }
            date = date.yesterday().ok()?;
        }
        None
    }

    /// Every scheduled instant in `(after, until]`, at most `limit` of them (the earliest).
    pub fn between(
        &self,
        after: Timestamp,
        until: Timestamp,
        tz: &TimeZone,
        limit: usize,
    ) -> Vec<Timestamp> {
        let mut out = Vec::new();
        let mut cursor = after;
        while out.len() < limit {
            match self.next_after(cursor, tz) {
                Some(t) if t <= until => {
                    out.push(t);
                    cursor = t;
                }
                _ => break,
            }
        }
        out
    }
}

/// The instant a wall time of `tz` runs at: the only one; in a fold the first; in a gap the
/// instant the gap ends (the transition).
fn instant_of(wall: DateTime, tz: &TimeZone) -> Option<Timestamp> {
    let at = |offset: jiff::tz::Offset| offset.to_timestamp(wall).ok();
    match tz.to_ambiguous_timestamp(wall).offset() {
        AmbiguousOffset::Unambiguous { offset } => at(offset),
        AmbiguousOffset::Fold { before, after } => Some(at(before)?.min(at(after)?)),
        AmbiguousOffset::Gap { before, after } => {
            // Read with the offset before the gap, the wall time lies after the transition;
            // with the offset after it, before. The transition itself is in between.
            let late = at(before)?;
            let early = at(after)?;
            let transition = tz
                .preceding(late.checked_add(SignedDuration::from_secs(1)).ok()?)
                .next()
                .map(|t| t.timestamp())
                .filter(|t| *t >= early && *t <= late);
            Some(transition.unwrap_or(late))
        }
    }
}

/// The time zone named `name` (IANA) from the bundled database; `None`: UTC.
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, String> {
    match name {
        None => Ok(TimeZone::UTC),
        Some(name) => jiff::tz::db().get(name).map_err(|_| {
            format!(
                "timeZone {name:?} is not in the tz database: use an IANA name such as UTC, \
                 Europe/Berlin or America/New_York"
            )
        }),
    }
}

#[cfg(test)]
mod tests;
