//! Conditions in the standard Kubernetes shape, written so that an unchanged state produces a
//! byte-identical list: `lastTransitionTime` moves only when a condition's status flips. That is
//! what keeps an idle operator from writing status at every probe.

use crate::api::{Condition, Time};

/// One condition as a controller decides it; [`merge`] turns it into the stored form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub type_: &'static str,
    pub status: bool,
    /// CamelCase, stable: a machine reads it (kstatus, alerts).
    pub reason: String,
    /// For a person: what was seen and what to do.
    pub message: String,
}

impl Desired {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Desired {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// The stored conditions for `desired`, in `desired`'s order, keeping each one's
/// `lastTransitionTime` from `previous` unless its status changed. Conditions of other types in
/// `previous` are dropped: a controller owns all the types it writes.
pub fn merge(
    previous: &[Condition],
    desired: &[Desired],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    desired
        .iter()
        .map(|d| {
            let status = if d.status { "True" } else { "False" };
            let since = previous
                .iter()
                .find(|p| p.type_ == d.type_ && p.status == status)
                .map(|p| p.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            Condition {
                type_: d.type_.to_owned(),
                status: status.to_owned(),
                reason: d.reason.clone(),
                message: clip_message(&d.message),
                observed_generation: generation,
                last_transition_time: since,
            }
        })
        .collect()
}

/// The value of condition `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// True when condition `type_` is present with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

/// The API server rejects condition messages over 32768 bytes; keep them readable long before.
const MESSAGE_LIMIT: usize = 1024;

fn clip_message(message: &str) -> String {
    if message.len() <= MESSAGE_LIMIT {
        return message.to_owned();
    }
    let mut end = MESSAGE_LIMIT;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let first = merge(
            &[],
            &[Desired::new("Ready", false, "Probing", "m1")],
            Some(1),
            &at(10),
        );
        assert_eq!(first[0].last_transition_time, at(10));
        // Same status, new reason and message: the time stays.
        let second = merge(
            &first,
            &[Desired::new("Ready", false, "Other", "m2")],
            Some(2),
            &at(20),
        );
        assert_eq!(second[0].last_transition_time, at(10));
        assert_eq!(second[0].reason, "Other");
        assert_eq!(second[0].observed_generation, Some(2));
        // Status flips: the time moves.
        let third = merge(
            &second,
            &[Desired::new("Ready", true, "Ready", "ok")],
            Some(2),
            &at(30),
        );
        assert_eq!(third[0].last_transition_time, at(30));
        // Unchanged input, later clock: identical output (no churn).
        let fourth = merge(
            &third,
            &[Desired::new("Ready", true, "Ready", "ok")],
            Some(2),
            &at(99),
        );
        assert_eq!(fourth, third);
    }

    #[test]
    fn long_messages_are_clipped_on_a_char_boundary() {
        let long = "é".repeat(1000);
        let merged = merge(&[], &[Desired::new("Ready", true, "R", long)], None, &at(1));
        assert!(merged[0].message.len() <= MESSAGE_LIMIT + '…'.len_utf8());
        assert!(merged[0].message.ends_with('…'));
    }
}
