//! ESC domain: escadm commands, their output parsers and the SSH transport. Knows nothing of
//! Kubernetes.
//!
//! Modules, and what each may import (dependencies point one way, no circle; `tests.rs` scans
//! the `use` lines and fails on a new edge against this direction):
//! ```text
//! driver      → detached, escadm, known_hosts, parse, remote, ssh, text, vocab  (the top)
//! detached    → escadm, remote                                     (scripts of detached runs)
//! ssh/*       → known_hosts, remote, text, vocab                       (never the parsers)
//! parse       → version, text, vocab
//! escadm      → remote, vocab
//! known_hosts → vocab
//! remote      → text
//! version     → text
//! text, vocab → nothing of the domain                                  (the leaves)
//! ```
//! - Leaves, importing nothing of the domain: [`vocab`] (the shared words: [`OpMode`],
//!   [`HaRole`], [`Health`], [`ServiceRunState`], [`EscadmFailure`], [`Sha256Digest`],
//!   [`NodeAddr`]) and [`text`] (the one cleaning step before any parser, [`OutputText`], and
//!   the quoting of output in errors).
//! - Pure (no I/O, unit- and property-tested): [`version`], [`known_hosts`], [`remote`],
//!   [`escadm`], [`detached`], [`parse`].
//! - I/O: [`ssh`] (the transport; never the parsers) and [`driver`] ([`EscNode`], the typed
//!   escadm driver over one SSH connection; the top, imported by nothing here).
//!
//! Each error lives beside the code that raises it ([`VersionError`], [`HostKeyError`],
//! [`PathError`], [`ParseError`], [`SshError`], [`DriverError`]), names the node as one
//! [`NodeAddr`], and has a `reason()`: a short, stable CamelCase word for a Kubernetes condition
//! and a metric label.
//!
//! ```no_run
//! # async fn demo(key: Vec<u8>, known_hosts: &str) -> Result<(), Box<dyn std::error::Error>> {
//! use esc_operator::esc::*;
//!
//! let node = EscNode::connect(
//!     SshTarget::new("10.0.0.5", 22, "admin"),
//!     &SshCredentials::private_key(key, None), // bytes from a Secret; never logged
//!     &KnownHosts::parse(known_hosts),         // host key always verified
//!     SessionOptions::default(),
//! )
//! .await?;
//! node.set_op_mode(OpMode::Maintenance, true).await?; // --ipt_check=true
//! let file = RemotePath::new("/tmp/esc-db.tar.bz2")?;
//! node.backup(&file).await?;
//! let mut local = tokio::fs::File::create("esc-db.tar.bz2").await?;
//! let done = node.session().download_hashed(&file, &mut local).await?; // complete, or an error
//! assert_eq!(done.sha256, node.sha256(&file).await?);
//! node.remove_file(&file).await?;
//! node.set_op_mode(OpMode::Operation, false).await?;
//! # Ok(()) }
//! ```

pub mod detached;
pub mod driver;
pub mod escadm;
pub mod history;
pub mod known_hosts;
pub mod parse;
pub mod remote;
pub mod ssh;
pub mod text;
pub mod version;
pub mod vocab;

pub use detached::{RunDir, RunStream};
pub use driver::{DriverError, DriverTimeouts, EscNode};
pub use escadm::EscadmCommand;
pub use known_hosts::{HostKeyError, KnownHosts};
pub use parse::{
    BackupMetadata, BackupResult, LogCollectResult, NodeStatus, ParseError, RunState, ServiceState,
};
pub use remote::{CommandLine, PathError, RemotePath};
pub use ssh::{
    CommandLimits, CommandOutput, Downloaded, ExitStatus, RemoteFileReader, SessionOptions,
    SshCredentials, SshError, SshSession, SshTarget,
};
pub use text::OutputText;
pub use version::{EscVersion, VersionError};
pub use vocab::{
    DigestError, EscadmFailure, HaRole, Health, NodeAddr, OpMode, ServiceRunState, Sha256Digest,
};

#[cfg(test)]
mod tests;
