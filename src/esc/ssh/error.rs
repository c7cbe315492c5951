//! [`SshError`]: every failure of the SSH transport, each naming the node ([`NodeAddr`]) and
//! what it was doing (the command line, the path), with the output that came back quoted and
//! truncated.
//!
//! No variant ever holds a password, a private key or a passphrase: credentials never reach an
//! error, and command lines never contain them (see [`crate::esc::escadm`]).
//!
//! Owns: [`SshError`]. Imports the leaf [`crate::esc::vocab`], and the errors it wraps from
//! [`crate::esc::known_hosts`] and [`crate::esc::remote`].

use std::time::Duration;

use thiserror::Error;

use crate::esc::known_hosts::HostKeyError;
use crate::esc::remote::PathError;
use crate::esc::vocab::NodeAddr;

/// A failure of the SSH transport.
#[derive(Debug, Error)]
pub enum SshError {
    /// The private key bytes could not be decoded (the key itself is never quoted).
    #[error("the SSH private key could not be used: {detail}")]
    InvalidPrivateKey { detail: String },
    /// TCP connect failed.
    #[error("cannot connect to {node}: {source}")]
    Connect {
        node: NodeAddr,
        #[source]
        source: std::io::Error,
    },
    /// TCP connect plus SSH handshake took too long.
    #[error("connecting to {node} timed out after {after:?}")]
    ConnectTimeout { node: NodeAddr, after: Duration },
    /// The server's host key was refused.
    #[error(transparent)]
    HostKey(#[from] HostKeyError),
    /// The SSH handshake failed for another reason.
    #[error("SSH handshake with {node} failed: {message}")]
    Handshake { node: NodeAddr, message: String },
    /// The server rejected the credentials.
    #[error(
        "{node} rejected {method} authentication for user {user:?} (the server accepts: \
         {accepted}); check the credentials Secret"
    )]
    AuthRejected {
        node: NodeAddr,
        user: String,
        method: &'static str,
        accepted: String,
    },
    /// Authentication took too long.
    #[error("authentication of user {user:?} at {node} timed out after {after:?}")]
    AuthTimeout {
        node: NodeAddr,
        user: String,
        after: Duration,
    },
    /// A command could not be started.
    #[error("cannot start `{command}` on {node}: {message}")]
    Exec {
        node: NodeAddr,
        command: String,
        message: String,
    },
    /// A command did not finish in time; its channel was closed.
    #[error("`{command}` on {node} did not finish within {after:?}; its channel was closed")]
    CommandTimeout {
        node: NodeAddr,
        command: String,
        after: Duration,
    },
    /// A stream stalled: no data for too long.
    #[error("`{command}` on {node} sent no data for {after:?}; transfer aborted")]
    StreamStalled {
        node: NodeAddr,
        command: String,
        after: Duration,
    },
    /// A command printed more than the allowed output; it was cut off.
    #[error(
        "`{command}` on {node} printed more than {limit} bytes on {stream}; output refused. \
         Start: {head}"
    )]
    OutputTooLarge {
        node: NodeAddr,
        command: String,
        stream: &'static str,
        limit: usize,
        head: String,
    },
    /// The connection or channel ended before the command reported an exit status.
    #[error(
        "connection to {node} lost during `{command}`: {detail} (after {received} bytes of output)"
    )]
    ConnectionLost {
        node: NodeAddr,
        command: String,
        detail: String,
        received: u64,
    },
    /// A file transfer's command failed on the node.
    #[error("`{command}` on {node} failed ({exit}): {stderr}")]
    RemoteFailed {
        node: NodeAddr,
        command: String,
        exit: String,
        stderr: String,
    },
    /// A file transfer ended with a different byte count than the file's size.
    #[error(
        "transfer of {path} from/to {node} is truncated or changed: expected {expected} bytes, \
         got {actual}"
    )]
    SizeMismatch {
        node: NodeAddr,
        path: String,
        expected: u64,
        actual: u64,
    },
    /// A helper command (`stat`) printed something else than expected.
    #[error("{node}: unexpected output of `{command}`: expected {expected}; got {output}")]
    UnexpectedOutput {
        node: NodeAddr,
        command: &'static str,
        expected: &'static str,
        /// The raw output, quoted and truncated.
        output: String,
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

impl SshError {
    /// A short, stable CamelCase reason: a Kubernetes condition reason and a metric label. A
    /// wrapped error gives its own, more precise reason (`HostKeyMismatch`).
    pub fn reason(&self) -> &'static str {
        match self {
            SshError::InvalidPrivateKey { .. } => "InvalidPrivateKey",
            SshError::Connect { .. } => "ConnectFailed",
            SshError::ConnectTimeout { .. } => "ConnectTimeout",
            SshError::HostKey(e) => e.reason(),
            SshError::Handshake { .. } => "HandshakeFailed",
            SshError::AuthRejected { .. } => "AuthFailed",
            SshError::AuthTimeout { .. } => "AuthTimeout",
            SshError::Exec { .. } => "ExecFailed",
            SshError::CommandTimeout { .. } => "CommandTimeout",
            SshError::StreamStalled { .. } => "TransferStalled",
            SshError::OutputTooLarge { .. } => "OutputTooLarge",
            SshError::ConnectionLost { .. } => "ConnectionLost",
            SshError::RemoteFailed { .. } => "RemoteCommandFailed",
            SshError::SizeMismatch { .. } => "TransferSizeMismatch",
            SshError::UnexpectedOutput { .. } => "UnrecognizedHelperOutput",
            SshError::Path(e) => e.reason(),
            SshError::LocalIo { .. } => "LocalIoFailed",
        }
    }

    /// The node the failure concerns; `None` for failures before or beside any connection (a
    /// bad key, a bad path, local I/O).
    pub fn node(&self) -> Option<&NodeAddr> {
        match self {
            SshError::Connect { node, .. }
            | SshError::ConnectTimeout { node, .. }
            | SshError::Handshake { node, .. }
            | SshError::AuthRejected { node, .. }
            | SshError::AuthTimeout { node, .. }
            | SshError::Exec { node, .. }
            | SshError::CommandTimeout { node, .. }
            | SshError::StreamStalled { node, .. }
            | SshError::OutputTooLarge { node, .. }
            | SshError::ConnectionLost { node, .. }
            | SshError::RemoteFailed { node, .. }
            | SshError::SizeMismatch { node, .. }
            | SshError::UnexpectedOutput { node, .. } => Some(node),
            SshError::HostKey(e) => Some(e.node()),
            SshError::InvalidPrivateKey { .. } | SshError::Path(_) | SshError::LocalIo { .. } => {
                None
            }
        }
    }
}
