//! The renderer: every string escadm prints and every exit code, made from the typed answers of
//! [`crate::model`] and [`crate::reply`], in one place, so that a format can be corrected when a
//! real ESC shows otherwise. `docs/escadm-formats.md` is the contract these implement and
//! `docs/escadm-formats/` holds a transcript of each case; keep all three in step.
//!
//! Labels: **(seed)** = published in the ESC 3.1 guide chapter (verified); **(assumed)** = our
//! plausible choice, not published anywhere.
//!
//! May import: `model`, `reply` (never `escadm` or `store`: rendering does no I/O).

use crate::model::{Corruption, Health, Mode, ModeSet, Refusal, Role, StatusReport, Trouble};
use crate::reply::{Begun, Failed, Failure, IoFailure, Reply, Report, Usage};

// ---- exit codes (assumed) ----
pub const EXIT_OK: i32 = 0;
/// Unexpected internal error.
pub const EXIT_INTERNAL: i32 = 1;
/// Usage error: unknown command, bad or missing option, bad mode value (`maintenace`).
pub const EXIT_USAGE: i32 = 2;
/// In-flight transactions present and `--ipt_check=true`.
pub const EXIT_IN_FLIGHT: i32 = 3;
/// Operation needs MAINTENANCE mode (backup).
pub const EXIT_NEEDS_MAINTENANCE: i32 = 4;
/// Operation not allowed on this node's role (backup on the HA BACKUP node).
pub const EXIT_WRONG_ROLE: i32 = 5;
/// Services still running (restore).
pub const EXIT_SERVICES_RUNNING: i32 = 6;
/// Services not running (op_mode set, backup while stopped).
pub const EXIT_NOT_RUNNING: i32 = 7;
/// I/O error: file missing, unreadable, not an ESC backup, disk full, scp failure.
pub const EXIT_IO: i32 = 8;

/// Where a printed text comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Published in the ESC guide.
    Seed,
    /// Our assumption.
    Assumed,
}

/// A reply as escadm prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub stdout: Vec<String>,
    /// The one `ERROR: ` line of a failure.
    pub stderr: Option<String>,
    pub exit: i32,
    /// `Seed` only when every line is published text.
    pub source: Source,
}

pub fn render(reply: &Reply) -> Rendered {
    match reply {
        Ok(report) => Rendered {
            stdout: report_lines(report),
            stderr: None,
            exit: EXIT_OK,
            source: report_source(report),
        },
        Err(failed) => Rendered {
            stdout: failed.begun.iter().map(begun_line).collect(),
            stderr: Some(error_line(&failure_message(&failed.failure))),
            exit: failure_exit(&failed.failure),
            source: Source::Assumed,
        },
    }
}

pub fn exit_code(reply: &Reply) -> i32 {
    match reply {
        Ok(_) => EXIT_OK,
        Err(Failed { failure, .. }) => failure_exit(failure),
    }
}

pub fn failure_exit(failure: &Failure) -> i32 {
    match failure {
        Failure::Refused(r) => match r {
            Refusal::ServicesNotRunning => EXIT_NOT_RUNNING,
            Refusal::InFlight { .. } => EXIT_IN_FLIGHT,
            Refusal::NeedsMaintenance { .. } => EXIT_NEEDS_MAINTENANCE,
            Refusal::OnStandby => EXIT_WRONG_ROLE,
            Refusal::ServicesRunning { .. } => EXIT_SERVICES_RUNNING,
        },
        Failure::Usage(_) => EXIT_USAGE,
        Failure::Io(_) => EXIT_IO,
        Failure::Injected { code, .. } => *code,
    }
}

/// Prefix of the one stderr line of any failure (assumed).
pub const ERROR_PREFIX: &str = "ERROR: ";

pub fn error_line(message: &str) -> String {
    format!("{ERROR_PREFIX}{message}")
}

/// The stderr message of a failure, without the `ERROR: ` prefix (all assumed).
pub fn failure_message(failure: &Failure) -> String {
    match failure {
        Failure::Refused(r) => refusal_message(r),
        Failure::Usage(u) => usage_message(u),
        Failure::Io(e) => io_message(e),
        Failure::Injected { code, message } => message
            .clone()
            .unwrap_or_else(|| format!("injected failure (exit {code})")),
    }
}

fn refusal_message(r: &Refusal) -> String {
    match r {
        Refusal::ServicesNotRunning => {
            "ESC services are not running; run 'escadm restart' first".to_owned()
        }
        Refusal::InFlight { count, mode } => {
            format!("{count} in-flight transaction(s) in progress; ESC not set to {mode} mode")
        }
        Refusal::NeedsMaintenance { mode } => format!(
            "ESC is in {mode} mode; set it to MAINTENANCE mode before a backup (escadm op_mode set --mode=maintenance)"
        ),
        Refusal::OnStandby => {
            "this node is the HA BACKUP; run the backup on the MASTER node".to_owned()
        }
        Refusal::ServicesRunning { running } => format!(
            "ESC services must be stopped before a restore (running: {}); run 'escadm stop'",
            running.join(", ")
        ),
    }
}

fn usage_message(u: &Usage) -> String {
    let with_usage = |detail: &str| {
        format!(
            "{detail}. Usage: escadm op_mode show | op_mode set --mode=maintenance|operation [--ipt_check=true|false] | status [--v] | backup --file FILE | restore --file FILE | stop | restart | log collect"
        )
    };
    match u {
        Usage::NoCommand => with_usage("no command given"),
        Usage::UnknownCommand(c) => with_usage(&format!("unknown command '{c}'")),
        Usage::OpModeNeedsSubcommand => with_usage("op_mode needs 'show' or 'set'"),
        Usage::OpModeSetNeedsMode => with_usage("op_mode set needs --mode"),
        Usage::NeedsFile { command } => with_usage(&format!("{command} needs --file")),
        Usage::UnexpectedArgument(a) => with_usage(&format!("unexpected argument '{a}'")),
        Usage::UnknownOption(o) => with_usage(&format!("unknown option '{o}'")),
        Usage::OptionNeedsValue(name) => with_usage(&format!("option '--{name}' needs a value")),
        Usage::BadScpDestination(url) => with_usage(&format!(
            "bad scp destination '{url}': expected scp://<username>:<password>@<host>:<file>"
        )),
        // The manual's own typo `maintenace` lands here.
        Usage::BadMode(v) => {
            format!("invalid mode '{v}': expected 'maintenance' or 'operation'")
        }
        Usage::BadIptCheck(v) => {
            format!("invalid value '{v}' for --ipt_check: expected 'true' or 'false'")
        }
    }
}

fn io_message(e: &IoFailure) -> String {
    match e {
        IoFailure::CannotRead { path, reason } => format!("cannot read {path}: {reason}"),
        IoFailure::CannotWrite { path, reason } => format!("cannot write {path}: {reason}"),
        IoFailure::NotABackup { src, why } => {
            format!("{src} is not an ESC database backup: {why}")
        }
        // As tar/bzip2 would put it.
        IoFailure::DiskFull { path } => format!("write {path}: No space left on device"),
        IoFailure::NoPassword { user, host } => format!("no password given for {user}@{host}"),
        IoFailure::Tool(message) => message.clone(),
    }
}

/// The stdout of a command that went through.
pub fn report_lines(report: &Report) -> Vec<String> {
    match report {
        Report::OpMode(mode) => vec![op_mode_line(*mode)],
        Report::ModeSet(ModeSet { to, .. }) => vec![set_mode_line(*to), op_mode_line(*to)],
        Report::Status(s) => status_lines(s),
        Report::BackedUp { dest, bytes } => vec![
            begun_line(&Begun::Backup { dest: dest.clone() }),
            format!("Backup completed: {dest} ({bytes} bytes)"),
        ],
        Report::Restored { src } => vec![
            begun_line(&Begun::Restore { src: src.clone() }),
            RESTORE_DONE.to_owned(),
        ],
        Report::Stopped => vec![STOPPING.to_owned(), STOPPED.to_owned()],
        Report::Restarted => vec![RESTARTING.to_owned(), STARTED.to_owned()],
        Report::LogsCollected { path } => {
            vec![begun_line(&Begun::LogCollect), format!("Log file: {path}")]
        }
    }
}

fn report_source(report: &Report) -> Source {
    match report {
        Report::OpMode(_) | Report::ModeSet(_) => Source::Seed,
        _ => Source::Assumed,
    }
}

/// The line a long command prints before it works (assumed).
pub fn begun_line(begun: &Begun) -> String {
    match begun {
        Begun::Backup { dest } => format!("Backing up ESC database to {dest}"),
        Begun::Restore { src } => format!("Restoring ESC database from {src}"),
        Begun::LogCollect => COLLECTING_LOGS.to_owned(),
    }
}

// ---- op_mode (seed) ----
/// `Operation Mode = OPERATION` (seed).
fn op_mode_line(mode: Mode) -> String {
    format!("Operation Mode = {mode}")
}

/// `Set mode to MAINTENANCE` (seed).
fn set_mode_line(mode: Mode) -> String {
    format!("Set mode to {mode}")
}

// ---- status --v (assumed shape) ----
fn status_lines(s: &StatusReport) -> Vec<String> {
    let mut lines: Vec<String> = s
        .services
        .iter()
        .map(|svc| service_line(&svc.name, svc.pid))
        .collect();
    // `ESC version: 5.10.0.86` (assumed).
    lines.push(format!("ESC version: {}", s.esc_version));
    lines.push(summary_line(s.role, &s.health));
    lines
}

/// `pgsql (pid 2116) is running` / `pgsql is stopped` (assumed).
fn service_line(name: &str, pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("{name} (pid {pid}) is running"),
        None => format!("{name} is stopped"),
    }
}

/// `ESC status=<code> ESC <Role> <Health>[: <detail>]` (assumed; the seed only says MASTER/BACKUP
/// shows): 0 healthy, 1 partly stopped, 2 corrupted database, 3 all stopped (with the last role).
fn summary_line(role: Role, health: &Health) -> String {
    let role = role.word();
    match health {
        Health::Healthy => format!("ESC status=0 ESC {role} Healthy"),
        Health::Unhealthy(Trouble::ServiceStopped(name)) => format!(
            "ESC status=1 ESC {role} Unhealthy: {}",
            service_line(name, None)
        ),
        Health::Unhealthy(Trouble::DatabaseCorrupted(c)) => format!(
            "ESC status=2 ESC {role} Unhealthy: {}",
            corruption_detail(c)
        ),
        Health::Stopped => format!("ESC status=3 ESC {role} Stopped"),
    }
}

/// Detail of the corrupted summary, also shown by `esc-sim node show` (assumed).
pub fn corruption_detail(c: &Corruption) -> String {
    format!(
        "database corrupted (schema {} restored on ESC {})",
        c.schema, c.node_version
    )
}

// ---- restore (assumed) ----
const RESTORE_DONE: &str = "Restore completed. Run 'escadm restart' to complete the restore.";

/// The password prompt when an scp URL carries none (seed: "manually enter it"), on stderr
/// with no newline.
pub const PASSWORD_PROMPT: &str = "Password: ";

// ---- stop / restart (assumed) ----
const STOPPING: &str = "Stopping ESC services";
const STOPPED: &str = "ESC services stopped";
const RESTARTING: &str = "Restarting ESC services";
const STARTED: &str = "ESC services started";

// ---- log collect (seed says `/var/tmp/esc_log <timestamp>.tar.bz2`; dash and format assumed) ----
const COLLECTING_LOGS: &str = "Collecting ESC logs";

/// `esc_log-20261128T083000Z.tar.bz2` (assumed).
pub fn log_file_name(timestamp: &str) -> String {
    format!("esc_log-{timestamp}.tar.bz2")
}

// ---- faults ----
/// Default extra warning printed by the warnings fault: the kind ESC 5.6+ prints (assumed).
pub const DEFAULT_WARNING: &str =
    "WARNING: D-MONA is not reachable; monitoring may be degraded (see /var/log/esc/mona.log)";

// ---- northbound endpoint (seed: REST answers "unavailable temporarily"; body assumed) ----
pub const NB_UNAVAILABLE: &str = "ESC is unavailable temporarily: MAINTENANCE mode";
pub const NB_STOPPED: &str = "ESC is unavailable: services stopped";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ServiceStatus;

    #[test]
    fn op_mode_lines_are_the_manuals() {
        let r = render(&Ok(Report::ModeSet(ModeSet {
            from: Mode::Operation,
            to: Mode::Maintenance,
        })));
        assert_eq!(
            r.stdout,
            ["Set mode to MAINTENANCE", "Operation Mode = MAINTENANCE"]
        );
        assert_eq!((r.exit, r.source, r.stderr), (0, Source::Seed, None));
        assert_eq!(
            report_lines(&Report::OpMode(Mode::Operation)),
            ["Operation Mode = OPERATION"]
        );
    }

    #[test]
    fn each_refusal_has_its_exit_code_and_one_error_line() {
        let cases = [
            (Refusal::ServicesNotRunning, 7),
            (
                Refusal::InFlight {
                    count: 2,
                    mode: Mode::Maintenance,
                },
                3,
            ),
            (
                Refusal::NeedsMaintenance {
                    mode: Mode::Operation,
                },
                4,
            ),
            (Refusal::OnStandby, 5),
            (
                Refusal::ServicesRunning {
                    running: vec!["pgsql".into()],
                },
                6,
            ),
        ];
        for (refusal, exit) in cases {
            let r = render(&Err(Failed::at_once(refusal.clone())));
            assert_eq!(r.exit, exit, "{refusal:?}");
            assert!(r.stdout.is_empty());
            let e = r.stderr.unwrap();
            assert!(e.starts_with(ERROR_PREFIX) && !e.contains('\n'), "{e}");
        }
        let r = render(&Err(Failed::at_once(Refusal::InFlight {
            count: 2,
            mode: Mode::Maintenance,
        })));
        assert_eq!(
            r.stderr.unwrap(),
            "ERROR: 2 in-flight transaction(s) in progress; ESC not set to MAINTENANCE mode"
        );
    }

    #[test]
    fn a_failure_after_announcing_prints_the_announcement() {
        let r = render(&Err(Failed::after(
            Begun::Backup {
                dest: "/d/x.tar.bz2".into(),
            },
            IoFailure::DiskFull {
                path: "/d/x.tar.bz2".into(),
            },
        )));
        assert_eq!(r.stdout, ["Backing up ESC database to /d/x.tar.bz2"]);
        assert_eq!(
            r.stderr.as_deref(),
            Some("ERROR: write /d/x.tar.bz2: No space left on device")
        );
        assert_eq!(r.exit, EXIT_IO);
    }

    #[test]
    fn status_summary_codes() {
        let report = |health| StatusReport {
            services: vec![
                ServiceStatus {
                    name: "pgsql".into(),
                    pid: Some(2116),
                },
                ServiceStatus {
                    name: "escmanager".into(),
                    pid: None,
                },
            ],
            esc_version: "5.10.0.86".into(),
            role: Role::Master,
            health,
        };
        let lines = report_lines(&Report::Status(report(Health::Healthy)));
        assert_eq!(
            lines,
            [
                "pgsql (pid 2116) is running",
                "escmanager is stopped",
                "ESC version: 5.10.0.86",
                "ESC status=0 ESC Master Healthy"
            ]
        );
        let last = |h| report_lines(&Report::Status(report(h))).pop().unwrap();
        assert_eq!(
            last(Health::Unhealthy(Trouble::ServiceStopped(
                "escmanager".into()
            ))),
            "ESC status=1 ESC Master Unhealthy: escmanager is stopped"
        );
        assert_eq!(
            last(Health::Unhealthy(Trouble::DatabaseCorrupted(Corruption {
                schema: "5.11".into(),
                db_version: "5.11.0.3".into(),
                node_version: "5.10.0.86".into(),
            }))),
            "ESC status=2 ESC Master Unhealthy: database corrupted (schema 5.11 restored on ESC 5.10.0.86)"
        );
        assert_eq!(last(Health::Stopped), "ESC status=3 ESC Master Stopped");
    }
}
