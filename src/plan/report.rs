//! What every plan reports besides its status: problems (a reason and a message) and Events.
//! Pure; imports nothing.

/// Why something could not be seen or done, in the two forms the status needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Short, stable, CamelCase: a condition reason and a metric label.
    pub reason: String,
    /// What happened and what to do; never a secret.
    pub message: String,
}

impl Problem {
    pub fn new(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// An Event to publish on the object being reconciled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedEvent {
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

impl PlannedEvent {
    pub fn normal(reason: &str, note: impl Into<String>) -> Self {
        PlannedEvent {
            warning: false,
            reason: reason.to_owned(),
            note: note.into(),
        }
    }
    pub fn warning(reason: &str, note: impl Into<String>) -> Self {
        PlannedEvent {
            warning: true,
            reason: reason.to_owned(),
            note: note.into(),
        }
    }
}
