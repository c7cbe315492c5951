//! The SSH transport: one authenticated connection per ESC node, commands with timeouts and
//! bounded output, and streaming file transfer with backpressure and truncation detection.
//!
//! - Pure Rust ([`russh`] on aws-lc-rs); no `ssh` binary needed.
//! - Host keys are always verified against known_hosts content ([`KnownHosts`]); there is no
//!   accept-any mode.
//! - Credentials ([`SshCredentials`]) are held in zeroizing buffers, redacted in `Debug`, and
//!   only ever handed to the SSH authentication layer — never to a command line, a log or an
//!   error.
//! - A file counts as transferred only when its byte count matches, the remote command exited 0
//!   and the channel closed cleanly: a dropped connection is always an error, never a short file.
//!
//! One concern per file, dependencies pointing one way: `transfer → exec → session`,
//! `session → {credentials, host_key}`, and all but `host_key` → `error`.
//! - [`credentials`]: what to log in with, decoded before any network I/O;
//! - `host_key`: the handshake-time host key check;
//! - [`session`]: [`SshSession`], the connection;
//! - [`exec`]: running a command; the one loop that reads a channel's messages;
//! - [`transfer`]: streaming files out and in;
//! - [`error`]: the transport's one error, [`SshError`].
//!
//! May import: [`crate::esc::known_hosts`], [`crate::esc::remote`] and the leaves
//! [`crate::esc::text`], [`crate::esc::vocab`]. Never the parsers or the driver.
//!
//! [`KnownHosts`]: crate::esc::known_hosts::KnownHosts

pub mod credentials;
pub mod error;
pub mod exec;
mod host_key;
pub mod session;
pub mod transfer;

pub use credentials::SshCredentials;
pub use error::SshError;
pub use exec::{CommandLimits, CommandOutput, ExitStatus};
pub use session::{SessionOptions, SshSession, SshTarget};
pub use transfer::{Downloaded, RemoteFileReader};
