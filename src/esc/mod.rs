//! ESC domain: escadm commands, their output parsers and the SSH transport. Knows nothing of Kubernetes.
//!
//! Pure modules (no I/O, unit- and property-tested): [`version`], [`known_hosts`], [`remote`],
//! [`escadm`], [`parse`]. I/O: [`ssh`] (the transport) and [`driver`] ([`EscNode`], the typed
//! escadm driver over one SSH connection). Errors: [`error`], one enum per concern.

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
