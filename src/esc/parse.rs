//! Pure, tolerant parsers of escadm's output (the shapes in `docs/escadm-formats.md` and the seed
//! manual), the typed results they produce, and [`ParseError`].
//!
//! Owns: what a line of escadm output means, and the safety predicates on it
//! ([`NodeStatus::all_services_stopped`], [`NodeStatus::is_healthy`]). Imports the leaves
//! [`crate::esc::text`] and [`crate::esc::vocab`], and [`crate::esc::version`]; never the
//! transport.
//!
//! Every parser takes the raw bytes and reads them through [`OutputText`], the one cleaning step
//! (ANSI codes, carriage returns, control bytes); errors quote the raw bytes.
//!
//! Tolerant means: the parsers look for the lines they know and ignore every other line (newer
//! ESC versions print warnings, e.g. about D-MONA, before the output). Output with none of the
//! expected lines is an error that quotes what came back. No input makes a parser panic (property
//! tests feed arbitrary bytes).
//!
//! Tolerance stops where safety starts: a predicate that lets the operator go ahead (services
//! stopped, node healthy, backup written, mode reached) needs positive evidence, and anything
//! unknown or contradicting counts against it.

use thiserror::Error;

use crate::esc::text::{OutputText, QUOTE_LIMIT, clip, quote_output};
use crate::esc::version::EscVersion;
// The words live in `vocab`; re-exported so that paths written as `esc::parse::OpMode` keep
// working.
pub use crate::esc::vocab::{EscadmFailure, HaRole, Health, OpMode, ServiceRunState, Sha256Digest};

/// escadm (or helper command) output that does not have the documented shape.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("unexpected output of `{command}`: expected {expected}; got {output}")]
pub struct ParseError {
    /// The command whose output this was (`escadm status --v`).
    pub command: &'static str,
    /// What the parser looked for.
    pub expected: &'static str,
    /// The raw output, quoted and truncated.
    pub output: String,
}

impl ParseError {
    fn new(command: &'static str, expected: &'static str, raw: &[u8]) -> Self {
        Self {
            command,
            expected,
            output: quote_output(raw),
        }
    }

    /// `raw`, the output of `command`, is not what was `expected`.
    pub fn unexpected(command: &'static str, expected: &'static str, raw: &[u8]) -> Self {
        Self::new(command, expected, raw)
    }

    /// A short, stable CamelCase reason: a Kubernetes condition reason and a metric label.
    pub fn reason(&self) -> &'static str {
        "UnrecognizedOutput"
    }
}

/// At most this many unrecognised lines of `status --v` are kept in [`NodeStatus::unrecognized`].
pub const MAX_UNRECOGNIZED_LINES: usize = 20;

/// One service line of `escadm status --v`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceState {
    /// The service name (`pgsql`, `keepalived`, `escmanager`, ...).
    pub name: String,
    /// Running or stopped.
    pub state: ServiceRunState,
}

/// The parsed output of `escadm status --v`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// The per-service lines, in output order.
    pub services: Vec<ServiceState>,
    /// The HA role (from the summary line; failing that, an upper-case `MASTER`/`BACKUP` word);
    /// [`HaRole::Unknown`] when the output names none or contradicting ones.
    pub role: HaRole,
    /// The health word of the summary line; [`Health::Unknown`] when there is none, it is not a
    /// known word, the summary holds words not known here, or summaries contradict each other.
    pub health: Health,
    /// The number after `ESC status=`.
    pub status_code: Option<i64>,
    /// The text after `Healthy`/`Unhealthy:` in the summary line.
    pub detail: Option<String>,
    /// Set when the detail says the database is corrupted (e.g. after a schema downgrade).
    pub corrupted: Option<String>,
    /// From the `ESC version: X` line; `None` when absent or when two lines disagree.
    pub esc_version: Option<EscVersion>,
    /// Lines not understood (at most [`MAX_UNRECOGNIZED_LINES`], each clipped): kept for
    /// diagnostics, never fatal.
    pub unrecognized: Vec<String>,
    /// How many of the lines not understood (all of them, not only those kept) speak of a
    /// service's state (`running`, `started`, `pid`, `up`, ...): a service whose line has a shape
    /// not known here. Any such line makes the safety predicates answer no.
    pub unrecognized_service_lines: usize,
}

impl NodeStatus {
    /// The precondition of `escadm restore`, answered only on positive evidence: a summary that
    /// says `Stopped`, at least one service line, every service line stopped, and no line not
    /// understood that speaks of a service. Anything else — an unknown health word, no service
    /// lines, a service line of an unknown shape — counts as not stopped.
    pub fn all_services_stopped(&self) -> bool {
        self.health == Health::Stopped
            && !self.services.is_empty()
            && self
                .services
                .iter()
                .all(|s| s.state == ServiceRunState::Stopped)
            && self.unrecognized_service_lines == 0
    }

    /// True only on positive evidence that the node is fine: a summary that says `Healthy`, at
    /// least one service line, every service line running, no line not understood that speaks of
    /// a service, and no sign of a corrupted database.
    pub fn is_healthy(&self) -> bool {
        self.health == Health::Healthy
            && !self.services.is_empty()
            && self
                .services
                .iter()
                .all(|s| matches!(s.state, ServiceRunState::Running { .. }))
            && self.unrecognized_service_lines == 0
            && self.corrupted.is_none()
    }

    /// The names of the services that run.
    pub fn running_services(&self) -> impl Iterator<Item = &str> {
        self.services
            .iter()
            .filter(|s| matches!(s.state, ServiceRunState::Running { .. }))
            .map(|s| s.name.as_str())
    }
}

/// The parsed output of `escadm backup --file PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupResult {
    /// The path escadm says it wrote.
    pub path: String,
    /// The size escadm printed, when it did.
    pub size_bytes: Option<u64>,
}

/// The parsed output of `escadm log collect`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogCollectResult {
    /// The log archive escadm wrote (`/var/tmp/esc_log-<timestamp>.tar.bz2`).
    pub path: String,
}

/// `esc_db/metadata.json` of a backup archive: where and from which ESC version it was taken.
/// Restore compares [`BackupMetadata::esc_version`] with the target node's version (ESC does
/// not support schema downgrade).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupMetadata {
    /// The ESC version of the node the backup was taken on.
    pub esc_version: EscVersion,
    /// The database schema version, when recorded.
    pub schema_version: Option<String>,
    /// The node it was taken on, when recorded.
    pub node: Option<String>,
    /// When it was taken (`yyyymmddThhmmssZ`), when recorded.
    pub created: Option<String>,
}

/// Parses `esc_db/metadata.json` (`{"esc_version": "...", "schema_version": "...", "node": "...",
/// "created": "..."}`); unknown fields are ignored, `esc_version` is required.
///
/// A JSON document, not command output: it is not cleaned (JSON strings cannot hold raw control
/// characters, and a version with an escaped one does not parse).
pub fn parse_backup_metadata(json: impl AsRef<[u8]>) -> Result<BackupMetadata, ParseError> {
    const CMD: &str = "esc_db/metadata.json";
    const EXPECTED: &str = "a JSON object with a string `esc_version` such as \"5.10.0.86\"";
    let raw = json.as_ref();
    let err = || ParseError::new(CMD, EXPECTED, raw);
    let value: serde_json::Value = serde_json::from_slice(raw).map_err(|_| err())?;
    let field = |name: &str| {
        value
            .get(name)
            .and_then(serde_json::Value::as_str)
            .map(|s| clip(s, 200))
    };
    let esc_version = field("esc_version")
        .and_then(|v| v.parse().ok())
        .ok_or_else(err)?;
    Ok(BackupMetadata {
        esc_version,
        schema_version: field("schema_version"),
        node: field("node"),
        created: field("created"),
    })
}

/// Strips `prefix` from the start of `line`, ASCII case-insensitively.
fn strip_prefix_ci<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    let head = line.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &line[prefix.len()..])
}

/// True when `line` is the sentence `phrase` (ASCII case-insensitive), ended by nothing or by a
/// full stop and more sentences — `Restore completed. Run 'escadm restart' ...` is, `Restore
/// completed with errors` and `Not all ESC services stopped` are not.
fn is_sentence(line: &str, phrase: &str) -> bool {
    strip_prefix_ci(line, phrase).is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// The text of an error line, `ERROR:` removed. The error may share its line with a password
/// prompt: escadm prompts for an scp password without a newline and, on end of input, prints its
/// error right after it (`Password: ERROR: no password given for admin@10.0.0.5`).
fn error_text(line: &str) -> Option<&str> {
    if let Some(rest) = strip_prefix_ci(line, "ERROR:") {
        return Some(rest);
    }
    // ASCII lower-casing keeps byte offsets, so `at` indexes `line` too.
    let lower = line.to_ascii_lowercase();
    let at = lower.find("error:")?;
    lower[..at]
        .trim_end()
        .ends_with("password:")
        .then(|| &line[at + "error:".len()..])
}

/// The first error line, if any: output claiming success next to one is not trusted.
fn error_line(text: &OutputText) -> Option<&str> {
    text.lines().find(|l| error_text(l).is_some())
}

/// A path escadm printed: absolute, and clean (no character the cleaning step had to replace,
/// which would name another file than the one on the node).
fn printed_path(p: &str) -> Option<&str> {
    let p = p.trim();
    (p.starts_with('/') && !p.contains(char::REPLACEMENT_CHARACTER)).then_some(p)
}

/// Parses `escadm op_mode show` and `op_mode set` output: the last `Operation Mode = X` line,
/// which must hold exactly one known mode word (an unknown word there is an error, not a reason
/// to believe an earlier line).
pub fn parse_op_mode(output: impl AsRef<[u8]>) -> Result<OpMode, ParseError> {
    const CMD: &str = "escadm op_mode";
    const EXPECTED: &str = "a last line `Operation Mode = OPERATION|MAINTENANCE`";
    let raw = output.as_ref();
    let text = OutputText::new(raw);
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once('=')?;
            key.trim()
                .eq_ignore_ascii_case("Operation Mode")
                .then_some(value)
        })
        .last()
        .and_then(|value| {
            let mut words = value.split_whitespace();
            match (words.next(), words.next()) {
                (Some(word), None) => OpMode::from_word(word),
                _ => None,
            }
        })
        .ok_or_else(|| ParseError::new(CMD, EXPECTED, raw))
}

fn parse_service_line(line: &str) -> Option<ServiceState> {
    let lower = line.to_ascii_lowercase();
    let state = if lower.ends_with(" is running") {
        ServiceRunState::Running { pid: None }
    } else if lower.ends_with(" is stopped")
        || lower.ends_with(" is not running")
        || lower.ends_with(" is dead")
    {
        ServiceRunState::Stopped
    } else {
        return None;
    };
    let mut tokens = line.split_whitespace();
    let name = tokens.next()?;
    let valid_name = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/'));
    if !valid_name || name.eq_ignore_ascii_case("ESC") {
        return None;
    }
    // Between the name and "is ...": nothing, or one "(pid N)" / "(pgid N)" group.
    let is_at = lower.rfind(" is ")?;
    if is_at < name.len() {
        return None;
    }
    let middle = line[name.len()..is_at].trim();
    let state = match (state, middle) {
        (s, "") => s,
        (ServiceRunState::Running { .. }, m) => {
            let inner = m.strip_prefix('(')?.strip_suffix(')')?;
            let mut it = inner.split_whitespace();
            let label = it.next()?;
            if !(label.eq_ignore_ascii_case("pid") || label.eq_ignore_ascii_case("pgid")) {
                return None;
            }
            let pid = it.next()?.parse().ok()?;
            if it.next().is_some() {
                return None;
            }
            ServiceRunState::Running { pid: Some(pid) }
        }
        (ServiceRunState::Stopped, _) => return None,
    };
    Some(ServiceState {
        name: name.to_owned(),
        state,
    })
}

/// Words that, in a line not understood, speak of a service's state.
const SERVICE_STATE_WORDS: &[&str] = &[
    "running",
    "runs",
    "run",
    "started",
    "starting",
    "restarting",
    "stopping",
    "active",
    "alive",
    "up",
    "pid",
    "pgid",
];

fn speaks_of_a_service(line: &str) -> bool {
    line.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| {
        SERVICE_STATE_WORDS
            .iter()
            .any(|s| w.eq_ignore_ascii_case(s))
    })
}

#[derive(Clone, PartialEq, Eq)]
struct Summary {
    code: Option<i64>,
    role: HaRole,
    health: Health,
    detail: Option<String>,
}

impl Summary {
    /// Two summary lines: whatever they disagree on is unknown.
    fn merge(self, other: Summary) -> Summary {
        Summary {
            code: if self.code == other.code {
                self.code
            } else {
                None
            },
            role: if self.role == other.role {
                self.role
            } else {
                HaRole::Unknown
            },
            health: if self.health == other.health {
                self.health
            } else {
                Health::Unknown
            },
            detail: other.detail.or(self.detail),
        }
    }
}

/// `ESC status=<code> ESC <Role> <Health>[: detail]`. Two role words or two health words that
/// differ make that part unknown; any other word makes the health unknown (it may qualify it).
fn parse_summary_line(line: &str) -> Option<Summary> {
    let rest = strip_prefix_ci(line, "ESC status=")?;
    let (code_text, rest) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let code = code_text.parse().ok();
    let (words, detail) = match rest.split_once(':') {
        Some((w, d)) => (w, Some(d.trim()).filter(|d| !d.is_empty())),
        None => (rest, None),
    };
    let mut roles = Vec::new();
    let mut healths = Vec::new();
    let mut unknown_word = false;
    for word in words.split_whitespace() {
        if let Some(r) = HaRole::from_word(word) {
            roles.push(r);
        } else if let Some(h) = Health::from_word(word) {
            healths.push(h);
        } else if !word.eq_ignore_ascii_case("ESC") {
            unknown_word = true;
        }
    }
    let role = match roles.as_slice() {
        [first, rest @ ..] if rest.iter().all(|r| r == first) => *first,
        _ => HaRole::Unknown,
    };
    let health = match healths.as_slice() {
        [first, rest @ ..] if !unknown_word && rest.iter().all(|h| h == first) => *first,
        _ => Health::Unknown,
    };
    Some(Summary {
        code,
        role,
        health,
        detail: detail.map(|d| clip(d, 300)),
    })
}

fn parse_version_line(line: &str) -> Option<Result<EscVersion, ()>> {
    let rest = strip_prefix_ci(line, "ESC version")?;
    let rest = rest.trim_start();
    let rest = rest
        .strip_prefix(':')
        .or_else(|| rest.strip_prefix('='))?
        .trim();
    let word = rest.split_whitespace().next().unwrap_or("");
    Some(word.parse().map_err(|_| ()))
}

/// Parses `escadm status --v`: service lines, the `ESC version:` line and the
/// `ESC status=<code> ESC <Role> <Health>[: detail]` summary. Unknown lines are kept in
/// [`NodeStatus::unrecognized`]; output with neither a service line nor a summary is an error.
pub fn parse_status(output: impl AsRef<[u8]>) -> Result<NodeStatus, ParseError> {
    const CMD: &str = "escadm status --v";
    const EXPECTED: &str = "service lines (`NAME is running|stopped`) and/or a summary `ESC status=N ESC <Role> <Health>`";
    let raw = output.as_ref();
    let text = OutputText::new(raw);
    let mut services = Vec::new();
    let mut summary: Option<Summary> = None;
    // `Some(Err(()))` once two version lines disagree.
    let mut esc_version: Option<Result<EscVersion, ()>> = None;
    let mut unrecognized = Vec::new();
    let mut unrecognized_service_lines = 0;
    let mut shouted_roles = Vec::new();
    for line in text.lines() {
        if let Some(s) = parse_summary_line(line) {
            summary = Some(match summary {
                Some(first) => first.merge(s),
                None => s,
            });
        } else if let Some(Ok(v)) = parse_version_line(line) {
            esc_version = match esc_version {
                Some(Ok(first)) if first != v => Some(Err(())),
                Some(seen) => Some(seen),
                None => Some(Ok(v)),
            };
        } else if let Some(svc) = parse_service_line(line) {
            services.push(svc);
        } else {
            // The seed's rule: "MASTER"/"BACKUP" in the output names the role.
            for word in line.split(|c: char| !c.is_ascii_alphanumeric()) {
                let role = match word {
                    "MASTER" => HaRole::Master,
                    "BACKUP" => HaRole::Backup,
                    _ => continue,
                };
                if !shouted_roles.contains(&role) {
                    shouted_roles.push(role);
                }
            }
            if speaks_of_a_service(line) {
                unrecognized_service_lines += 1;
            }
            if unrecognized.len() < MAX_UNRECOGNIZED_LINES {
                unrecognized.push(clip(line, 200));
            }
        }
    }
    if services.is_empty() && summary.is_none() {
        return Err(ParseError::new(CMD, EXPECTED, raw));
    }
    // Shouted words name the role only when they agree.
    let shouted_role = match shouted_roles.as_slice() {
        [one] => *one,
        _ => HaRole::Unknown,
    };
    let (code, role, health, detail) = match summary {
        Some(s) => (
            s.code,
            if s.role == HaRole::Unknown {
                shouted_role
            } else {
                s.role
            },
            s.health,
            s.detail,
        ),
        None => (None, shouted_role, Health::Unknown, None),
    };
    let corrupted = detail
        .as_ref()
        .filter(|d| d.to_ascii_lowercase().contains("corrupt"))
        .cloned();
    Ok(NodeStatus {
        services,
        role,
        health,
        status_code: code,
        detail,
        corrupted,
        esc_version: esc_version.and_then(Result::ok),
        unrecognized,
        unrecognized_service_lines,
    })
}

/// Parses `escadm backup --file PATH`: the `Backup completed: PATH [(N bytes)]` line. Two such
/// lines naming different files, a path that is not clean, or an `ERROR:` line are errors.
pub fn parse_backup(output: impl AsRef<[u8]>) -> Result<BackupResult, ParseError> {
    const CMD: &str = "escadm backup";
    const EXPECTED: &str = "one line `Backup completed: PATH (N bytes)` and no `ERROR:` line";
    let raw = output.as_ref();
    let text = OutputText::new(raw);
    let err = || ParseError::new(CMD, EXPECTED, raw);
    if error_line(&text).is_some() {
        return Err(err());
    }
    let mut found: Option<BackupResult> = None;
    for rest in text
        .lines()
        .filter_map(|l| strip_prefix_ci(l, "Backup completed:"))
    {
        let rest = rest.trim();
        let (path, size_bytes) = match rest
            .strip_suffix(" bytes)")
            .and_then(|r| r.rsplit_once(" ("))
        {
            Some((path, n)) => match n.trim().parse::<u64>() {
                Ok(n) => (path, Some(n)),
                Err(_) => (rest, None),
            },
            None => (rest, None),
        };
        let result = BackupResult {
            path: printed_path(path).ok_or_else(err)?.to_owned(),
            size_bytes,
        };
        match &found {
            Some(first) if first.path != result.path => return Err(err()),
            _ => found = Some(result),
        }
    }
    found.ok_or_else(err)
}

/// Requires a line that is the sentence `phrase` (see `is_sentence`), and no `ERROR:` line.
fn require_sentence(
    raw: &[u8],
    command: &'static str,
    expected: &'static str,
    phrases: &[&str],
) -> Result<(), ParseError> {
    let text = OutputText::new(raw);
    let said = text
        .lines()
        .any(|l| phrases.iter().any(|p| is_sentence(l, p)));
    if said && error_line(&text).is_none() {
        Ok(())
    } else {
        Err(ParseError::new(command, expected, raw))
    }
}

/// Parses `escadm restore --file PATH`: requires the sentence `Restore completed`.
pub fn parse_restore(output: impl AsRef<[u8]>) -> Result<(), ParseError> {
    require_sentence(
        output.as_ref(),
        "escadm restore",
        "a line `Restore completed.` and no `ERROR:` line",
        &["Restore completed"],
    )
}

/// Parses `escadm stop`: requires the line `ESC services stopped`.
pub fn parse_stop(output: impl AsRef<[u8]>) -> Result<(), ParseError> {
    require_sentence(
        output.as_ref(),
        "escadm stop",
        "a line `ESC services stopped` and no `ERROR:` line",
        &["ESC services stopped"],
    )
}

/// Parses `escadm restart`: requires the line `ESC services started` (or `restarted`).
pub fn parse_restart(output: impl AsRef<[u8]>) -> Result<(), ParseError> {
    require_sentence(
        output.as_ref(),
        "escadm restart",
        "a line `ESC services started` and no `ERROR:` line",
        &["ESC services started", "ESC services restarted"],
    )
}

/// Parses `escadm log collect`: the path on the `Log file: PATH` line; failing that, a
/// `/var/tmp/esc_log...tar.bz2` path anywhere in the output. Never guessed.
pub fn parse_log_collect(output: impl AsRef<[u8]>) -> Result<LogCollectResult, ParseError> {
    const CMD: &str = "escadm log collect";
    const EXPECTED: &str =
        "a line `Log file: /var/tmp/esc_log-<timestamp>.tar.bz2` and no `ERROR:` line";
    let raw = output.as_ref();
    let text = OutputText::new(raw);
    if error_line(&text).is_some() {
        return Err(ParseError::new(CMD, EXPECTED, raw));
    }
    let from_label = text
        .lines()
        .filter_map(|l| strip_prefix_ci(l, "Log file:"))
        .filter_map(printed_path)
        .last();
    let path = from_label.or_else(|| {
        text.lines()
            .filter_map(|l| {
                let start = l.find("/var/tmp/esc_log")?;
                let tail = &l[start..];
                let end = tail.find(".tar.bz2")? + ".tar.bz2".len();
                printed_path(&tail[..end])
            })
            .last()
    });
    match path {
        Some(p) => Ok(LogCollectResult { path: p.to_owned() }),
        None => Err(ParseError::new(CMD, EXPECTED, raw)),
    }
}

/// The state of a detached run (see [`crate::esc::detached`]), as its poll script reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Its directory holds no run: never started (or already cleaned up).
    Absent,
    /// Started and its process is alive.
    Running,
    /// Ended with this exit code.
    Exited(i32),
    /// Started, never wrote its exit code, and its process is gone (node rebooted, killed).
    Lost,
}

/// Parses the poll script's one word. Anything else is an error, never "exited 0": a run is
/// done only when it said so.
pub fn parse_run_state(output: impl AsRef<[u8]>) -> Result<RunState, ParseError> {
    const CMD: &str = "poll detached";
    const EXPECTED: &str = "one line: `absent`, `running`, `lost` or `exited <code>`";
    let raw = output.as_ref();
    let text = OutputText::new(raw);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let [line] = lines.as_slice() else {
        return Err(ParseError::new(CMD, EXPECTED, raw));
    };
    let state = match line.trim() {
        "absent" => RunState::Absent,
        "running" => RunState::Running,
        "lost" => RunState::Lost,
        other => match other.strip_prefix("exited ").map(str::trim) {
            Some(code) if !code.is_empty() && code.bytes().all(|b| b.is_ascii_digit()) => {
                match code.parse::<i32>() {
                    Ok(c) if c <= 255 => RunState::Exited(c),
                    _ => return Err(ParseError::new(CMD, EXPECTED, raw)),
                }
            }
            _ => return Err(ParseError::new(CMD, EXPECTED, raw)),
        },
    };
    Ok(state)
}

/// Parses `sha256sum FILE` (or `openssl dgst -sha256 -r FILE`, the same line with `*` before the
/// name): the digest at the start of the first line (a leading `\`, which sha256sum prints for
/// escaped file names, is accepted).
pub fn parse_sha256sum(output: impl AsRef<[u8]>) -> Result<Sha256Digest, ParseError> {
    let raw = output.as_ref();
    let text = OutputText::new(raw);
    let first = text.lines().next().unwrap_or("");
    let token = first.split_whitespace().next().unwrap_or("");
    let token = token.strip_prefix('\\').unwrap_or(token);
    token
        .parse()
        .map_err(|_| ParseError::new("sha256sum", "`<64 hex digits>  FILE`", raw))
}

/// The human message of a failed escadm: its first `ERROR: ` line (prefix and any password
/// prompt before it removed), otherwise the quoted stderr, otherwise the quoted stdout.
pub fn failure_message(stdout: impl AsRef<[u8]>, stderr: impl AsRef<[u8]>) -> String {
    let (stdout, stderr) = (stdout.as_ref(), stderr.as_ref());
    let (out_text, err_text) = (OutputText::new(stdout), OutputText::new(stderr));
    if let Some(msg) = err_text
        .lines()
        .chain(out_text.lines())
        .find_map(error_text)
    {
        // A cleaned line, not raw bytes: clipped without a byte count.
        return format!("{:?}", clip(msg.trim(), QUOTE_LIMIT));
    }
    if !err_text.as_str().is_empty() {
        quote_output(stderr.trim_ascii())
    } else {
        quote_output(stdout.trim_ascii())
    }
}

/// Classifies a failed escadm by exit code (the documented table) and, where the code does not
/// say (a real ESC may use other codes), by its message.
pub fn classify_failure(exit_code: Option<u32>, stderr: impl AsRef<[u8]>) -> EscadmFailure {
    let lower = OutputText::new(stderr.as_ref())
        .as_str()
        .to_ascii_lowercase();
    let in_flight = lower.contains("in-flight")
        || lower.contains("in flight")
        || lower.contains("ongoing transaction");
    let count = || {
        let idx = lower
            .find("in-flight")
            .or_else(|| lower.find("in flight"))?;
        lower[..idx].split_whitespace().last()?.parse().ok()
    };
    match exit_code {
        Some(3) => EscadmFailure::InFlightTransactions { count: count() },
        Some(4) => EscadmFailure::NotInMaintenance,
        Some(5) => EscadmFailure::WrongRole,
        Some(6) => EscadmFailure::ServicesRunning,
        Some(7) => EscadmFailure::ServicesNotRunning,
        Some(2) => EscadmFailure::Usage,
        Some(8) => EscadmFailure::Io,
        _ if in_flight => EscadmFailure::InFlightTransactions { count: count() },
        _ => EscadmFailure::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detached_run_is_done_only_when_it_says_exited() {
        assert_eq!(parse_run_state("absent\n").unwrap(), RunState::Absent);
        assert_eq!(parse_run_state("running\n").unwrap(), RunState::Running);
        assert_eq!(parse_run_state("lost\n").unwrap(), RunState::Lost);
        assert_eq!(parse_run_state("exited 0\n").unwrap(), RunState::Exited(0));
        assert_eq!(parse_run_state("exited 3").unwrap(), RunState::Exited(3));
        // Fail closed: nothing else counts, least of all as a success.
        for unknown in [
            "",
            "exited",
            "exited \n",
            "exited -1",
            "exited 0x0",
            "exited 256",
            "exited 0 but",
            "Exited 0",
            "done",
            "running\nexited 0",
            "sh: 1: cd: can't cd\nabsent",
            "\u{1b}[0mexited 0x",
        ] {
            let err = parse_run_state(unknown).unwrap_err();
            assert_eq!(err.reason(), "UnrecognizedOutput", "{unknown:?}");
        }
    }
    use proptest::prelude::*;

    const STATUS_MASTER: &str = "\
pgsql (pid 2101) is running
keepalived (pid 2102) is running
drbd (pid 2103) is running
confd (pid 2104) is running
mona (pid 2105) is running
vimmanager (pid 2106) is running
escmanager (pid 2107) is running
portal (pid 2108) is running
snmp (pid 2109) is running
ESC version: 5.10.0.86
ESC status=0 ESC Master Healthy
";

    #[test]
    fn op_mode_from_the_manual() {
        assert_eq!(
            parse_op_mode("Operation Mode = OPERATION\n").unwrap(),
            OpMode::Operation
        );
        assert_eq!(
            parse_op_mode("Set mode to MAINTENANCE\nOperation Mode = MAINTENANCE\n").unwrap(),
            OpMode::Maintenance
        );
        assert_eq!(
            parse_op_mode("Set mode to OPERATION\r\nOperation Mode = OPERATION\r\n").unwrap(),
            OpMode::Operation
        );
    }

    #[test]
    fn op_mode_ignores_warnings_of_newer_versions() {
        let out = "WARNING: D-MONA is not configured; Operation Mode = MAINTENANCE is not affected\n\
                   Warning: something else = 3\n  Operation Mode = OPERATION  \n";
        assert_eq!(parse_op_mode(out).unwrap(), OpMode::Operation);
    }

    #[test]
    fn op_mode_unknown_output_is_an_error_quoting_it() {
        let err = parse_op_mode("Operation Mode = HIBERNATE\n").unwrap_err();
        assert!(err.to_string().contains("HIBERNATE"), "{err}");
        assert!(err.to_string().contains("escadm op_mode"), "{err}");
        assert!(parse_op_mode("").is_err());
    }

    #[test]
    fn status_of_a_healthy_master() {
        let s = parse_status(STATUS_MASTER).unwrap();
        assert_eq!(s.role, HaRole::Master);
        assert_eq!(s.health, Health::Healthy);
        assert_eq!(s.status_code, Some(0));
        assert_eq!(s.services.len(), 9);
        assert_eq!(
            s.services[0],
            ServiceState {
                name: "pgsql".into(),
                state: ServiceRunState::Running { pid: Some(2101) }
            }
        );
        assert_eq!(s.esc_version, Some("5.10.0.86".parse().unwrap()));
        assert!(!s.all_services_stopped());
        assert!(s.unrecognized.is_empty());
        assert_eq!(s.corrupted, None);
    }

    #[test]
    fn status_of_a_stopped_backup_node() {
        let out = "pgsql is stopped\nkeepalived is stopped\nescmanager is not running\n\
                   ESC version: 5.9.1.20\nESC status=3 ESC Backup Stopped\n";
        let s = parse_status(out).unwrap();
        assert_eq!(s.role, HaRole::Backup);
        assert_eq!(s.health, Health::Stopped);
        assert!(s.all_services_stopped());
        assert_eq!(s.running_services().count(), 0);
    }

    #[test]
    fn status_with_one_stopped_service_is_not_all_stopped() {
        let out = "pgsql (pgid 12) is running\nescmanager is stopped\nESC status=2 ESC Standalone Unhealthy: escmanager down\n";
        let s = parse_status(out).unwrap();
        assert_eq!(s.role, HaRole::Standalone);
        assert_eq!(s.health, Health::Unhealthy);
        assert_eq!(s.detail.as_deref(), Some("escmanager down"));
        assert_eq!(s.running_services().collect::<Vec<_>>(), ["pgsql"]);
        assert!(!s.all_services_stopped());
    }

    #[test]
    fn status_of_a_partly_stopped_node() {
        let out = "pgsql (pid 1) is running\nescmanager is stopped\nESC version: 5.10.0.86\n\
                   ESC status=1 ESC Master Unhealthy: escmanager is stopped\n";
        let s = parse_status(out).unwrap();
        assert_eq!(
            (s.role, s.health, s.status_code),
            (HaRole::Master, Health::Unhealthy, Some(1))
        );
        assert_eq!(s.detail.as_deref(), Some("escmanager is stopped"));
        assert_eq!(s.services.len(), 2);
        assert!(!s.all_services_stopped());
        assert_eq!(s.corrupted, None);
    }

    #[test]
    fn status_reports_a_corrupted_database() {
        let out = "pgsql (pid 1) is running\nESC status=2 ESC Master Unhealthy: database corrupted (schema 5.10 restored on ESC 5.9.1.20)\n";
        let s = parse_status(out).unwrap();
        assert_eq!(
            s.corrupted.as_deref(),
            Some("database corrupted (schema 5.10 restored on ESC 5.9.1.20)")
        );
    }

    #[test]
    fn status_keeps_unknown_lines_and_uses_the_seeds_uppercase_role() {
        let out = "WARNING: D-MONA not reachable\nVRRP state: BACKUP\npgsql (pid 7) is running\n";
        let s = parse_status(out).unwrap();
        assert_eq!(s.role, HaRole::Backup);
        assert_eq!(s.health, Health::Unknown);
        assert_eq!(s.unrecognized.len(), 2);
    }

    #[test]
    fn status_without_anything_known_is_an_error() {
        let err = parse_status("bash: escadm: command not found\n").unwrap_err();
        assert!(err.to_string().contains("command not found"), "{err}");
    }

    #[test]
    fn status_bad_version_line_is_kept_not_fatal() {
        let s = parse_status("ESC version: unknown\nESC status=0 ESC Master Healthy\n").unwrap();
        assert_eq!(s.esc_version, None);
        assert_eq!(s.unrecognized, ["ESC version: unknown"]);
    }

    #[test]
    fn backup_output() {
        let out = "Backing up ESC database to /tmp/esc-db-x.tar.bz2\nBackup completed: /tmp/esc-db-x.tar.bz2 (48213 bytes)\n";
        assert_eq!(
            parse_backup(out).unwrap(),
            BackupResult {
                path: "/tmp/esc-db-x.tar.bz2".into(),
                size_bytes: Some(48213)
            }
        );
        assert_eq!(
            parse_backup("Backup completed: /tmp/a b.tar.bz2\n").unwrap(),
            BackupResult {
                path: "/tmp/a b.tar.bz2".into(),
                size_bytes: None
            }
        );
        assert!(parse_backup("Backing up ESC database to /tmp/x\n").is_err());
        assert!(parse_backup("Backup completed: relative.tar.bz2\n").is_err());
    }

    #[test]
    fn restore_stop_restart_outputs() {
        parse_restore("Restoring ESC database from /tmp/x\nRestore completed. Run 'escadm restart' to complete the restore.\n").unwrap();
        assert!(parse_restore("Restoring ESC database from /tmp/x\n").is_err());
        parse_stop("Stopping ESC services\nESC services stopped\n").unwrap();
        assert!(parse_stop("Stopping ESC services\n").is_err());
        parse_restart("Restarting ESC services\nESC services started\n").unwrap();
        assert!(parse_restart("Restarting ESC services\n").is_err());
    }

    #[test]
    fn log_collect_output() {
        let out = "Collecting ESC logs\nLog file: /var/tmp/esc_log-20261128T083000Z.tar.bz2\n";
        assert_eq!(
            parse_log_collect(out).unwrap().path,
            "/var/tmp/esc_log-20261128T083000Z.tar.bz2"
        );
        // The seed's wording, without a label.
        let seed = "A timestamped log file will be generated in: /var/tmp/esc_log-2026.tar.bz2\n";
        assert_eq!(
            parse_log_collect(seed).unwrap().path,
            "/var/tmp/esc_log-2026.tar.bz2"
        );
        assert!(parse_log_collect("Collecting ESC logs\n").is_err());
    }

    #[test]
    fn sha256sum_output() {
        let d = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            parse_sha256sum(format!("{d}  /tmp/x\n"))
                .unwrap()
                .to_string(),
            d
        );
        assert_eq!(
            parse_sha256sum(format!("\\{d}  /tmp/a\\nb\n"))
                .unwrap()
                .to_string(),
            d
        );
        // `openssl dgst -sha256 -r` (the node's faster hasher) marks the file with `*`.
        assert_eq!(
            parse_sha256sum(format!("{d} */tmp/x\n"))
                .unwrap()
                .to_string(),
            d
        );
        // openssl without `-r` prints `SHA2-256(FILE)= HEX`: not this format, refused.
        assert!(parse_sha256sum(format!("SHA2-256(/tmp/x)= {d}\n")).is_err());
        assert!(parse_sha256sum("sha256sum: /tmp/x: No such file or directory\n").is_err());
        assert!(parse_sha256sum(&d[1..]).is_err());
        // A NUL or colour code stuck to the digest is cleaned off, not taken into it.
        assert_eq!(
            parse_sha256sum(format!("\x1b[0m{d}\0").as_bytes())
                .unwrap()
                .to_string(),
            d
        );
    }

    #[test]
    fn failures_are_classified_by_code_then_text() {
        let ipt =
            "ERROR: 2 in-flight transaction(s) in progress; ESC not set to MAINTENANCE mode\n";
        assert_eq!(
            classify_failure(Some(3), ipt),
            EscadmFailure::InFlightTransactions { count: Some(2) }
        );
        assert_eq!(
            classify_failure(Some(1), ipt),
            EscadmFailure::InFlightTransactions { count: Some(2) }
        );
        assert_eq!(
            classify_failure(Some(6), ""),
            EscadmFailure::ServicesRunning
        );
        assert_eq!(
            classify_failure(Some(4), ""),
            EscadmFailure::NotInMaintenance
        );
        assert_eq!(classify_failure(Some(5), ""), EscadmFailure::WrongRole);
        assert_eq!(
            classify_failure(Some(7), ""),
            EscadmFailure::ServicesNotRunning
        );
        assert_eq!(classify_failure(Some(2), ""), EscadmFailure::Usage);
        assert_eq!(classify_failure(Some(8), ""), EscadmFailure::Io);
        assert_eq!(classify_failure(None, "boom"), EscadmFailure::Other);
        assert_eq!(
            failure_message("", "warning: x\nERROR: disk full\n"),
            "\"disk full\""
        );
        assert_eq!(failure_message("", "Traceback\n"), "\"Traceback\"");
    }

    #[test]
    fn an_error_after_a_password_prompt_is_the_error() {
        // The prompt has no newline: the error that follows shares its line
        // (docs/escadm-formats/backup--scp-no-password.txt).
        assert_eq!(
            failure_message(
                "",
                "Password: ERROR: no password given for admin@10.0.0.5\n"
            ),
            "\"no password given for admin@10.0.0.5\""
        );
        assert_eq!(
            failure_message("", "admin@10.0.0.5's password: error: Permission denied\n"),
            "\"Permission denied\""
        );
        // Not after a prompt: the line is not taken apart, the whole stderr is quoted.
        assert_eq!(
            failure_message("", "note: ERROR: x\n"),
            "\"note: ERROR: x\""
        );
        // Beside a success claim, such a line makes it untrusted, as a bare `ERROR:` line does.
        let prompt_error = "Password: ERROR: no password given for admin@10.0.0.5\n";
        assert!(parse_backup(format!("Backup completed: /tmp/a.tar.bz2\n{prompt_error}")).is_err());
        assert!(parse_restore(format!("Restore completed.\n{prompt_error}")).is_err());
        assert!(
            parse_log_collect(format!(
                "Log file: /var/tmp/esc_log-1.tar.bz2\n{prompt_error}"
            ))
            .is_err()
        );
    }

    #[test]
    fn backup_metadata() {
        let m = parse_backup_metadata(
            r#"{"esc_version": "5.10.0.86", "schema_version": "5.10", "node": "esc-a", "created": "20261128T083000Z", "future": 1}"#,
        )
        .unwrap();
        assert_eq!(m.esc_version, "5.10.0.86".parse().unwrap());
        assert_eq!(m.schema_version.as_deref(), Some("5.10"));
        assert_eq!(m.node.as_deref(), Some("esc-a"));
        assert!(m.esc_version > "5.9.1.20".parse().unwrap());
        let m = parse_backup_metadata(r#"{"esc_version": "4.4"}"#).unwrap();
        assert_eq!((m.schema_version, m.node, m.created), (None, None, None));
        for bad in [
            "",
            "[]",
            r#"{"esc_version": 5}"#,
            r#"{"esc_version": "x"}"#,
            "{",
        ] {
            let e = parse_backup_metadata(bad).unwrap_err();
            assert!(e.to_string().contains("metadata.json"), "{e}");
        }
    }

    #[test]
    fn all_stopped_is_false_for_an_unknown_health_word_without_services() {
        // Hostile output found in review: no service line, and a health word not known here.
        let s = parse_status("ESC status=0 ESC Master Running").unwrap();
        assert_eq!(s.health, Health::Unknown);
        assert!(!s.all_services_stopped());
        assert!(!s.is_healthy());
    }

    #[test]
    fn all_stopped_needs_service_lines_and_a_stopped_summary() {
        // A stopped summary alone: no evidence about any service.
        assert!(
            !parse_status("ESC status=3 ESC Master Stopped\n")
                .unwrap()
                .all_services_stopped()
        );
        // Stopped services but no summary: the summary might have said otherwise.
        assert!(
            !parse_status("pgsql is stopped\nescmanager is stopped\n")
                .unwrap()
                .all_services_stopped()
        );
        // Every service stopped, yet the summary says Unhealthy: contradicting, so no.
        assert!(
            !parse_status(
                "pgsql is stopped\nESC status=1 ESC Master Unhealthy: pgsql is stopped\n"
            )
            .unwrap()
            .all_services_stopped()
        );
    }

    #[test]
    fn all_stopped_is_false_next_to_a_service_line_of_unknown_shape() {
        let stopped = "pgsql is stopped\nescmanager is stopped\nESC status=3 ESC Backup Stopped\n";
        assert!(parse_status(stopped).unwrap().all_services_stopped());
        for extra in [
            "portal is starting",
            "mona (pid 12) is sleeping",
            "ESC is running",
            "confd: active",
            "vimmanager up 3 days",
        ] {
            let s = parse_status(format!("{extra}\n{stopped}")).unwrap();
            assert_eq!(s.unrecognized_service_lines, 1, "{extra}");
            assert!(!s.all_services_stopped(), "{extra}");
        }
        // A warning that says nothing of a service's state does not count.
        let s = parse_status(format!("WARNING: D-MONA is not reachable\n{stopped}")).unwrap();
        assert!(s.all_services_stopped(), "{s:?}");
    }

    #[test]
    fn the_unknown_line_count_is_not_capped_like_the_kept_lines() {
        let mut out = "x\n".repeat(MAX_UNRECOGNIZED_LINES + 5);
        out.push_str("portal is starting\npgsql is stopped\nESC status=3 ESC Master Stopped\n");
        let s = parse_status(out).unwrap();
        assert_eq!(s.unrecognized.len(), MAX_UNRECOGNIZED_LINES);
        assert_eq!(s.unrecognized_service_lines, 1);
        assert!(!s.all_services_stopped());
    }

    #[test]
    fn healthy_needs_positive_evidence() {
        assert!(parse_status(STATUS_MASTER).unwrap().is_healthy());
        for bad in [
            // A healthy summary but no service line.
            "ESC status=0 ESC Master Healthy\n",
            // A stopped service under a healthy summary.
            "pgsql (pid 1) is running\nportal is stopped\nESC status=0 ESC Master Healthy\n",
            // A service line of unknown shape.
            "pgsql (pid 1) is running\nportal is starting\nESC status=0 ESC Master Healthy\n",
            // An unknown word beside the health word.
            "pgsql (pid 1) is running\nESC status=0 ESC Master Degraded Healthy\n",
            // A corrupted database, whatever the word.
            "pgsql (pid 1) is running\nESC status=0 ESC Master Healthy: database corrupted\n",
            // Two summaries that disagree.
            "pgsql (pid 1) is running\nESC status=0 ESC Master Healthy\nESC status=3 ESC Master Stopped\n",
            // No summary.
            "pgsql (pid 1) is running\n",
        ] {
            let s = parse_status(bad).unwrap();
            assert!(!s.is_healthy(), "{bad:?} -> {s:?}");
        }
    }

    #[test]
    fn contradicting_roles_are_unknown() {
        let s = parse_status("pgsql is running\nESC status=0 ESC Master Backup Healthy\n").unwrap();
        assert_eq!(s.role, HaRole::Unknown);
        // A role word not known here: no role, and the health beside it is not trusted either.
        let s = parse_status("pgsql is running\nESC status=0 ESC Leader Healthy\n").unwrap();
        assert_eq!((s.role, s.health), (HaRole::Unknown, Health::Unknown));
        // Shouted words in other lines disagree: unknown, not the last one seen.
        let s = parse_status("VRRP state: MASTER\npeer: BACKUP\npgsql is running\n").unwrap();
        assert_eq!(s.role, HaRole::Unknown);
        // They agree: the seed's rule holds.
        let s = parse_status("VRRP state: BACKUP\nstill BACKUP\npgsql is running\n").unwrap();
        assert_eq!(s.role, HaRole::Backup);
        // The summary's own word wins over shouting elsewhere.
        let s = parse_status("cannot reach MASTER\nESC status=0 ESC Backup Healthy\n").unwrap();
        assert_eq!(s.role, HaRole::Backup);
        // Two summaries with different roles.
        let s = parse_status("ESC status=0 ESC Master Healthy\nESC status=0 ESC Backup Healthy\n")
            .unwrap();
        assert_eq!((s.role, s.health), (HaRole::Unknown, Health::Healthy));
    }

    #[test]
    fn contradicting_version_lines_give_no_version() {
        let s = parse_status("ESC version: 5.10.0.86\nESC version: 5.9.1.20\npgsql is running\n")
            .unwrap();
        assert_eq!(s.esc_version, None);
        let s =
            parse_status("ESC version: 5.10.0.86\nESC version: 5.10.0.86.0\npgsql is running\n")
                .unwrap();
        assert_eq!(s.esc_version, Some("5.10.0.86".parse().unwrap()));
    }

    #[test]
    fn control_bytes_and_colour_codes_do_not_reach_parsed_values() {
        // A NUL stuck to the summary's end no longer turns the health Unknown.
        let s =
            parse_status(b"pgsql (pid 1) is running\nESC status=0 ESC Master Healthy\0").unwrap();
        assert_eq!(s.health, Health::Healthy);
        let s = parse_status(
            b"\x1b[32mpgsql is stopped\x1b[0m\r\n\x1b[1mESC status=3 ESC Master Stopped\x1b[0m\r\n",
        )
        .unwrap();
        assert!(s.all_services_stopped(), "{s:?}");
        // A NUL stuck to the backup path's end no longer ends up in the path.
        assert_eq!(
            parse_backup(b"Backup completed: /tmp/esc-db.tar.bz2\0")
                .unwrap()
                .path,
            "/tmp/esc-db.tar.bz2"
        );
        assert_eq!(
            parse_log_collect(b"Log file: /var/tmp/esc_log-1.tar.bz2\x07\x00")
                .unwrap()
                .path,
            "/var/tmp/esc_log-1.tar.bz2"
        );
        assert_eq!(
            parse_op_mode(b"\x1b[1mOperation Mode = MAINTENANCE\x1b[0m\0").unwrap(),
            OpMode::Maintenance
        );
        // Inside a path, a control byte would name another file: refused, not removed.
        assert!(parse_backup(b"Backup completed: /tmp/a\0b.tar.bz2").is_err());
        assert!(parse_backup(b"Backup completed: /tmp/\xffx.tar.bz2").is_err());
        assert!(parse_log_collect(b"Log file: /var/tmp/esc_log\x01.tar.bz2").is_err());
    }

    #[test]
    fn op_mode_trusts_only_a_clean_last_mode_line() {
        // The last mode line holds an unknown word: not a reason to believe the earlier one.
        assert!(
            parse_op_mode("Operation Mode = MAINTENANCE\nOperation Mode = HIBERNATE\n").is_err()
        );
        assert!(parse_op_mode("Operation Mode = MAINTENANCE pending\n").is_err());
        assert!(parse_op_mode("Operation Mode =\n").is_err());
        assert!(parse_op_mode("Operation Mode = MAINTENANCE\u{fffd}\n").is_err());
    }

    #[test]
    fn done_claims_need_the_exact_sentence_and_no_error_line() {
        assert!(parse_restore("Restore completed with errors\n").is_err());
        assert!(parse_restore("Restore completed.\nERROR: schema check failed\n").is_err());
        parse_restore("Restore completed\n").unwrap();
        assert!(parse_stop("Not all ESC services stopped\n").is_err());
        assert!(parse_stop("ESC services stopped, except pgsql\n").is_err());
        assert!(parse_stop("ESC services stopped\nERROR: pgsql did not stop\n").is_err());
        parse_stop("esc services stopped.\n").unwrap();
        assert!(parse_restart("Some ESC services started\n").is_err());
        parse_restart("ESC services restarted\n").unwrap();
        assert!(
            parse_backup("Backup completed: /tmp/a.tar.bz2 (1 bytes)\nBackup completed: /tmp/b.tar.bz2 (1 bytes)\n")
                .is_err()
        );
        assert!(parse_backup("Backup completed: /tmp/a.tar.bz2\nERROR: write /tmp/a.tar.bz2: No space left on device\n").is_err());
        assert!(
            parse_log_collect("Log file: /var/tmp/esc_log-1.tar.bz2\nERROR: incomplete\n").is_err()
        );
    }

    #[test]
    fn parse_errors_quote_raw_bytes_and_count_them_raw() {
        let mut raw = vec![0xffu8; QUOTE_LIMIT + 50];
        raw.extend_from_slice(b"\n");
        let err = parse_status(&raw).unwrap_err();
        assert!(err.output.ends_with("(+51 more bytes)"), "{}", err.output);
        assert_eq!(err.reason(), "UnrecognizedOutput");
    }

    fn noise() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec("[ -~]{0,60}", 0..4)
    }

    /// What a terminal or a hostile node sticks around a line: colour codes, carriage returns,
    /// control bytes (NUL, BEL, DEL, ...), a byte-order mark. Never a bare ESC, which would take
    /// the next character with it.
    fn junk() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                "[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1a\\x1c-\\x1f\\x7f]",
                Just("\r".to_owned()),
                Just(" ".to_owned()),
                Just("\u{feff}".to_owned()),
                Just("\x1b[0m".to_owned()),
                Just("\x1b[1;32m".to_owned()),
                Just("\x1b]0;title\x07".to_owned()),
                Just("\x1b(B".to_owned()),
            ],
            0..4,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        #[test]
        fn parsers_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let s = &bytes;
            let _ = parse_op_mode(s);
            let _ = parse_status(s);
            let _ = parse_backup(s);
            let _ = parse_restore(s);
            let _ = parse_stop(s);
            let _ = parse_restart(s);
            let _ = parse_log_collect(s);
            let _ = parse_sha256sum(s);
            let _ = parse_backup_metadata(s);
            let _ = classify_failure(Some(3), s);
            let _ = failure_message(s, s);
        }

        #[test]
        fn parsers_never_panic_on_near_miss_lines(lines in proptest::collection::vec(
            prop_oneof![
                "Operation Mode ?=? ?[A-Za-z]{0,12}",
                "ESC status=[-0-9]{0,3} ?ESC ?[A-Za-z]{0,10} ?[A-Za-z]{0,10}:?.{0,10}",
                "ESC version[:=]? ?[0-9.v]{0,12}",
                "[a-z]{0,8} ?\\((pid|pgid)? ?[0-9]{0,12}\\)? ?is (running|stopped|not running)",
                "Backup completed:.{0,20}( \\([0-9]{0,25} bytes\\))?",
                "Log file:.{0,30}",
                ".{0,40}/var/tmp/esc_log.{0,10}(\\.tar\\.bz2)?",
            ], 0..8)) {
            let s = lines.join("\n");
            let _ = parse_op_mode(&s);
            let _ = parse_status(&s);
            let _ = parse_backup(&s);
            let _ = parse_log_collect(&s);
        }

        #[test]
        fn op_mode_is_found_among_noise(before in noise(), after in noise(), maint in any::<bool>()) {
            let mode = if maint { OpMode::Maintenance } else { OpMode::Operation };
            let after: Vec<String> = after.into_iter().filter(|l| !l.to_ascii_lowercase().contains("operation mode")).collect();
            let out = format!("{}\nOperation Mode = {mode}\n{}\n", before.join("\n"), after.join("\n"));
            prop_assert_eq!(parse_op_mode(&out).unwrap(), mode);
        }

        #[test]
        fn status_round_trips_generated_output(
            svcs in proptest::collection::vec(("[a-z][a-z_]{1,10}".prop_filter("not ESC", |n| n != "esc"), proptest::option::of(1u32..100000)), 0..10),
            role in prop_oneof![Just(HaRole::Master), Just(HaRole::Backup), Just(HaRole::Standalone)],
            version in proptest::collection::vec(0u64..200, 1..5),
            warn in noise(),
            junk in proptest::collection::vec((junk(), junk()), 16),
        ) {
            let mut lines: Vec<String> = warn.into_iter().map(|w| format!("WARNING: {w}")).collect();
            for (name, pid) in &svcs {
                match pid {
                    Some(p) => lines.push(format!("{name} (pid {p}) is running")),
                    None => lines.push(format!("{name} is stopped")),
                }
            }
            let v = version.iter().map(u64::to_string).collect::<Vec<_>>().join(".");
            let role_word = match role { HaRole::Master => "Master", HaRole::Backup => "Backup", _ => "Standalone" };
            lines.push(format!("ESC version: {v}"));
            lines.push(format!("ESC status=0 ESC {role_word} Healthy"));
            // Colour codes, carriage returns and control bytes around every line change nothing.
            let out: String = lines
                .iter()
                .zip(junk.iter().cycle())
                .map(|(l, (pre, post))| format!("{pre}{l}{post}\n"))
                .collect();
            let s = parse_status(&out).unwrap();
            prop_assert_eq!(s.role, role);
            prop_assert_eq!(s.health, Health::Healthy);
            prop_assert_eq!(s.services.len(), svcs.len());
            for (parsed, (name, pid)) in s.services.iter().zip(&svcs) {
                prop_assert_eq!(&parsed.name, name);
                match pid {
                    Some(p) => prop_assert_eq!(parsed.state, ServiceRunState::Running { pid: Some(*p) }),
                    None => prop_assert_eq!(parsed.state, ServiceRunState::Stopped),
                }
            }
            prop_assert_eq!(s.esc_version.unwrap(), v.parse::<EscVersion>().unwrap());
        }

        #[test]
        fn backup_round_trips(path in "/[a-zA-Z0-9_./ -]{1,40}", size in any::<u64>(), pre in junk(), post in junk()) {
            let path = path.trim().to_string();
            let out = format!("Backing up ESC database to {path}\n{pre}Backup completed: {path} ({size} bytes){post}\n");
            let r = parse_backup(&out).unwrap();
            prop_assert_eq!(&r.path, &path);
            prop_assert_eq!(r.size_bytes, Some(size));
            // Without the size, junk at the end must not become part of the path.
            let out = format!("Backup completed: {path}{post}");
            prop_assert_eq!(parse_backup(&out).unwrap().path, path);
        }

        #[test]
        fn all_stopped_needs_every_piece_of_evidence(
            names in proptest::collection::btree_set("[a-z][a-z_]{1,10}".prop_filter("not ESC", |n| n != "esc"), 1..8),
            warn in noise(),
            junk in proptest::collection::vec((junk(), junk()), 16),
            breakage in 0usize..7,
            word in "[A-Za-z]{1,10}".prop_filter("not a health word", |w| Health::from_word(w).is_none() && !w.eq_ignore_ascii_case("esc") && HaRole::from_word(w).is_none()),
        ) {
            let names: Vec<String> = names.into_iter().collect();
            let warn: Vec<String> = warn.into_iter().map(|w| format!("WARNING: {w}")).filter(|w| !speaks_of_a_service(w)).collect();
            let build = |lines: &[String]| -> String {
                lines.iter().zip(junk.iter().cycle()).map(|(l, (pre, post))| format!("{pre}{l}{post}\n")).collect()
            };
            let mut lines = warn.clone();
            lines.extend(names.iter().map(|n| format!("{n} is stopped")));
            lines.push("ESC version: 5.10.0.86".into());
            lines.push("ESC status=3 ESC Master Stopped".into());
            let whole = parse_status(build(&lines)).unwrap();
            prop_assert!(whole.all_services_stopped(), "{:?}", whole);
            prop_assert!(!whole.is_healthy());

            // Take away or contradict one piece of the evidence: the answer must turn to no.
            let summary = lines.len() - 1;
            let first_service = warn.len();
            match breakage {
                0 => lines[first_service] = format!("{} (pid 42) is running", names[0]),
                1 => { lines.remove(summary); }
                2 => lines[summary] = format!("ESC status=3 ESC Master {word}"),
                3 => lines[summary] = format!("ESC status=3 ESC Master {word} Stopped"),
                4 => lines.retain(|l| !l.ends_with(" is stopped")),
                5 => lines.insert(first_service, format!("{} (pid 42) is starting", names[0])),
                _ => lines.push("ESC status=0 ESC Master Healthy".into()),
            }
            if let Ok(broken) = parse_status(build(&lines)) {
                prop_assert!(!broken.all_services_stopped(), "breakage {}: {:?}", breakage, broken);
            }
        }
    }
}
