//! The errors of the ESC domain, one enum per module, each variant carrying what a user needs to
//! act on it (host, port, command, the output that came back — quoted and truncated).
//!
//! No variant ever holds a password, a private key or a passphrase: credentials never reach an
//! error, and command lines never contain them (see [`crate::esc::escadm`]).

use std::time::Duration;

use thiserror::Error;

use crate::esc::parse::{EscadmFailure, OpMode};

/// At most this many bytes of remote output are quoted in an error message.
pub const QUOTE_LIMIT: usize = 400;

/// Quotes remote output for an error message: at most [`QUOTE_LIMIT`] bytes, lossily decoded,
/// control characters escaped, with a note of how much was cut.
pub fn quote_output(bytes: &[u8]) -> String {
    let (head, rest) = if bytes.len() > QUOTE_LIMIT {
        (&bytes[..QUOTE_LIMIT], bytes.len() - QUOTE_LIMIT)
    } else {
        (bytes, 0)
    };
    let text = String::from_utf8_lossy(head);
    let mut quoted = format!("{:?}", text.as_ref());
    if rest > 0 {
        quoted.push_str(&format!(" (+{rest} more bytes)"));
    }
    quoted
}

/// Truncates a free-form string (a command line, a path) for an error message.
pub(crate) fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// A string that is not an ESC version.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{input:?} is not an ESC version (expected dot-separated numbers such as 5.10.0.86)")]
pub struct VersionError {
    input: String,
}

impl VersionError {
    pub(crate) fn new(input: &str) -> Self {
        Self {
            input: clip(input, 80),
        }
    }
}

/// A server host key that the known_hosts content does not vouch for. The connection is refused.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum HostKeyError {
    /// No known_hosts entry names this host and port.
    #[error(
        "host key of {host} port {port} is unknown: the server offered {algorithm} key {fingerprint}, \
         and the known_hosts content has no entry for {host_pattern}; add the node's host key to it"
    )]
    Unknown {
        host: String,
        port: u16,
        host_pattern: String,
        algorithm: String,
        fingerprint: String,
    },
    /// Entries name this host, but none holds the offered key.
    #[error(
        "HOST KEY MISMATCH for {host} port {port}: the server offered {algorithm} key {fingerprint}, \
         but known_hosts has {known} for it; refusing to connect (the node was reinstalled, or \
         someone is intercepting the connection)"
    )]
    Mismatch {
        host: String,
        port: u16,
        algorithm: String,
        fingerprint: String,
        /// The recorded keys, as `algorithm fingerprint (line N)`, comma-separated.
        known: String,
    },
    /// The offered key is marked `@revoked`.
    #[error("host key {fingerprint} of {host} port {port} is marked @revoked in known_hosts")]
    Revoked {
        host: String,
        port: u16,
        fingerprint: String,
    },
    /// The server presented a certificate; only plain host keys are supported.
    #[error(
        "{host} port {port} presented a host certificate ({fingerprint}); only plain host keys \
         listed in known_hosts are supported"
    )]
    CertificateUnsupported {
        host: String,
        port: u16,
        fingerprint: String,
    },
}

/// A failure of the SSH transport.
#[derive(Debug, Error)]
pub enum SshError {
    /// The private key bytes could not be decoded (the key itself is never quoted).
    #[error("the SSH private key could not be used: {reason}")]
    InvalidPrivateKey { reason: String },
    /// TCP connect failed.
    #[error("cannot connect to {host} port {port}: {source}")]
    Connect {
        host: String,
        port: u16,
        #[source]
        source: std::io::Error,
    },
    /// TCP connect plus SSH handshake took too long.
    #[error("connecting to {host} port {port} timed out after {after:?}")]
    ConnectTimeout {
        host: String,
        port: u16,
        after: Duration,
    },
    /// The server's host key was refused.
    #[error(transparent)]
    HostKey(#[from] HostKeyError),
    /// The SSH handshake failed for another reason.
    #[error("SSH handshake with {host} port {port} failed: {message}")]
    Handshake {
        host: String,
        port: u16,
        message: String,
    },
    /// The server rejected the credentials.
    #[error(
        "{host} port {port} rejected {method} authentication for user {user:?} (the server accepts: {accepted}); \
         check the credentials Secret"
    )]
    AuthRejected {
        host: String,
        port: u16,
        user: String,
        method: &'static str,
        accepted: String,
    },
    /// Authentication took too long.
    #[error("authentication of user {user:?} at {host} port {port} timed out after {after:?}")]
    AuthTimeout {
        host: String,
        port: u16,
        user: String,
        after: Duration,
    },
    /// A command could not be started.
    #[error("cannot start `{command}` on {host} port {port}: {message}")]
    Exec {
        host: String,
        port: u16,
        command: String,
        message: String,
    },
    /// A command did not finish in time; its channel was closed.
    #[error(
        "`{command}` on {host} port {port} did not finish within {after:?}; its channel was closed"
    )]
    CommandTimeout {
        host: String,
        port: u16,
        command: String,
        after: Duration,
    },
    /// A stream stalled: no data for too long.
    #[error("`{command}` on {host} port {port} sent no data for {after:?}; transfer aborted")]
    StreamStalled {
        host: String,
        port: u16,
        command: String,
        after: Duration,
    },
    /// A command printed more than the allowed output; it was cut off.
    #[error(
        "`{command}` on {host} port {port} printed more than {limit} bytes on {stream}; output refused. Start: {head}"
    )]
    OutputTooLarge {
        host: String,
        port: u16,
        command: String,
        stream: &'static str,
        limit: usize,
        head: String,
    },
    /// The connection or channel ended before the command reported an exit status.
    #[error(
        "connection to {host} port {port} lost during `{command}`: {detail} (after {received} bytes of output)"
    )]
    ConnectionLost {
        host: String,
        port: u16,
        command: String,
        detail: String,
        received: u64,
    },
    /// A file transfer's command failed on the node.
    #[error("`{command}` on {host} port {port} failed ({exit}): {stderr}")]
    RemoteFailed {
        host: String,
        port: u16,
        command: String,
        exit: String,
        stderr: String,
    },
    /// A file transfer ended with a different byte count than the file's size.
    #[error(
        "transfer of {path} from/to {host} port {port} is truncated or changed: expected {expected} bytes, got {actual}"
    )]
    SizeMismatch {
        host: String,
        port: u16,
        path: String,
        expected: u64,
        actual: u64,
    },
    /// A helper command (`stat`) printed something else than expected.
    #[error("{host} port {port}: {source}")]
    UnexpectedOutput {
        host: String,
        port: u16,
        #[source]
        source: ParseError,
    },
    /// A path unfit for a remote command (not absolute, control characters, a URL).
    #[error(transparent)]
    Path(#[from] PathError),
    /// A local reader or writer failed during a transfer.
    #[error("local I/O failed while {context}: {source}")]
    LocalIo {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// A remote path that may not be used in a command line.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("unusable remote path {path:?}: {reason}")]
pub struct PathError {
    pub(crate) path: String,
    pub(crate) reason: &'static str,
}

/// escadm (or helper command) output that does not have the documented shape.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("unexpected output of `{command}`: expected {expected}; got {output}")]
pub struct ParseError {
    /// The command whose output this was (`escadm status --v`).
    pub command: &'static str,
    /// What the parser looked for.
    pub expected: &'static str,
    /// The output, quoted and truncated.
    pub output: String,
}

impl ParseError {
    pub(crate) fn new(command: &'static str, expected: &'static str, output: &str) -> Self {
        Self {
            command,
            expected,
            output: quote_output(output.as_bytes()),
        }
    }
}

/// A failure of an [`crate::esc::driver::EscNode`] operation.
#[derive(Debug, Error)]
pub enum DriverError {
    /// The transport failed.
    #[error(transparent)]
    Ssh(#[from] SshError),
    /// The command succeeded but its output was not understood.
    #[error("{host} port {port}: {source}")]
    Parse {
        host: String,
        port: u16,
        #[source]
        source: ParseError,
    },
    /// escadm refused or failed (non-zero exit).
    #[error("`{command}` on {host} port {port} failed: {kind} ({exit}); escadm said: {message}")]
    Escadm {
        host: String,
        port: u16,
        command: String,
        kind: EscadmFailure,
        exit: String,
        message: String,
    },
    /// `op_mode set` reported a different mode than requested.
    #[error("{host} port {port}: asked for {wanted} mode, ESC reports {got}")]
    ModeNotReached {
        host: String,
        port: u16,
        wanted: OpMode,
        got: OpMode,
    },
    /// A path unfit for a remote command.
    #[error(transparent)]
    Path(#[from] PathError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_truncates_and_escapes() {
        let long = "x".repeat(QUOTE_LIMIT + 10);
        let q = quote_output(long.as_bytes());
        assert!(q.ends_with("(+10 more bytes)"), "{q}");
        assert_eq!(quote_output(b"a\nb\x00"), "\"a\\nb\\0\"");
        assert_eq!(quote_output(&[0xff, b'a']), "\"\u{fffd}a\"");
    }

    #[test]
    fn clip_respects_char_boundaries() {
        assert_eq!(clip("héllo", 2), "h…");
        assert_eq!(clip("abc", 5), "abc");
    }
}
