//! [`EscNode`]: the typed escadm driver for one ESC node, over one reused SSH connection.
//!
//! Each method renders a typed command ([`EscadmCommand`]), runs it with a timeout suited to it,
//! maps a non-zero exit to a classified [`DriverError::Escadm`], and parses the output with the
//! pure parsers of [`crate::esc::parse`].

use std::time::Duration;

use crate::esc::error::{DriverError, clip};
use crate::esc::escadm::EscadmCommand;
use crate::esc::known_hosts::KnownHosts;
use crate::esc::parse::{
    self, BackupResult, LogCollectResult, NodeStatus, OpMode, Sha256Digest, classify_failure,
    failure_message,
};
use crate::esc::remote::{CommandLine, RemotePath};
use crate::esc::ssh::{
    CommandLimits, CommandOutput, SessionOptions, SshCredentials, SshSession, SshTarget,
};

/// Timeouts per kind of operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverTimeouts {
    /// `op_mode show|set`, `status --v`, `rm`, `stat`.
    pub quick: Duration,
    /// `backup`.
    pub backup: Duration,
    /// `restore`.
    pub restore: Duration,
    /// `stop`, `restart`.
    pub stop_restart: Duration,
    /// `log collect`.
    pub log_collect: Duration,
    /// `sha256sum` of an artifact.
    pub checksum: Duration,
}

impl Default for DriverTimeouts {
    fn default() -> Self {
        DriverTimeouts {
            quick: Duration::from_secs(60),
            backup: Duration::from_secs(30 * 60),
            restore: Duration::from_secs(30 * 60),
            stop_restart: Duration::from_secs(10 * 60),
            log_collect: Duration::from_secs(15 * 60),
            checksum: Duration::from_secs(15 * 60),
        }
    }
}

/// One ESC node, driven over one SSH connection.
#[derive(Debug)]
pub struct EscNode {
    session: SshSession,
    timeouts: DriverTimeouts,
}

impl EscNode {
    /// Connects to a node (see [`SshSession::connect`]).
    pub async fn connect(
        target: SshTarget,
        credentials: &SshCredentials,
        known_hosts: &KnownHosts,
        options: SessionOptions,
    ) -> Result<Self, DriverError> {
        let session = SshSession::connect(target, credentials, known_hosts, options).await?;
        Ok(EscNode::new(session))
    }

    /// A driver over an established session.
    pub fn new(session: SshSession) -> Self {
        EscNode {
            session,
            timeouts: DriverTimeouts::default(),
        }
    }

    /// Replaces the timeouts.
    pub fn with_timeouts(mut self, timeouts: DriverTimeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// The SSH session, for file transfers.
    pub fn session(&self) -> &SshSession {
        &self.session
    }

    /// Gives the session back.
    pub fn into_session(self) -> SshSession {
        self.session
    }

    /// Closes the connection.
    pub async fn close(self) {
        self.session.close().await
    }

    fn parse_err(&self, source: crate::esc::error::ParseError) -> DriverError {
        DriverError::Parse {
            host: self.session.target().host.clone(),
            port: self.session.target().port,
            source,
        }
    }

    async fn escadm(
        &self,
        cmd: &EscadmCommand,
        timeout: Duration,
    ) -> Result<CommandOutput, DriverError> {
        let line = cmd.command_line();
        let out = self
            .session
            .run(&line, &CommandLimits::with_timeout(timeout))
            .await?;
        if out.exit_status.success() {
            tracing::debug!(target = %self.session.target(), command = cmd.name(), "escadm ok");
            return Ok(out);
        }
        let stdout = out.stdout_text();
        let stderr = out.stderr_text();
        let kind = classify_failure(out.exit_status.code(), &stderr);
        tracing::info!(target = %self.session.target(), command = cmd.name(), exit = %out.exit_status, %kind, "escadm refused or failed");
        Err(DriverError::Escadm {
            host: self.session.target().host.clone(),
            port: self.session.target().port,
            command: clip(&line.render(self.session.options().sudo), 200),
            kind,
            exit: out.exit_status.to_string(),
            message: failure_message(&stdout, &stderr),
        })
    }

    /// `escadm op_mode show`.
    pub async fn op_mode(&self) -> Result<OpMode, DriverError> {
        let out = self
            .escadm(&EscadmCommand::OpModeShow, self.timeouts.quick)
            .await?;
        parse::parse_op_mode(&out.stdout_text()).map_err(|e| self.parse_err(e))
    }

    /// `escadm op_mode set --mode=MODE [--ipt_check=true]`; succeeds only when ESC then reports
    /// `MODE`. With `ipt_check` and transactions in flight, fails with
    /// [`parse::EscadmFailure::InFlightTransactions`].
    pub async fn set_op_mode(&self, mode: OpMode, ipt_check: bool) -> Result<OpMode, DriverError> {
        let out = self
            .escadm(
                &EscadmCommand::OpModeSet { mode, ipt_check },
                self.timeouts.quick,
            )
            .await?;
        let got = parse::parse_op_mode(&out.stdout_text()).map_err(|e| self.parse_err(e))?;
        if got != mode {
            return Err(DriverError::ModeNotReached {
                host: self.session.target().host.clone(),
                port: self.session.target().port,
                wanted: mode,
                got,
            });
        }
        Ok(got)
    }

    /// `escadm status --v`.
    pub async fn status(&self) -> Result<NodeStatus, DriverError> {
        let out = self
            .escadm(&EscadmCommand::Status, self.timeouts.quick)
            .await?;
        parse::parse_status(&out.stdout_text()).map_err(|e| self.parse_err(e))
    }

    /// `escadm backup --file FILE` (a path on the node; fetch it with
    /// [`SshSession::read_file`]).
    pub async fn backup(&self, file: &RemotePath) -> Result<BackupResult, DriverError> {
        let out = self
            .escadm(
                &EscadmCommand::Backup { file: file.clone() },
                self.timeouts.backup,
            )
            .await?;
        parse::parse_backup(&out.stdout_text()).map_err(|e| self.parse_err(e))
    }

    /// `escadm restore --file FILE` (a path on the node, staged with
    /// [`SshSession::upload_from`]). ESC needs `escadm restart` afterwards.
    pub async fn restore(&self, file: &RemotePath) -> Result<(), DriverError> {
        let out = self
            .escadm(
                &EscadmCommand::Restore { file: file.clone() },
                self.timeouts.restore,
            )
            .await?;
        parse::parse_restore(&out.stdout_text()).map_err(|e| self.parse_err(e))
    }

    /// `escadm stop`.
    pub async fn stop(&self) -> Result<(), DriverError> {
        let out = self
            .escadm(&EscadmCommand::Stop, self.timeouts.stop_restart)
            .await?;
        parse::parse_stop(&out.stdout_text()).map_err(|e| self.parse_err(e))
    }

    /// `escadm restart`.
    pub async fn restart(&self) -> Result<(), DriverError> {
        let out = self
            .escadm(&EscadmCommand::Restart, self.timeouts.stop_restart)
            .await?;
        parse::parse_restart(&out.stdout_text()).map_err(|e| self.parse_err(e))
    }

    /// `escadm log collect`: the path of the archive it wrote, as it printed it.
    pub async fn log_collect(&self) -> Result<LogCollectResult, DriverError> {
        let out = self
            .escadm(&EscadmCommand::LogCollect, self.timeouts.log_collect)
            .await?;
        parse::parse_log_collect(&out.stdout_text()).map_err(|e| self.parse_err(e))
    }

    /// `sha256sum -- PATH` on the node.
    pub async fn sha256(&self, path: &RemotePath) -> Result<Sha256Digest, DriverError> {
        let out = self
            .session
            .run_ok(
                &CommandLine::sha256sum(path),
                &CommandLimits::with_timeout(self.timeouts.checksum),
            )
            .await?;
        parse::parse_sha256sum(&out.stdout_text()).map_err(|e| self.parse_err(e))
    }

    /// The size of a file on the node.
    pub async fn file_size(&self, path: &RemotePath) -> Result<u64, DriverError> {
        Ok(self.session.file_size(path).await?)
    }

    /// `rm -f -- PATH` (temporary files: backup archives, staged restores, log archives).
    pub async fn remove_file(&self, path: &RemotePath) -> Result<(), DriverError> {
        self.session
            .run_ok(
                &CommandLine::remove(path),
                &CommandLimits::with_timeout(self.timeouts.quick),
            )
            .await?;
        Ok(())
    }
}
