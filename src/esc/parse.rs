//! Pure, tolerant parsers of escadm's output (the shapes in `docs/escadm-formats.md` and the seed
//! manual), and the typed results they produce.
//!
//! Tolerant means: the parsers look for the lines they know and ignore every other line (newer
//! ESC versions print warnings, e.g. about D-MONA, before the output). Output with none of the
//! expected lines is an error that quotes what came back. No input makes a parser panic (property
//! tests feed arbitrary bytes).

use std::fmt;
use std::str::FromStr;

use crate::esc::error::{ParseError, clip, quote_output};
use crate::esc::version::EscVersion;

/// At most this many unrecognised lines of `status --v` are kept in [`NodeStatus::unrecognized`].
pub const MAX_UNRECOGNIZED_LINES: usize = 20;

/// ESC's operation mode (`escadm op_mode show`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpMode {
    /// Normal operation: northbound requests and monitoring active.
    Operation,
    /// Maintenance: northbound requests blocked, monitoring paused; required for backup.
    Maintenance,
}

impl OpMode {
    /// The value of `--mode=` (`operation`, `maintenance` — never the seed's typo `maintenace`).
    pub fn as_arg(self) -> &'static str {
        match self {
            OpMode::Operation => "operation",
            OpMode::Maintenance => "maintenance",
        }
    }

    fn from_word(word: &str) -> Option<Self> {
        if word.eq_ignore_ascii_case("OPERATION") {
            Some(OpMode::Operation)
        } else if word.eq_ignore_ascii_case("MAINTENANCE") {
            Some(OpMode::Maintenance)
        } else {
            None
        }
    }
}

impl fmt::Display for OpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OpMode::Operation => "OPERATION",
            OpMode::Maintenance => "MAINTENANCE",
        })
    }
}

/// A node's HA role, as `escadm status --v` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HaRole {
    /// HA active node (the seed's "MASTER").
    Master,
    /// HA standby node (the seed's "BACKUP").
    Backup,
    /// A single, non-HA node.
    Standalone,
    /// The output named no role.
    Unknown,
}

impl HaRole {
    fn from_word(word: &str) -> Option<Self> {
        if word.eq_ignore_ascii_case("master") {
            Some(HaRole::Master)
        } else if word.eq_ignore_ascii_case("backup") {
            Some(HaRole::Backup)
        } else if word.eq_ignore_ascii_case("standalone") {
            Some(HaRole::Standalone)
        } else {
            None
        }
    }
}

impl fmt::Display for HaRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HaRole::Master => "MASTER",
            HaRole::Backup => "BACKUP",
            HaRole::Standalone => "STANDALONE",
            HaRole::Unknown => "UNKNOWN",
        })
    }
}

/// The health word of the status summary line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Health {
    /// `Healthy`.
    Healthy,
    /// `Unhealthy` (see [`NodeStatus::detail`]).
    Unhealthy,
    /// `Stopped`: all services are down.
    Stopped,
    /// No summary line, or a health word not known here.
    Unknown,
}

/// Whether one ESC service runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceRunState {
    /// `is running`, with the pid when printed.
    Running { pid: Option<u32> },
    /// `is stopped`, `is not running`, `is dead`.
    Stopped,
}

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
    /// The HA role (from the summary line; failing that, an upper-case `MASTER`/`BACKUP` word).
    pub role: HaRole,
    /// The health word of the summary line.
    pub health: Health,
    /// The number after `ESC status=`.
    pub status_code: Option<i64>,
    /// The text after `Healthy`/`Unhealthy:` in the summary line.
    pub detail: Option<String>,
    /// Set when the detail says the database is corrupted (e.g. after a schema downgrade).
    pub corrupted: Option<String>,
    /// From the `ESC version: X` line.
    pub esc_version: Option<EscVersion>,
    /// Lines not understood (at most [`MAX_UNRECOGNIZED_LINES`], each clipped): kept for
    /// diagnostics, never fatal.
    pub unrecognized: Vec<String>,
}

impl NodeStatus {
    /// True when the output lists no running service and does not claim to be healthy — the
    /// precondition of `escadm restore`.
    pub fn all_services_stopped(&self) -> bool {
        self.running_services().next().is_none()
            && !matches!(self.health, Health::Healthy | Health::Unhealthy)
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

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest(pub [u8; 32]);

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({self})")
    }
}

impl FromStr for Sha256Digest {
    type Err = ParseError;

    /// 64 hex digits, either case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        if s.len() != 64 || hex::decode_to_slice(s, &mut out).is_err() {
            return Err(ParseError::new("sha256", "64 hexadecimal digits", s));
        }
        Ok(Sha256Digest(out))
    }
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
pub fn parse_backup_metadata(json: &str) -> Result<BackupMetadata, ParseError> {
    const CMD: &str = "esc_db/metadata.json";
    const EXPECTED: &str = "a JSON object with a string `esc_version` such as \"5.10.0.86\"";
    let err = || ParseError::new(CMD, EXPECTED, json);
    let value: serde_json::Value = serde_json::from_str(json).map_err(|_| err())?;
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

/// Why escadm refused or failed, from its exit code (per the documented table) and its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EscadmFailure {
    /// `--ipt_check=true` and transactions are in flight (exit 3).
    InFlightTransactions {
        /// The count, when printed.
        count: Option<u32>,
    },
    /// The operation needs MAINTENANCE mode (exit 4).
    NotInMaintenance,
    /// Not allowed on this node's HA role, e.g. backup on the standby (exit 5).
    WrongRole,
    /// Services still run; restore needs them stopped (exit 6).
    ServicesRunning,
    /// Services do not run; e.g. `op_mode set` on a stopped node (exit 7).
    ServicesNotRunning,
    /// Usage error: unknown option or value (exit 2).
    Usage,
    /// I/O error on the node: file missing, disk full (exit 8).
    Io,
    /// Anything else (exit 1 or unknown).
    Other,
}

impl fmt::Display for EscadmFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EscadmFailure::InFlightTransactions { count: Some(n) } => {
                write!(f, "{n} in-flight transaction(s) present")
            }
            EscadmFailure::InFlightTransactions { count: None } => {
                f.write_str("in-flight transactions present")
            }
            EscadmFailure::NotInMaintenance => f.write_str("ESC is not in MAINTENANCE mode"),
            EscadmFailure::WrongRole => f.write_str("not allowed on this node's HA role"),
            EscadmFailure::ServicesRunning => f.write_str("ESC services are still running"),
            EscadmFailure::ServicesNotRunning => f.write_str("ESC services are not running"),
            EscadmFailure::Usage => f.write_str("usage error"),
            EscadmFailure::Io => f.write_str("I/O error on the node"),
            EscadmFailure::Other => f.write_str("escadm failed"),
        }
    }
}

fn lines(output: &str) -> impl Iterator<Item = &str> {
    output.lines().map(str::trim).filter(|l| !l.is_empty())
}

/// Strips `prefix` from the start of `line`, ASCII case-insensitively.
fn strip_prefix_ci<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    let head = line.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &line[prefix.len()..])
}

/// Parses `escadm op_mode show` and `op_mode set` output: the last `Operation Mode = X` line.
pub fn parse_op_mode(output: &str) -> Result<OpMode, ParseError> {
    const CMD: &str = "escadm op_mode";
    const EXPECTED: &str = "a line `Operation Mode = OPERATION|MAINTENANCE`";
    lines(output)
        .filter_map(|line| {
            let (key, value) = line.split_once('=')?;
            if !key.trim().eq_ignore_ascii_case("Operation Mode") {
                return None;
            }
            let word = value.split_whitespace().next()?;
            OpMode::from_word(word)
        })
        .last()
        .ok_or_else(|| ParseError::new(CMD, EXPECTED, output))
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

struct Summary {
    code: Option<i64>,
    role: HaRole,
    health: Health,
    detail: Option<String>,
}

fn parse_summary_line(line: &str) -> Option<Summary> {
    let rest = strip_prefix_ci(line, "ESC status=")?;
    let (code_text, rest) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let code = code_text.parse().ok();
    let (words, detail) = match rest.split_once(':') {
        Some((w, d)) => (w, Some(d.trim()).filter(|d| !d.is_empty())),
        None => (rest, None),
    };
    let mut role = HaRole::Unknown;
    let mut health = Health::Unknown;
    for word in words.split_whitespace() {
        if let Some(r) = HaRole::from_word(word) {
            role = r;
        } else if word.eq_ignore_ascii_case("healthy") {
            health = Health::Healthy;
        } else if word.eq_ignore_ascii_case("unhealthy") {
            health = Health::Unhealthy;
        } else if word.eq_ignore_ascii_case("stopped") {
            health = Health::Stopped;
        }
    }
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
pub fn parse_status(output: &str) -> Result<NodeStatus, ParseError> {
    const CMD: &str = "escadm status --v";
    const EXPECTED: &str = "service lines (`NAME is running|stopped`) and/or a summary `ESC status=N ESC <Role> <Health>`";
    let mut services = Vec::new();
    let mut summary = None;
    let mut esc_version = None;
    let mut unrecognized = Vec::new();
    let mut shouted_role = HaRole::Unknown;
    for line in lines(output) {
        if let Some(s) = parse_summary_line(line) {
            summary = Some(s);
        } else if let Some(Ok(v)) = parse_version_line(line) {
            esc_version = Some(v);
        } else if let Some(svc) = parse_service_line(line) {
            services.push(svc);
        } else {
            // The seed's rule: "MASTER"/"BACKUP" in the output names the role.
            for word in line.split(|c: char| !c.is_ascii_alphanumeric()) {
                match word {
                    "MASTER" => shouted_role = HaRole::Master,
                    "BACKUP" => shouted_role = HaRole::Backup,
                    _ => {}
                }
            }
            if unrecognized.len() < MAX_UNRECOGNIZED_LINES {
                unrecognized.push(clip(line, 200));
            }
        }
    }
    if services.is_empty() && summary.is_none() {
        return Err(ParseError::new(CMD, EXPECTED, output));
    }
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
        esc_version,
        unrecognized,
    })
}

/// Parses `escadm backup --file PATH`: the `Backup completed: PATH [(N bytes)]` line.
pub fn parse_backup(output: &str) -> Result<BackupResult, ParseError> {
    const CMD: &str = "escadm backup";
    const EXPECTED: &str = "a line `Backup completed: PATH (N bytes)`";
    let err = || ParseError::new(CMD, EXPECTED, output);
    let rest = lines(output)
        .filter_map(|l| strip_prefix_ci(l, "Backup completed:"))
        .last()
        .ok_or_else(err)?
        .trim();
    let (path, size_bytes) = match rest
        .strip_suffix(" bytes)")
        .and_then(|r| r.rsplit_once(" ("))
    {
        Some((path, n)) => match n.trim().parse::<u64>() {
            Ok(n) => (path.trim(), Some(n)),
            Err(_) => (rest, None),
        },
        None => (rest, None),
    };
    if !path.starts_with('/') {
        return Err(err());
    }
    Ok(BackupResult {
        path: path.to_owned(),
        size_bytes,
    })
}

fn require_line(
    output: &str,
    command: &'static str,
    expected: &'static str,
    pred: impl Fn(&str) -> bool,
) -> Result<(), ParseError> {
    if lines(output).any(|l| pred(&l.to_ascii_lowercase())) {
        Ok(())
    } else {
        Err(ParseError::new(command, expected, output))
    }
}

/// Parses `escadm restore --file PATH`: requires a `Restore completed` line.
pub fn parse_restore(output: &str) -> Result<(), ParseError> {
    require_line(
        output,
        "escadm restore",
        "a line `Restore completed...`",
        |l| l.starts_with("restore completed"),
    )
}

/// Parses `escadm stop`: requires a line saying the services stopped (`ESC services stopped`).
pub fn parse_stop(output: &str) -> Result<(), ParseError> {
    require_line(
        output,
        "escadm stop",
        "a line `ESC services stopped`",
        |l| l.contains("services stopped"),
    )
}

/// Parses `escadm restart`: requires a line saying the services started (`ESC services started`).
pub fn parse_restart(output: &str) -> Result<(), ParseError> {
    require_line(
        output,
        "escadm restart",
        "a line `ESC services started`",
        |l| l.contains("services started") || l.contains("services restarted"),
    )
}

/// Parses `escadm log collect`: the path on the `Log file: PATH` line; failing that, a
/// `/var/tmp/esc_log...tar.bz2` path anywhere in the output. Never guessed.
pub fn parse_log_collect(output: &str) -> Result<LogCollectResult, ParseError> {
    const CMD: &str = "escadm log collect";
    const EXPECTED: &str = "a line `Log file: /var/tmp/esc_log-<timestamp>.tar.bz2`";
    let from_label = lines(output)
        .filter_map(|l| strip_prefix_ci(l, "Log file:"))
        .map(str::trim)
        .filter(|p| p.starts_with('/'))
        .last();
    let path = from_label.or_else(|| {
        lines(output)
            .filter_map(|l| {
                let start = l.find("/var/tmp/esc_log")?;
                let tail = &l[start..];
                let end = tail.find(".tar.bz2")? + ".tar.bz2".len();
                Some(&tail[..end])
            })
            .last()
    });
    match path {
        Some(p) => Ok(LogCollectResult { path: p.to_owned() }),
        None => Err(ParseError::new(CMD, EXPECTED, output)),
    }
}

/// Parses `sha256sum FILE`: the digest at the start of the first line (a leading `\`, which
/// sha256sum prints for escaped file names, is accepted).
pub fn parse_sha256sum(output: &str) -> Result<Sha256Digest, ParseError> {
    let first = lines(output).next().unwrap_or("");
    let token = first.split_whitespace().next().unwrap_or("");
    let token = token.strip_prefix('\\').unwrap_or(token);
    token
        .parse()
        .map_err(|_| ParseError::new("sha256sum", "`<64 hex digits>  FILE`", output))
}

/// Parses `stat -c %s FILE`: one decimal number.
pub fn parse_stat_size(output: &str) -> Result<u64, ParseError> {
    let mut it = lines(output);
    match (it.next().map(str::parse::<u64>), it.next()) {
        (Some(Ok(n)), None) => Ok(n),
        _ => Err(ParseError::new("stat -c %s", "one decimal number", output)),
    }
}

/// The human message of a failed escadm: its first `ERROR: ` line (prefix removed), otherwise
/// the quoted stderr, otherwise the quoted stdout.
pub fn failure_message(stdout: &str, stderr: &str) -> String {
    if let Some(msg) = lines(stderr)
        .chain(lines(stdout))
        .find_map(|l| strip_prefix_ci(l, "ERROR:"))
    {
        return quote_output(msg.trim().as_bytes());
    }
    if !stderr.trim().is_empty() {
        quote_output(stderr.trim().as_bytes())
    } else {
        quote_output(stdout.trim().as_bytes())
    }
}

/// Classifies a failed escadm by exit code (the documented table) and, where the code does not
/// say (a real ESC may use other codes), by its message.
pub fn classify_failure(exit_code: Option<u32>, stderr: &str) -> EscadmFailure {
    let lower = stderr.to_ascii_lowercase();
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
    fn sha256sum_and_stat_outputs() {
        let d = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            parse_sha256sum(&format!("{d}  /tmp/x\n"))
                .unwrap()
                .to_string(),
            d
        );
        assert_eq!(
            parse_sha256sum(&format!("\\{d}  /tmp/a\\nb\n"))
                .unwrap()
                .to_string(),
            d
        );
        assert!(parse_sha256sum("sha256sum: /tmp/x: No such file or directory\n").is_err());
        assert!(parse_sha256sum(&d[1..]).is_err());
        assert_eq!(parse_stat_size("1073741824\n").unwrap(), 1 << 30);
        assert!(parse_stat_size("12\n13\n").is_err());
        assert!(parse_stat_size("-1\n").is_err());
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

    fn noise() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec("[ -~]{0,60}", 0..4)
    }

    proptest! {
        #[test]
        fn parsers_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let s = String::from_utf8_lossy(&bytes);
            let _ = parse_op_mode(&s);
            let _ = parse_status(&s);
            let _ = parse_backup(&s);
            let _ = parse_restore(&s);
            let _ = parse_stop(&s);
            let _ = parse_restart(&s);
            let _ = parse_log_collect(&s);
            let _ = parse_sha256sum(&s);
            let _ = parse_stat_size(&s);
            let _ = parse_backup_metadata(&s);
            let _ = classify_failure(Some(3), &s);
            let _ = failure_message(&s, &s);
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
        ) {
            let warn: Vec<String> = warn.into_iter().map(|w| format!("WARNING: {w}")).collect();
            let mut out = warn.join("\n");
            out.push('\n');
            for (name, pid) in &svcs {
                match pid {
                    Some(p) => out.push_str(&format!("{name} (pid {p}) is running\n")),
                    None => out.push_str(&format!("{name} is stopped\n")),
                }
            }
            let v = version.iter().map(u64::to_string).collect::<Vec<_>>().join(".");
            let role_word = match role { HaRole::Master => "Master", HaRole::Backup => "Backup", _ => "Standalone" };
            out.push_str(&format!("ESC version: {v}\nESC status=0 ESC {role_word} Healthy\n"));
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
        fn backup_round_trips(path in "/[a-zA-Z0-9_./ -]{1,40}", size in any::<u64>()) {
            let path = path.trim().to_string();
            let out = format!("Backing up ESC database to {path}\nBackup completed: {path} ({size} bytes)\n");
            let r = parse_backup(&out).unwrap();
            prop_assert_eq!(r.path, path);
            prop_assert_eq!(r.size_bytes, Some(size));
        }
    }
}
