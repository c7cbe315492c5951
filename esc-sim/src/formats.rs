//! Every string escadm prints, in one place, so that a format can be corrected when a real ESC
//! shows otherwise. `docs/escadm-formats.md` is the contract these implement; keep both in step.
//!
//! Labels: **(seed)** = published in the ESC 3.1 guide chapter (verified); **(assumed)** = our
//! plausible choice, not published anywhere.

use crate::model::{Mode, Role};

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

/// Prefix of the one stderr line of any failure (assumed).
pub const ERROR_PREFIX: &str = "ERROR: ";

pub fn error_line(message: &str) -> String {
    format!("{ERROR_PREFIX}{message}")
}

// ---- op_mode (seed) ----
/// `Operation Mode = OPERATION` (seed).
pub fn op_mode_line(mode: Mode) -> String {
    format!("Operation Mode = {mode}")
}

/// `Set mode to MAINTENANCE` (seed).
pub fn set_mode_line(mode: Mode) -> String {
    format!("Set mode to {mode}")
}

/// Refusal under `--ipt_check=true` (assumed).
pub fn ipt_refusal(count: u32, mode: Mode) -> String {
    format!("{count} in-flight transaction(s) in progress; ESC not set to {mode} mode")
}

/// Bad `--mode=` value, such as the manual's own typo `maintenace` (assumed).
pub fn bad_mode(value: &str) -> String {
    format!("invalid mode '{value}': expected 'maintenance' or 'operation'")
}

pub fn bad_ipt_check(value: &str) -> String {
    format!("invalid value '{value}' for --ipt_check: expected 'true' or 'false'")
}

pub fn usage(detail: &str) -> String {
    format!(
        "{detail}. Usage: escadm op_mode show | op_mode set --mode=maintenance|operation [--ipt_check=true|false] | status [--v] | backup --file FILE | restore --file FILE | stop | restart | log collect"
    )
}

pub fn services_not_running() -> String {
    "ESC services are not running; run 'escadm restart' first".to_owned()
}

// ---- status --v (assumed shape) ----
/// `pgsql (pid 2101) is running` / `pgsql is stopped` (assumed).
pub fn service_line(name: &str, running: bool, pid: u32) -> String {
    if running {
        format!("{name} (pid {pid}) is running")
    } else {
        format!("{name} is stopped")
    }
}

/// `ESC version: 5.10.0.86` (assumed).
pub fn version_line(version: &str) -> String {
    format!("ESC version: {version}")
}

/// `ESC status=0 ESC Master Healthy` (assumed; the seed only says MASTER/BACKUP shows).
pub fn summary_healthy(role: Role) -> String {
    format!("ESC status=0 ESC {} Healthy", role.word())
}

/// `ESC status=1 ...` for a partly stopped node, `status=2` for a corrupted database (assumed).
pub fn summary_unhealthy(role: Role, detail: &str) -> String {
    let code = if detail.starts_with("database corrupted") {
        2
    } else {
        1
    };
    format!("ESC status={code} ESC {} Unhealthy: {detail}", role.word())
}

/// `ESC status=3 ESC Master Stopped`: all services stopped; the role is the last one (assumed).
pub fn summary_stopped(role: Role) -> String {
    format!("ESC status=3 ESC {} Stopped", role.word())
}

/// Detail of the corrupted summary (assumed).
pub fn corruption_detail(schema: &str, _db_version: &str, node_version: &str) -> String {
    format!("database corrupted (schema {schema} restored on ESC {node_version})")
}

// ---- backup (assumed) ----
pub fn backup_start(dest: &str) -> String {
    format!("Backing up ESC database to {dest}")
}

pub fn backup_done(dest: &str, bytes: u64) -> String {
    format!("Backup completed: {dest} ({bytes} bytes)")
}

pub fn backup_needs_maintenance(mode: Mode) -> String {
    format!(
        "ESC is in {mode} mode; set it to MAINTENANCE mode before a backup (escadm op_mode set --mode=maintenance)"
    )
}

pub fn backup_on_standby() -> String {
    "this node is the HA BACKUP; run the backup on the MASTER node".to_owned()
}

// ---- restore (assumed) ----
pub fn restore_start(src: &str) -> String {
    format!("Restoring ESC database from {src}")
}

pub const RESTORE_DONE: &str = "Restore completed. Run 'escadm restart' to complete the restore.";

pub fn restore_services_running(running: &[&str]) -> String {
    format!(
        "ESC services must be stopped before a restore (running: {}); run 'escadm stop'",
        running.join(", ")
    )
}

/// The password prompt when an scp URL carries none (seed: "manually enter it"), on stderr.
pub const PASSWORD_PROMPT: &str = "Password: ";

pub fn not_a_backup(src: &str, why: &str) -> String {
    format!("{src} is not an ESC database backup: {why}")
}

pub fn io_error(what: &str, path: &str, err: &str) -> String {
    format!("{what} {path}: {err}")
}

/// The message of the disk-full fault, as tar/bzip2 would put it.
pub fn disk_full(path: &str) -> String {
    format!("write {path}: No space left on device")
}

// ---- stop / restart (assumed) ----
pub const STOPPING: &str = "Stopping ESC services";
pub const STOPPED: &str = "ESC services stopped";
pub const RESTARTING: &str = "Restarting ESC services";
pub const STARTED: &str = "ESC services started";

// ---- log collect (seed says `/var/tmp/esc_log <timestamp>.tar.bz2`; dash and format assumed) ----
pub const COLLECTING_LOGS: &str = "Collecting ESC logs";

pub fn log_file_line(path: &str) -> String {
    format!("Log file: {path}")
}

/// `esc_log-20261128T083000Z.tar.bz2` (assumed).
pub fn log_file_name(timestamp: &str) -> String {
    format!("esc_log-{timestamp}.tar.bz2")
}

// ---- faults ----
/// The stderr line of an injected exit-code fault, unless the fault gives its own.
pub fn injected_failure(code: i32) -> String {
    format!("injected failure (exit {code})")
}

/// Default extra warning printed by the warnings fault: the kind ESC 5.6+ prints (assumed).
pub const DEFAULT_WARNING: &str =
    "WARNING: D-MONA is not reachable; monitoring may be degraded (see /var/log/esc/mona.log)";

// ---- northbound endpoint (seed: REST answers "unavailable temporarily"; body assumed) ----
pub const NB_UNAVAILABLE: &str = "ESC is unavailable temporarily: MAINTENANCE mode";
pub const NB_STOPPED: &str = "ESC is unavailable: services stopped";
