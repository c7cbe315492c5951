//! Golden transcripts, the operator's side: every `docs/escadm-formats/<command>--<case>.txt`
//! (written by the ESC simulator, format in `docs/escadm-formats/README.md`) is read by the pure
//! parsers of `esc_operator::esc::parse` into the typed value this file's table expects of it.
//! A plain `cargo test --test escadm_golden`: no sshd, no root, no network.
//!
//! The simulator's test (`esc-sim/tests/golden.rs`) writes the files and fails when its output
//! changes; this one fails when the parsers read them differently from what they plainly mean,
//! when a transcript has no expectation here (a new simulator case forces one), and when an
//! expectation names a transcript that is gone. The expected values are written from the
//! transcripts' text and `docs/escadm-formats.md`, not copied from the parsers' answers.
//!
//! A transcript that exits 0 is parsed from its stdout by its command's parser, as the driver
//! does; one that exits non-zero is classified from its exit code and stderr
//! ([`classify_failure`], [`failure_message`]), and no parser may read its stdout as a success.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use esc_operator::esc::parse::{
    BackupResult, LogCollectResult, NodeStatus, ServiceState, classify_failure, failure_message,
    parse_backup, parse_log_collect, parse_op_mode, parse_restart, parse_restore, parse_status,
    parse_stop,
};
use esc_operator::esc::{EscadmFailure, HaRole, Health, OpMode, ServiceRunState};

/// Where the transcripts live, relative to the crate root.
const FOLDER: &str = "docs/escadm-formats";

// ---------------------------------------------------------------------------------------------
// Reading transcripts (format version 1)
// ---------------------------------------------------------------------------------------------

/// The command a transcript is named after: the part of its file name before `--`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Command {
    OpModeShow,
    OpModeSet,
    Status,
    Backup,
    Restore,
    Stop,
    Restart,
    LogCollect,
    /// A command line escadm rejects (exit 2), whatever its command.
    Usage,
}

impl Command {
    /// The file-name word and the arguments the command line starts with (`usage` names no
    /// command: any argument list).
    const ALL: [(&'static str, Command, &'static [&'static str]); 9] = [
        ("op_mode-show", Command::OpModeShow, &["op_mode", "show"]),
        ("op_mode-set", Command::OpModeSet, &["op_mode", "set"]),
        ("status", Command::Status, &["status"]),
        ("backup", Command::Backup, &["backup"]),
        ("restore", Command::Restore, &["restore"]),
        ("stop", Command::Stop, &["stop"]),
        ("restart", Command::Restart, &["restart"]),
        ("log-collect", Command::LogCollect, &["log", "collect"]),
        ("usage", Command::Usage, &[]),
    ];

    fn from_word(word: &str) -> Option<(Command, &'static [&'static str])> {
        Self::ALL
            .iter()
            .find(|(w, _, _)| *w == word)
            .map(|(_, c, args)| (*c, *args))
    }
}

/// One transcript file.
#[derive(Debug)]
struct Transcript {
    /// `<command>--<case>`: the file name without `.txt`.
    name: String,
    command: Command,
    /// escadm's arguments (`$ escadm op_mode show` → `["op_mode", "show"]`).
    args: Vec<String>,
    exit: u32,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Checks a file name (`<command>--<case>.txt`, `<case>` kebab-case) and gives the command.
fn command_of(name: &str) -> Result<(Command, &'static [&'static str]), String> {
    let (word, case) = name
        .split_once("--")
        .ok_or_else(|| format!("{name}: not named `<command>--<case>`"))?;
    let kebab = !case.is_empty()
        && !case.starts_with('-')
        && !case.ends_with('-')
        && !case.contains("--")
        && case
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !kebab {
        return Err(format!("{name}: case `{case}` is not kebab-case"));
    }
    Command::from_word(word).ok_or_else(|| format!("{name}: `{word}` is not an escadm command"))
}

/// One section's lines as the bytes they stand for: each line ends with `\n`, except a last one
/// followed by the marker `--- no final newline`.
fn section_bytes(section: &str, lines: &[&str]) -> Result<Vec<u8>, String> {
    const NO_NEWLINE: &str = "--- no final newline";
    let (lines, final_newline) = match lines.split_last() {
        Some((&NO_NEWLINE, [])) => {
            return Err(format!("`{NO_NEWLINE}` ends {section} but follows no line"));
        }
        Some((&NO_NEWLINE, rest)) => (rest, false),
        _ => (lines, true),
    };
    if let Some(l) = lines.iter().find(|l| l.starts_with("--- ")) {
        return Err(format!("{section} holds a marker line `{l}`"));
    }
    let mut bytes = lines.join("\n").into_bytes();
    if final_newline && !lines.is_empty() {
        bytes.push(b'\n');
    }
    Ok(bytes)
}

/// Reads one transcript; any line out of place is an error naming it.
fn read_transcript(name: &str, text: &str) -> Result<Transcript, String> {
    let fail = |why: String| format!("{name}.txt: {why}");
    let (command, prefix) = command_of(name)?;
    let body = text
        .strip_suffix('\n')
        .ok_or_else(|| fail("does not end with a newline".into()))?;
    let mut lines = body.split('\n');
    let mut next = |what: &str| {
        lines
            .next()
            .ok_or_else(|| fail(format!("ends before {what}")))
    };
    let header = |line: &str, key: &str| -> Result<String, String> {
        line.strip_prefix(key)
            .map(str::to_owned)
            .ok_or_else(|| fail(format!("expected `{key}...`, got `{line}`")))
    };
    let version = next("the version line")?;
    if version != "# escadm transcript v1" {
        return Err(fail(format!("not a v1 transcript: `{version}`")));
    }
    let case = header(next("the case line")?, "# case: ")?;
    if case.trim().is_empty() {
        return Err(fail("empty case description".into()));
    }
    let source = header(next("the source line")?, "# source: ")?;
    if !matches!(source.as_str(), "seed" | "assumed") {
        return Err(fail(format!("source `{source}` is not seed|assumed")));
    }
    let topology = header(next("the topology line")?, "# topology: ")?;
    if !matches!(topology.as_str(), "standalone" | "ha") {
        return Err(fail(format!("topology `{topology}` is not standalone|ha")));
    }
    let command_line = next("the command line")?;
    let args: Vec<String> = match command_line {
        "$ escadm" => Vec::new(),
        l => header(l, "$ escadm ")?
            .split(' ')
            .map(str::to_owned)
            .collect(),
    };
    if args.iter().any(String::is_empty) {
        return Err(fail(format!("empty argument in `{command_line}`")));
    }
    if !args
        .iter()
        .map(String::as_str)
        .take(prefix.len())
        .eq(prefix.iter().copied())
    {
        return Err(fail(format!(
            "named `{}` but runs `{command_line}`",
            name.split("--").next().unwrap_or_default()
        )));
    }
    let exit = header(next("the exit line")?, "exit: ")?;
    let exit: u32 = exit
        .parse()
        .map_err(|_| fail(format!("exit `{exit}` is not a number")))?;
    if next("`--- stdout`")? != "--- stdout" {
        return Err(fail("expected `--- stdout` after the exit line".into()));
    }
    let rest: Vec<&str> = lines.collect();
    let stderr_at = rest
        .iter()
        .position(|l| *l == "--- stderr")
        .ok_or_else(|| fail("no `--- stderr`".into()))?;
    let (stdout, after) = rest.split_at(stderr_at);
    let (end, stderr) = after[1..]
        .split_last()
        .ok_or_else(|| fail("no `--- end`".into()))?;
    if *end != "--- end" {
        return Err(fail(format!("the last line is `{end}`, not `--- end`")));
    }
    Ok(Transcript {
        name: name.to_owned(),
        command,
        args,
        exit,
        stdout: section_bytes("stdout", stdout).map_err(fail)?,
        stderr: section_bytes("stderr", stderr).map_err(fail)?,
    })
}

/// Every `.txt` file of the folder, read; panics listing every malformed one, or when there is
/// none (an empty folder would make every other test here pass on nothing).
fn transcripts() -> Vec<Transcript> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(FOLDER);
    let mut found = Vec::new();
    let mut problems = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            problems.push(format!("{}: not a UTF-8 name", path.display()));
            continue;
        };
        let Some(stem) = name.strip_suffix(".txt") else {
            continue;
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => match read_transcript(stem, &text) {
                Ok(t) => found.push(t),
                Err(e) => problems.push(e),
            },
            Err(e) => problems.push(format!("{name}: {e}")),
        }
    }
    assert!(
        problems.is_empty(),
        "malformed transcripts:\n{}",
        problems.join("\n")
    );
    assert!(!found.is_empty(), "no transcript in {}", dir.display());
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

// ---------------------------------------------------------------------------------------------
// What each transcript means
// ---------------------------------------------------------------------------------------------

/// What a transcript must parse into.
#[derive(Debug)]
enum Expect {
    /// `op_mode show|set`: the mode the last `Operation Mode = X` line reports.
    OpMode(OpMode),
    /// `status [--v]`: every field of it, and what the safety predicates answer on it.
    Status {
        status: Box<NodeStatus>,
        /// [`NodeStatus::all_services_stopped`]: restore may go ahead.
        all_stopped: bool,
        /// [`NodeStatus::is_healthy`].
        healthy: bool,
    },
    /// `backup`: the file escadm says it wrote, and its size.
    Backup(BackupResult),
    /// `log collect`: the archive's path as printed.
    LogFile(&'static str),
    /// `restore`, `stop`, `restart`: the sentence saying it is done.
    Done,
    /// A non-zero exit: how the driver classifies it, and the message it shows.
    Failure {
        kind: EscadmFailure,
        message: String,
    },
}

/// A `status` expectation, written out field by field.
struct Status {
    role: HaRole,
    health: Health,
    code: i64,
    services: Vec<ServiceState>,
    version: &'static str,
    /// The text after `Unhealthy:`.
    detail: Option<&'static str>,
    corrupted: bool,
    /// Lines the parser keeps as not understood (warnings).
    ignored: &'static [&'static str],
    all_stopped: bool,
    healthy: bool,
}

/// The services of each simulated node, in `status --v` order, with the pids they run with.
const STANDALONE: &[(&str, u32)] = &[
    ("pgsql", 2116),
    ("confd", 2117),
    ("mona", 2118),
    ("vimmanager", 2119),
    ("escmanager", 2120),
    ("portal", 2121),
    ("snmp", 2122),
];
/// The HA MASTER `esc-a`.
const ESC_A: &[(&str, u32)] = &[
    ("pgsql", 2116),
    ("keepalived", 2117),
    ("drbd", 2118),
    ("confd", 2119),
    ("mona", 2120),
    ("vimmanager", 2121),
    ("escmanager", 2122),
    ("portal", 2123),
    ("snmp", 2124),
];
/// The HA BACKUP `esc-b`.
const ESC_B: &[(&str, u32)] = &[
    ("pgsql", 3116),
    ("keepalived", 3117),
    ("drbd", 3118),
    ("confd", 3119),
    ("mona", 3120),
    ("vimmanager", 3121),
    ("escmanager", 3122),
    ("portal", 3123),
    ("snmp", 3124),
];

/// `node`'s services, those named in `stopped` stopped and the others running with their pid.
fn services(node: &[(&str, u32)], stopped: &[&str]) -> Vec<ServiceState> {
    for s in stopped {
        assert!(node.iter().any(|(n, _)| n == s), "{s} is no service here");
    }
    node.iter()
        .map(|&(name, pid)| ServiceState {
            name: name.to_owned(),
            state: if stopped.contains(&name) {
                ServiceRunState::Stopped
            } else {
                ServiceRunState::Running { pid: Some(pid) }
            },
        })
        .collect()
}

/// `node`'s services, every one stopped.
fn all_stopped(node: &[(&str, u32)]) -> Vec<ServiceState> {
    let names: Vec<&str> = node.iter().map(|(n, _)| *n).collect();
    services(node, &names)
}

/// The status a node reports, and what the safety predicates must answer on it.
fn status(s: Status) -> Expect {
    let node = NodeStatus {
        services: s.services,
        role: s.role,
        health: s.health,
        status_code: Some(s.code),
        detail: s.detail.map(str::to_owned),
        corrupted: if s.corrupted {
            s.detail.map(str::to_owned)
        } else {
            None
        },
        esc_version: Some(s.version.parse().expect("a version")),
        unrecognized: s.ignored.iter().map(|l| l.to_string()).collect(),
        unrecognized_service_lines: 0,
    };
    Expect::Status {
        status: Box::new(node),
        all_stopped: s.all_stopped,
        healthy: s.healthy,
    }
}

fn failure(kind: EscadmFailure, message: impl Into<String>) -> Expect {
    Expect::Failure {
        kind,
        message: message.into(),
    }
}

fn backup(path: &str, size_bytes: u64) -> Expect {
    Expect::Backup(BackupResult {
        path: path.to_owned(),
        size_bytes: Some(size_bytes),
    })
}

/// escadm's usage summary, which follows most usage errors.
const USAGE: &str = " Usage: escadm op_mode show | op_mode set --mode=maintenance|operation [--ipt_check=true|false] | status [--v] | backup --file FILE | restore --file FILE | stop | restart | log collect";

/// The warning line of the simulator's warnings fault (ESC 5.6+ prints such lines first).
const WARNING: &str =
    "WARNING: D-MONA is not reachable; monitoring may be degraded (see /var/log/esc/mona.log)";

const VERSION: &str = "5.10.0.86";
const CORRUPTED: &str = "database corrupted (schema 5.11 restored on ESC 5.10.0.86)";

/// Every transcript's expected value, by file name without `.txt`.
fn table() -> Vec<(&'static str, Expect)> {
    use EscadmFailure::*;
    use HaRole::{Backup, Master, Standalone};
    use Health::{Healthy, Stopped, Unhealthy};
    vec![
        // --- op_mode show
        ("op_mode-show--operation", Expect::OpMode(OpMode::Operation)),
        (
            "op_mode-show--maintenance",
            Expect::OpMode(OpMode::Maintenance),
        ),
        (
            "op_mode-show--ha-backup-replicated-mode",
            Expect::OpMode(OpMode::Maintenance),
        ),
        (
            "op_mode-show--services-stopped",
            Expect::OpMode(OpMode::Operation),
        ),
        ("op_mode-show--warnings", Expect::OpMode(OpMode::Operation)),
        // --- op_mode set
        (
            "op_mode-set--maintenance",
            Expect::OpMode(OpMode::Maintenance),
        ),
        (
            "op_mode-set--maintenance-already-set",
            Expect::OpMode(OpMode::Maintenance),
        ),
        (
            "op_mode-set--maintenance-ipt-check",
            Expect::OpMode(OpMode::Maintenance),
        ),
        (
            "op_mode-set--maintenance-in-flight-without-ipt-check",
            Expect::OpMode(OpMode::Maintenance),
        ),
        (
            "op_mode-set--maintenance-warnings",
            Expect::OpMode(OpMode::Maintenance),
        ),
        (
            "op_mode-set--ha-maintenance-on-master",
            Expect::OpMode(OpMode::Maintenance),
        ),
        ("op_mode-set--operation", Expect::OpMode(OpMode::Operation)),
        (
            "op_mode-set--maintenance-refused-in-flight",
            failure(
                InFlightTransactions { count: Some(2) },
                "2 in-flight transaction(s) in progress; ESC not set to MAINTENANCE mode",
            ),
        ),
        (
            "op_mode-set--ha-maintenance-refused-in-flight-on-peer",
            failure(
                InFlightTransactions { count: Some(1) },
                "1 in-flight transaction(s) in progress; ESC not set to MAINTENANCE mode",
            ),
        ),
        (
            "op_mode-set--refused-services-stopped",
            failure(
                ServicesNotRunning,
                "ESC services are not running; run 'escadm restart' first",
            ),
        ),
        // --- status
        (
            "status--standalone-healthy",
            status(Status {
                role: Standalone,
                health: Healthy,
                code: 0,
                services: services(STANDALONE, &[]),
                version: VERSION,
                detail: None,
                corrupted: false,
                ignored: &[],
                all_stopped: false,
                healthy: true,
            }),
        ),
        (
            "status--without-v",
            status(Status {
                role: Standalone,
                health: Healthy,
                code: 0,
                services: services(STANDALONE, &[]),
                version: VERSION,
                detail: None,
                corrupted: false,
                ignored: &[],
                all_stopped: false,
                healthy: true,
            }),
        ),
        (
            "status--warnings",
            status(Status {
                role: Standalone,
                health: Healthy,
                code: 0,
                services: services(STANDALONE, &[]),
                version: VERSION,
                detail: None,
                corrupted: false,
                ignored: &[WARNING],
                all_stopped: false,
                healthy: true,
            }),
        ),
        (
            "status--standalone-partial-stop",
            status(Status {
                role: Standalone,
                health: Unhealthy,
                code: 1,
                services: services(STANDALONE, &["mona", "escmanager"]),
                version: VERSION,
                detail: Some("mona is stopped"),
                corrupted: false,
                ignored: &[],
                all_stopped: false,
                healthy: false,
            }),
        ),
        (
            "status--standalone-stopped",
            status(Status {
                role: Standalone,
                health: Stopped,
                code: 3,
                services: all_stopped(STANDALONE),
                version: VERSION,
                detail: None,
                corrupted: false,
                ignored: &[],
                all_stopped: true,
                healthy: false,
            }),
        ),
        (
            "status--standalone-database-corrupted",
            status(Status {
                role: Standalone,
                health: Unhealthy,
                code: 2,
                services: services(STANDALONE, &[]),
                version: VERSION,
                detail: Some(CORRUPTED),
                corrupted: true,
                ignored: &[],
                all_stopped: false,
                healthy: false,
            }),
        ),
        (
            "status--ha-master-healthy",
            status(Status {
                role: Master,
                health: Healthy,
                code: 0,
                services: services(ESC_A, &[]),
                version: VERSION,
                detail: None,
                corrupted: false,
                ignored: &[],
                all_stopped: false,
                healthy: true,
            }),
        ),
        (
            "status--ha-master-partial-stop",
            status(Status {
                role: Master,
                health: Unhealthy,
                code: 1,
                services: services(ESC_A, &["escmanager"]),
                version: VERSION,
                detail: Some("escmanager is stopped"),
                corrupted: false,
                ignored: &[],
                all_stopped: false,
                healthy: false,
            }),
        ),
        (
            "status--ha-master-stopped",
            status(Status {
                role: Master,
                health: Stopped,
                code: 3,
                services: all_stopped(ESC_A),
                version: VERSION,
                detail: None,
                corrupted: false,
                ignored: &[],
                all_stopped: true,
                healthy: false,
            }),
        ),
        (
            "status--ha-master-database-corrupted",
            status(Status {
                role: Master,
                health: Unhealthy,
                code: 2,
                services: services(ESC_A, &[]),
                version: VERSION,
                detail: Some(CORRUPTED),
                corrupted: true,
                ignored: &[],
                all_stopped: false,
                healthy: false,
            }),
        ),
        (
            // esc-b (its pids) after the failover: it reports itself MASTER.
            "status--ha-master-after-failover",
            status(Status {
                role: Master,
                health: Healthy,
                code: 0,
                services: services(ESC_B, &[]),
                version: VERSION,
                detail: None,
                corrupted: false,
                ignored: &[],
                all_stopped: false,
                healthy: true,
            }),
        ),
        (
            "status--ha-backup-healthy",
            status(Status {
                role: Backup,
                health: Healthy,
                code: 0,
                services: services(ESC_B, &[]),
                version: VERSION,
                detail: None,
                corrupted: false,
                ignored: &[],
                all_stopped: false,
                healthy: true,
            }),
        ),
        (
            "status--ha-backup-partial-stop",
            status(Status {
                role: Backup,
                health: Unhealthy,
                code: 1,
                services: services(ESC_B, &["keepalived"]),
                version: VERSION,
                detail: Some("keepalived is stopped"),
                corrupted: false,
                ignored: &[],
                all_stopped: false,
                healthy: false,
            }),
        ),
        (
            "status--ha-backup-stopped",
            status(Status {
                role: Backup,
                health: Stopped,
                code: 3,
                services: all_stopped(ESC_B),
                version: VERSION,
                detail: None,
                corrupted: false,
                ignored: &[],
                all_stopped: true,
                healthy: false,
            }),
        ),
        (
            "status--ha-backup-database-corrupted",
            status(Status {
                role: Backup,
                health: Unhealthy,
                code: 2,
                services: services(ESC_B, &[]),
                version: VERSION,
                detail: Some(CORRUPTED),
                corrupted: true,
                ignored: &[],
                all_stopped: false,
                healthy: false,
            }),
        ),
        // --- backup
        (
            "backup--standalone",
            backup("/tmp/esc-sim/nodes/esc/data/esc-db.tar.bz2", 287),
        ),
        (
            "backup--ha-master",
            backup("/tmp/esc-sim/nodes/esc-a/data/esc-db.tar.bz2", 289),
        ),
        (
            // The path escadm printed (absolute), not the relative argument.
            "backup--relative-file",
            backup("/tmp/esc-sim/nodes/esc/data/esc-db.tar.bz2", 287),
        ),
        (
            "backup--refused-operation-mode",
            failure(
                NotInMaintenance,
                "ESC is in OPERATION mode; set it to MAINTENANCE mode before a backup (escadm op_mode set --mode=maintenance)",
            ),
        ),
        (
            "backup--refused-services-stopped",
            failure(
                ServicesNotRunning,
                "ESC services are not running; run 'escadm restart' first",
            ),
        ),
        (
            "backup--ha-refused-on-backup-node",
            failure(
                WrongRole,
                "this node is the HA BACKUP; run the backup on the MASTER node",
            ),
        ),
        (
            "backup--cannot-write",
            failure(
                Io,
                "cannot write /tmp/esc-sim/nodes/esc/data/missing/esc-db.tar.bz2: No such file or directory (os error 2)",
            ),
        ),
        (
            "backup--disk-full",
            failure(
                Io,
                "write /tmp/esc-sim/nodes/esc/data/esc-db.tar.bz2: No space left on device",
            ),
        ),
        (
            // The error follows the password prompt on its line: the message is the error's.
            "backup--scp-no-password",
            failure(Io, "no password given for admin@10.0.0.5"),
        ),
        // --- restore
        ("restore--standalone", Expect::Done),
        ("restore--ha-master", Expect::Done),
        // Accepted: the downgrade shows in `status --v` afterwards, not here.
        ("restore--newer-esc-version", Expect::Done),
        (
            "restore--refused-services-running",
            failure(
                ServicesRunning,
                "ESC services must be stopped before a restore (running: pgsql, confd, mona, vimmanager, escmanager, portal, snmp); run 'escadm stop'",
            ),
        ),
        (
            "restore--missing-file",
            failure(
                Io,
                "cannot read /tmp/esc-sim/nodes/esc/data/no-such.tar.bz2: No such file or directory",
            ),
        ),
        (
            "restore--not-a-backup",
            failure(
                Io,
                "/tmp/esc-sim/nodes/esc/data/other.tar.bz2 is not an ESC database backup: esc_db/metadata.json: No such file or directory (os error 2)",
            ),
        ),
        (
            "restore--scp-no-password",
            failure(Io, "no password given for admin@10.0.0.5"),
        ),
        // --- stop, restart
        ("stop--standalone", Expect::Done),
        ("stop--already-stopped", Expect::Done),
        ("stop--ha-master-fails-over", Expect::Done),
        ("restart--standalone", Expect::Done),
        ("restart--from-stopped", Expect::Done),
        ("restart--ha-backup", Expect::Done),
        // --- log collect
        (
            "log-collect--standalone",
            Expect::LogFile("/tmp/esc-sim/nodes/esc/fs/var/tmp/esc_log-20261128T083000Z.tar.bz2"),
        ),
        (
            "log-collect--services-stopped",
            Expect::LogFile("/tmp/esc-sim/nodes/esc/fs/var/tmp/esc_log-20261128T083000Z.tar.bz2"),
        ),
        (
            "log-collect--disk-full",
            failure(
                Io,
                "write /tmp/esc-sim/nodes/esc/fs/var/tmp/esc_log-20261128T083000Z.tar.bz2: No space left on device",
            ),
        ),
        // --- usage errors
        (
            "usage--no-command",
            failure(Usage, format!("no command given.{USAGE}")),
        ),
        (
            "usage--unknown-command",
            failure(Usage, format!("unknown command 'frobnicate'.{USAGE}")),
        ),
        (
            "usage--unknown-option",
            failure(Usage, format!("unknown option '--verbose'.{USAGE}")),
        ),
        (
            "usage--unexpected-argument",
            failure(Usage, format!("unexpected argument 'v'.{USAGE}")),
        ),
        (
            "usage--option-needs-value",
            failure(Usage, format!("option '--file' needs a value.{USAGE}")),
        ),
        (
            "usage--backup-without-file",
            failure(Usage, format!("backup needs --file.{USAGE}")),
        ),
        (
            "usage--backup-bad-scp-destination",
            failure(
                Usage,
                format!(
                    "bad scp destination 'scp://admin:***@10.0.0.5': expected scp://<username>:<password>@<host>:<file>.{USAGE}"
                ),
            ),
        ),
        (
            "usage--op-mode-without-subcommand",
            failure(Usage, format!("op_mode needs 'show' or 'set'.{USAGE}")),
        ),
        (
            "usage--op-mode-set-without-mode",
            failure(Usage, format!("op_mode set needs --mode.{USAGE}")),
        ),
        (
            "usage--bad-mode-manual-typo",
            failure(
                Usage,
                "invalid mode 'maintenace': expected 'maintenance' or 'operation'",
            ),
        ),
        (
            "usage--bad-mode-upper-case",
            failure(
                Usage,
                "invalid mode 'MAINTENANCE': expected 'maintenance' or 'operation'",
            ),
        ),
        (
            "usage--bad-ipt-check",
            failure(
                Usage,
                "invalid value 'yes' for --ipt_check: expected 'true' or 'false'",
            ),
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Checking
// ---------------------------------------------------------------------------------------------

/// What is wrong between the transcripts present and the table: an expectation named twice, a
/// transcript with no expectation, an expectation with no transcript.
fn coverage_problems<'a>(
    present: &BTreeSet<&'a str>,
    expected: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut named = BTreeSet::new();
    for name in expected {
        if !named.insert(name) {
            problems.push(format!("{name}: expected twice"));
        }
    }
    for name in present.difference(&named) {
        problems.push(format!("{name}.txt: no expectation (add one to the table)"));
    }
    for name in named.difference(present) {
        problems.push(format!("{name}: expected, but there is no {name}.txt"));
    }
    problems
}

/// True when no parser reads `stdout` as a success.
fn no_parser_accepts(stdout: &[u8]) -> Result<(), String> {
    let accepted: Vec<&str> = [
        ("op_mode", parse_op_mode(stdout).is_ok()),
        ("status", parse_status(stdout).is_ok()),
        ("backup", parse_backup(stdout).is_ok()),
        ("restore", parse_restore(stdout).is_ok()),
        ("stop", parse_stop(stdout).is_ok()),
        ("restart", parse_restart(stdout).is_ok()),
        ("log collect", parse_log_collect(stdout).is_ok()),
    ]
    .into_iter()
    .filter_map(|(name, ok)| ok.then_some(name))
    .collect();
    if accepted.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the stdout of a failed command reads as a success of {accepted:?}"
        ))
    }
}

/// Checks one transcript against its expectation, the way the driver reads it.
fn check(t: &Transcript, expect: &Expect) -> Result<(), String> {
    fn same<T: PartialEq + std::fmt::Debug, E: std::fmt::Display>(
        got: Result<T, E>,
        want: &T,
    ) -> Result<(), String> {
        match got {
            Ok(got) if &got == want => Ok(()),
            Ok(got) => Err(format!("parsed {got:?}, expected {want:?}")),
            Err(e) => Err(format!("not parsed ({e}), expected {want:?}")),
        }
    }
    let out = t.stdout.as_slice();
    match (t.exit, t.command, expect) {
        (0, Command::OpModeShow | Command::OpModeSet, Expect::OpMode(mode)) => {
            same(parse_op_mode(out), mode)
        }
        // The safety predicates on it: `safety_predicates_hold_for_every_status_transcript`.
        (0, Command::Status, Expect::Status { status, .. }) => {
            same(parse_status(out), status.as_ref())
        }
        (0, Command::Backup, Expect::Backup(want)) => same(parse_backup(out), want),
        (0, Command::LogCollect, Expect::LogFile(path)) => same(
            parse_log_collect(out),
            &LogCollectResult {
                path: (*path).to_owned(),
            },
        ),
        (0, Command::Restore, Expect::Done) => same(parse_restore(out), &()),
        (0, Command::Stop, Expect::Done) => same(parse_stop(out), &()),
        (0, Command::Restart, Expect::Done) => same(parse_restart(out), &()),
        (exit, Command::Usage, Expect::Failure { .. }) if exit != 2 => {
            Err(format!("a usage error exits 2, this one {exit}"))
        }
        (exit @ 1.., _, Expect::Failure { kind, message }) => {
            let got = classify_failure(Some(exit), &t.stderr);
            if got != *kind {
                return Err(format!("classified as {got:?}, expected {kind:?}"));
            }
            let shown = failure_message(&t.stdout, &t.stderr);
            let want = format!("{message:?}");
            if shown != want {
                return Err(format!("message {shown}, expected {want}"));
            }
            no_parser_accepts(out)
        }
        (exit, command, expect) => Err(format!(
            "exit {exit} of {command:?} cannot give {expect:?}: the expectation is of the wrong kind"
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn every_transcript_has_an_expectation_and_every_expectation_a_transcript() {
    let all = transcripts();
    let present: BTreeSet<&str> = all.iter().map(|t| t.name.as_str()).collect();
    let table = table();
    let problems = coverage_problems(&present, table.iter().map(|(n, _)| *n));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_transcript_parses_into_its_expected_value() {
    let all = transcripts();
    let table: BTreeMap<&str, Expect> = table().into_iter().collect();
    let mut problems = Vec::new();
    let mut checked = 0;
    for t in &all {
        // A missing expectation is the coverage test's to report.
        let Some(expect) = table.get(t.name.as_str()) else {
            continue;
        };
        match check(t, expect) {
            Ok(()) => checked += 1,
            Err(e) => problems.push(format!(
                "{}.txt (`escadm {}`): {e}",
                t.name,
                t.args.join(" ")
            )),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked > 0, "no transcript checked");
}

/// The predicates the operator acts on (restore needs every service stopped; "healthy" ends a
/// wait) are asserted for every status transcript, and each answers both yes and no somewhere:
/// a predicate that always said the same would pass a table that never tested it.
#[test]
fn safety_predicates_hold_for_every_status_transcript() {
    let all = transcripts();
    let table: BTreeMap<&str, Expect> = table().into_iter().collect();
    let mut answers = BTreeSet::new();
    let mut problems = Vec::new();
    for t in all.iter().filter(|t| t.command == Command::Status) {
        let Some(Expect::Status {
            all_stopped,
            healthy: want_healthy,
            ..
        }) = table.get(t.name.as_str())
        else {
            problems.push(format!("{}: no status expectation", t.name));
            continue;
        };
        let got = match parse_status(&t.stdout) {
            Ok(s) => s,
            Err(e) => {
                problems.push(format!("{}: {e}", t.name));
                continue;
            }
        };
        let (stopped, healthy) = (got.all_services_stopped(), got.is_healthy());
        if (stopped, healthy) != (*all_stopped, *want_healthy) {
            problems.push(format!(
                "{}: all_services_stopped={stopped} is_healthy={healthy}, expected {all_stopped} and {want_healthy}",
                t.name
            ));
        }
        // What the summary line says in words must agree with the predicates.
        if stopped && (got.health != Health::Stopped || got.status_code != Some(3)) {
            problems.push(format!(
                "{}: all stopped, but the summary says otherwise",
                t.name
            ));
        }
        if healthy && (got.health != Health::Healthy || got.status_code != Some(0)) {
            problems.push(format!(
                "{}: healthy, but the summary says otherwise",
                t.name
            ));
        }
        if stopped && healthy {
            problems.push(format!("{}: both stopped and healthy", t.name));
        }
        answers.insert(("stopped", stopped));
        answers.insert(("healthy", healthy));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    for answer in [
        ("stopped", true),
        ("stopped", false),
        ("healthy", true),
        ("healthy", false),
    ] {
        assert!(
            answers.contains(&answer),
            "no status transcript gives {answer:?}"
        );
    }
}

// The checks above must be able to fail: the reader and the coverage rule on made-up input.

const GOOD: &str = "\
# escadm transcript v1
# case: a case
# source: seed
# topology: standalone
$ escadm op_mode show
exit: 0
--- stdout
Operation Mode = OPERATION
--- stderr
--- end
";

#[test]
fn the_reader_reads_a_transcript_byte_for_byte() {
    let t = read_transcript("op_mode-show--a-case", GOOD).unwrap();
    assert_eq!(t.command, Command::OpModeShow);
    assert_eq!(t.args, ["op_mode", "show"]);
    assert_eq!(t.exit, 0);
    assert_eq!(t.stdout, b"Operation Mode = OPERATION\n");
    assert_eq!(t.stderr, b"");

    let prompt = GOOD
        .replace(
            "--- stderr\n",
            "--- stderr\nPassword: \n--- no final newline\n",
        )
        .replace("$ escadm op_mode show", "$ escadm");
    let t = read_transcript("usage--prompt", &prompt).unwrap();
    assert!(t.args.is_empty());
    assert_eq!(t.stderr, b"Password: ");
}

#[test]
fn the_reader_rejects_malformed_transcripts() {
    let name = "op_mode-show--a-case";
    for (why, text) in [
        ("no final newline", GOOD.trim_end().to_owned()),
        ("other version", GOOD.replace("v1", "v2")),
        ("empty case", GOOD.replace("# case: a case", "# case: ")),
        ("bad source", GOOD.replace("seed", "guess")),
        ("bad topology", GOOD.replace("standalone", "cluster")),
        (
            "no command line",
            GOOD.replace("$ escadm op_mode show\n", ""),
        ),
        ("other command", GOOD.replace("op_mode show", "status --v")),
        (
            "double space",
            GOOD.replace("op_mode show", "op_mode  show"),
        ),
        ("bad exit", GOOD.replace("exit: 0", "exit: zero")),
        ("no stdout marker", GOOD.replace("--- stdout\n", "")),
        ("no stderr marker", GOOD.replace("--- stderr\n", "")),
        ("no end", GOOD.replace("--- end\n", "")),
        ("text after the end", format!("{GOOD}more\n")),
        (
            "stray marker",
            GOOD.replace("--- stderr\n", "--- stderr\n--- what\n"),
        ),
        (
            "lone no-newline marker",
            GOOD.replace("--- stderr\n", "--- stderr\n--- no final newline\n"),
        ),
    ] {
        assert!(read_transcript(name, &text).is_err(), "{why}: accepted");
    }
    assert!(command_of("status--a-b-2").is_ok());
    for bad_name in [
        "op_mode-show",
        "frobnicate--x",
        "status--Upper",
        "status--a--b",
        "status--",
        "status---a",
    ] {
        assert!(command_of(bad_name).is_err(), "{bad_name}: accepted");
    }
}

#[test]
fn coverage_names_every_missing_and_stale_expectation() {
    let present = BTreeSet::from(["status--a", "status--b"]);
    assert!(coverage_problems(&present, ["status--a", "status--b"]).is_empty());
    let problems = coverage_problems(&present, ["status--a", "status--c", "status--a"]);
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(
        problems
            .iter()
            .any(|p| p.contains("status--a: expected twice"))
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("status--b.txt: no expectation"))
    );
    assert!(problems.iter().any(|p| p.contains("no status--c.txt")));
}

#[test]
fn a_wrong_expectation_fails_the_check() {
    let t = read_transcript("op_mode-show--a-case", GOOD).unwrap();
    check(&t, &Expect::OpMode(OpMode::Operation)).unwrap();
    assert!(check(&t, &Expect::OpMode(OpMode::Maintenance)).is_err());
    assert!(check(&t, &Expect::Done).is_err());
    assert!(check(&t, &failure(EscadmFailure::Other, "x")).is_err());
}
