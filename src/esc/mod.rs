//! ESC domain: escadm commands, their output parsers and the SSH transport. Knows nothing of Kubernetes.
//!
//! Pure modules (no I/O, unit- and property-tested): [`version`], [`known_hosts`], [`remote`],
//! [`escadm`], [`parse`]. I/O: [`ssh`] (the transport) and [`driver`] ([`EscNode`], the typed
//! escadm driver over one SSH connection). Errors: [`error`], one enum per concern.
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

pub mod driver;
pub mod error;
pub mod escadm;
pub mod known_hosts;
pub mod parse;
pub mod remote;
pub mod ssh;
pub mod version;

pub use driver::{DriverTimeouts, EscNode};
pub use error::{DriverError, HostKeyError, ParseError, PathError, SshError, VersionError};
pub use escadm::EscadmCommand;
pub use known_hosts::KnownHosts;
pub use parse::{
    BackupMetadata, BackupResult, EscadmFailure, HaRole, Health, LogCollectResult, NodeStatus,
    OpMode, ServiceRunState, ServiceState, Sha256Digest,
};
pub use remote::{CommandLine, RemotePath};
pub use ssh::{
    CommandLimits, CommandOutput, Downloaded, ExitStatus, RemoteFileReader, SessionOptions,
    SshCredentials, SshSession, SshTarget,
};
pub use version::EscVersion;
