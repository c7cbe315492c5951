//! The words shared across the ESC domain: a node's address ([`NodeAddr`]), its operation mode,
//! HA role, health and service states, why escadm refused ([`EscadmFailure`]), and a SHA-256
//! digest.
//!
//! Owns: these plain values and their spelling. Imports nothing of the ESC domain (a leaf): the
//! commands, the parsers, the transport and the driver all speak these words, so they must not
//! live in any one of them.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// Where a node's SSH server listens: the value every error names the node by.
///
/// The login user is not part of it: a node is the same node whoever logs in, a host key belongs
/// to the host and port only (known_hosts has no user), and only an authentication error needs
/// the user, which it carries on its own.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeAddr {
    /// Host name or IP address, as written in known_hosts.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl NodeAddr {
    /// An address.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        NodeAddr {
            host: host.into(),
            port,
        }
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} port {}", self.host, self.port)
    }
}

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

    /// The mode named by `word` (`OPERATION`, `maintenance`, any case); `None` for anything else.
    pub fn from_word(word: &str) -> Option<Self> {
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
    /// The output named no role, or contradicting ones.
    Unknown,
}

impl HaRole {
    /// The role named by `word` (`Master`, `BACKUP`, `standalone`, any case); `None` otherwise.
    pub fn from_word(word: &str) -> Option<Self> {
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
    /// `Unhealthy` (see the status detail).
    Unhealthy,
    /// `Stopped`: all services are down.
    Stopped,
    /// No summary line, a health word not known here, or contradicting ones.
    Unknown,
}

impl Health {
    /// The health named by `word` (`Healthy`, `unhealthy`, `STOPPED`, any case); `None` otherwise.
    pub fn from_word(word: &str) -> Option<Self> {
        if word.eq_ignore_ascii_case("healthy") {
            Some(Health::Healthy)
        } else if word.eq_ignore_ascii_case("unhealthy") {
            Some(Health::Unhealthy)
        } else if word.eq_ignore_ascii_case("stopped") {
            Some(Health::Stopped)
        } else {
            None
        }
    }
}

/// Whether one ESC service runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceRunState {
    /// `is running`, with the pid when printed.
    Running { pid: Option<u32> },
    /// `is stopped`, `is not running`, `is dead`.
    Stopped,
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

impl EscadmFailure {
    /// A short, stable CamelCase reason: a Kubernetes condition reason and a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            EscadmFailure::InFlightTransactions { .. } => "InFlightTransactions",
            EscadmFailure::NotInMaintenance => "NotInMaintenance",
            EscadmFailure::WrongRole => "WrongHaRole",
            EscadmFailure::ServicesRunning => "ServicesRunning",
            EscadmFailure::ServicesNotRunning => "ServicesNotRunning",
            EscadmFailure::Usage => "EscadmUsageError",
            EscadmFailure::Io => "NodeIoError",
            EscadmFailure::Other => "EscadmFailed",
        }
    }
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

/// A string that is not a SHA-256 digest. The string itself is not quoted: the callers that
/// parse remote output quote it in their own error.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
#[error("not a SHA-256 digest: expected 64 hexadecimal digits, got {len} bytes")]
pub struct DigestError {
    len: usize,
}

impl DigestError {
    /// A short, stable CamelCase reason: a Kubernetes condition reason and a metric label.
    pub fn reason(&self) -> &'static str {
        "InvalidDigest"
    }
}

impl FromStr for Sha256Digest {
    type Err = DigestError;

    /// 64 hex digits, either case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        if s.len() != 64 || hex::decode_to_slice(s, &mut out).is_err() {
            return Err(DigestError { len: s.len() });
        }
        Ok(Sha256Digest(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_their_spelling() {
        for m in [OpMode::Operation, OpMode::Maintenance] {
            assert_eq!(OpMode::from_word(&m.to_string()), Some(m));
            assert_eq!(OpMode::from_word(m.as_arg()), Some(m));
        }
        assert_eq!(OpMode::from_word("maintenace"), None);
        for r in [HaRole::Master, HaRole::Backup, HaRole::Standalone] {
            assert_eq!(HaRole::from_word(&r.to_string()), Some(r));
        }
        assert_eq!(HaRole::from_word("UNKNOWN"), None);
        assert_eq!(Health::from_word("Running"), None);
        assert_eq!(Health::from_word("STOPPED"), Some(Health::Stopped));
    }

    #[test]
    fn digests_parse_from_hex_only() {
        let d = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(d.parse::<Sha256Digest>().unwrap().to_string(), d);
        assert_eq!(
            d.to_uppercase()
                .parse::<Sha256Digest>()
                .unwrap()
                .to_string(),
            d
        );
        let err = d[1..].parse::<Sha256Digest>().unwrap_err();
        assert!(err.to_string().contains("63 bytes"), "{err}");
        assert!(format!("{d}\0").parse::<Sha256Digest>().is_err());
    }

    #[test]
    fn node_addr_reads_as_in_messages() {
        assert_eq!(
            NodeAddr::new("10.0.0.5", 22).to_string(),
            "10.0.0.5 port 22"
        );
    }
}
