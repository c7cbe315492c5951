//! What one escadm run answers, typed: a [`Report`] of what it did, or a [`Failed`] saying why it
//! failed and what it had begun. `escadm.rs` produces these, `formats.rs` renders them as text
//! and exit codes, and tests assert on them.
//!
//! May import: `model` only (the refusals and reports of the state machine are part of it).

use crate::model::{Mode, ModeSet, Refusal, StatusReport};

/// What an escadm run answers.
pub type Reply = Result<Report, Failed>;

/// A command that went through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    /// `op_mode show`.
    OpMode(Mode),
    /// `op_mode set`.
    ModeSet(ModeSet),
    /// `status [--v]`.
    Status(StatusReport),
    /// `backup`: `dest` as shown (absolute path, or the scp URL without its password).
    BackedUp { dest: String, bytes: u64 },
    /// `restore`: `src` as shown.
    Restored { src: String },
    /// `stop`.
    Stopped,
    /// `restart`.
    Restarted,
    /// `log collect`: the archive written.
    LogsCollected { path: String },
}

/// A long command that announced itself (one stdout line) before it failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Begun {
    Backup { dest: String },
    Restore { src: String },
    LogCollect,
}

/// A command that failed, after announcing itself or not. It changed nothing, except what a
/// disk-full failure leaves behind (a truncated file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failed {
    pub begun: Option<Begun>,
    pub failure: Failure,
}

impl Failed {
    /// Failed before printing anything.
    pub fn at_once(failure: impl Into<Failure>) -> Failed {
        Failed {
            begun: None,
            failure: failure.into(),
        }
    }

    /// Failed after announcing `begun`.
    pub fn after(begun: Begun, failure: impl Into<Failure>) -> Failed {
        Failed {
            begun: Some(begun),
            failure: failure.into(),
        }
    }
}

/// Why a command failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A rule of the state machine said no.
    Refused(Refusal),
    /// The command line is wrong.
    Usage(Usage),
    /// A file or transfer failed.
    Io(IoFailure),
    /// An injected exit fault: the exit code, and the message if the fault gave one.
    Injected { code: i32, message: Option<String> },
}

impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Self {
        Failure::Refused(r)
    }
}

impl From<Usage> for Failure {
    fn from(u: Usage) -> Self {
        Failure::Usage(u)
    }
}

impl From<IoFailure> for Failure {
    fn from(e: IoFailure) -> Self {
        Failure::Io(e)
    }
}

/// A wrong command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Usage {
    NoCommand,
    UnknownCommand(String),
    /// `op_mode` without `show` or `set`.
    OpModeNeedsSubcommand,
    /// `op_mode set` without `--mode`.
    OpModeSetNeedsMode,
    /// `backup` / `restore` without (or with an empty) `--file`.
    NeedsFile {
        command: String,
    },
    /// A word where an option was expected.
    UnexpectedArgument(String),
    /// An option the command does not take, as written.
    UnknownOption(String),
    /// `--name` given last, with no value.
    OptionNeedsValue(String),
    /// `--mode=` other than exactly `maintenance` or `operation` (the manual's `maintenace`).
    BadMode(String),
    /// `--ipt_check=` other than `true` or `false`.
    BadIptCheck(String),
    /// An `scp://` destination that does not parse, with its password redacted.
    BadScpDestination(String),
}

/// A failed file or transfer operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IoFailure {
    /// `reason` is the operating system's message.
    CannotRead {
        path: String,
        reason: String,
    },
    CannotWrite {
        path: String,
        reason: String,
    },
    /// The archive is no ESC database backup: why (tar's complaint, a missing member...).
    NotABackup {
        src: String,
        why: String,
    },
    /// The disk filled up while writing `path`.
    DiskFull {
        path: String,
    },
    /// An scp URL without a password and no password on stdin.
    NoPassword {
        user: String,
        host: String,
    },
    /// A transfer or scratch-space operation failed; the tool's own message.
    Tool(String),
}
