//! [`EscNode`]: the typed escadm driver for one ESC node, over one reused SSH connection.
//!
//! Each method renders a typed command ([`EscadmCommand`]), runs it with a timeout suited to it,
//! maps a non-zero exit to a classified [`DriverError::Escadm`], and parses the output with the
//! pure parsers of [`crate::esc::parse`], which read the raw output through their one cleaning
//! step. Warnings of a command that succeeded (stderr cut at its limit) are logged.
//!
//! Owns: [`EscNode`] and [`DriverError`]. The top of the domain: may import every other module
//! of [`crate::esc`]; none imports it.

use std::time::Duration;

use thiserror::Error;

use crate::esc::detached::{RunDir, RunStream};
use crate::esc::escadm::EscadmCommand;
use crate::esc::history;
use crate::esc::known_hosts::KnownHosts;
use crate::esc::parse::{
    self, BackupResult, LogCollectResult, NodeStatus, ParseError, RunState, classify_failure,
    failure_message,
};
use crate::esc::remote::{CommandLine, PathError, RemotePath};
use crate::esc::ssh::{
    CommandLimits, CommandOutput, ExitStatus, SessionOptions, SshCredentials, SshError, SshSession,
    SshTarget,
};
use crate::esc::text::{OutputText, clip};
use crate::esc::vocab::{EscadmFailure, NodeAddr, OpMode, Sha256Digest};

/// A failure of an [`EscNode`] operation.
#[derive(Debug, Error)]
pub enum DriverError {
    /// The transport failed.
    #[error(transparent)]
    Ssh(#[from] SshError),
    /// The command succeeded but its output was not understood.
    #[error("{node}: {source}")]
    Parse {
        node: NodeAddr,
        #[source]
        source: ParseError,
    },
    /// escadm refused or failed (non-zero exit).
    #[error("`{command}` on {node} failed: {kind} ({exit}); escadm said: {message}")]
    Escadm {
        node: NodeAddr,
        command: String,
        kind: EscadmFailure,
        exit: String,
        message: String,
    },
    /// `op_mode set` reported a different mode than requested.
    #[error("{node}: asked for {wanted} mode, ESC reports {got}")]
    ModeNotReached {
        node: NodeAddr,
        wanted: OpMode,
        got: OpMode,
    },
    /// `backup` says it wrote another file than the one asked for.
    #[error("{node}: asked escadm to back up to {requested}, it reports {reported}")]
    BackupPathMismatch {
        node: NodeAddr,
        requested: String,
        reported: String,
    },
    /// A path unfit for a remote command.
    #[error(transparent)]
    Path(#[from] PathError),
}

impl DriverError {
    /// A short, stable CamelCase reason: a Kubernetes condition reason and a metric label. A
    /// wrapped error gives its own, more precise reason (`HostKeyMismatch`,
    /// `InFlightTransactions`).
    pub fn reason(&self) -> &'static str {
        match self {
            DriverError::Ssh(e) => e.reason(),
            DriverError::Parse { source, .. } => source.reason(),
            DriverError::Escadm { kind, .. } => kind.reason(),
            DriverError::ModeNotReached { .. } => "ModeNotReached",
            DriverError::BackupPathMismatch { .. } => "BackupPathMismatch",
            DriverError::Path(e) => e.reason(),
        }
    }

    /// The node the failure concerns, when there is one.
    pub fn node(&self) -> Option<&NodeAddr> {
        match self {
            DriverError::Ssh(e) => e.node(),
            DriverError::Parse { node, .. }
            | DriverError::Escadm { node, .. }
            | DriverError::ModeNotReached { node, .. }
            | DriverError::BackupPathMismatch { node, .. } => Some(node),
            DriverError::Path(_) => None,
        }
    }
}

/// A backup counts as done only when escadm reports the file it was asked to write: a report of
/// another path (a relative or rewritten one) says nothing about `requested`.
fn written_where_asked(
    node: &NodeAddr,
    requested: &RemotePath,
    result: BackupResult,
) -> Result<BackupResult, DriverError> {
    if result.path == requested.as_str() {
        Ok(result)
    } else {
        Err(DriverError::BackupPathMismatch {
            node: node.clone(),
            requested: requested.to_string(),
            reported: clip(&result.path, 200),
        })
    }
}

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

    fn parse_err(&self, source: ParseError) -> DriverError {
        DriverError::Parse {
            node: self.session.node().clone(),
            source,
        }
    }

    /// Logs what a command that succeeded still had to say (stderr cut at its limit): nobody
    /// read it, so it must at least be seen.
    fn log_warnings(&self, name: &str, out: &CommandOutput) {
        for warning in out.warnings() {
            tracing::warn!(target = %self.session.target(), command = name, %warning, "command succeeded with a warning");
        }
    }

    async fn escadm(
        &self,
        cmd: &EscadmCommand,
        timeout: Duration,
    ) -> Result<CommandOutput, DriverError> {
        let out = self
            .session
            .run(&cmd.command_line(), &CommandLimits::with_timeout(timeout))
            .await?;
        self.checked(cmd, out)
    }

    /// An escadm command's output when it exited 0, otherwise its classified failure: the one
    /// judgement for attached and detached runs alike.
    fn checked(
        &self,
        cmd: &EscadmCommand,
        out: CommandOutput,
    ) -> Result<CommandOutput, DriverError> {
        let line = cmd.command_line();
        if out.exit_status.success() {
            tracing::debug!(target = %self.session.target(), command = cmd.name(), "escadm ok");
            self.log_warnings(cmd.name(), &out);
            return Ok(out);
        }
        let kind = classify_failure(out.exit_status.code(), &out.stderr);
        tracing::info!(target = %self.session.target(), command = cmd.name(), exit = %out.exit_status, %kind, "escadm refused or failed");
        let mut message = failure_message(&out.stdout, &out.stderr);
        if let Some(dropped) = out.stderr_truncated {
            message.push_str(&format!(
                " (stderr exceeded its limit: {dropped} more bytes dropped unread)"
            ));
        }
        Err(DriverError::Escadm {
            node: self.session.node().clone(),
            command: clip(&line.render(self.session.options().sudo), 200),
            kind,
            exit: out.exit_status.to_string(),
            message,
        })
    }

    /// `escadm op_mode show`.
    pub async fn op_mode(&self) -> Result<OpMode, DriverError> {
        let out = self
            .escadm(&EscadmCommand::OpModeShow, self.timeouts.quick)
            .await?;
        parse::parse_op_mode(&out.stdout).map_err(|e| self.parse_err(e))
    }

    /// `escadm op_mode set --mode=MODE [--ipt_check=true]`; succeeds only when ESC then reports
    /// `MODE`. With `ipt_check` and transactions in flight, fails with
    /// [`EscadmFailure::InFlightTransactions`].
    pub async fn set_op_mode(&self, mode: OpMode, ipt_check: bool) -> Result<OpMode, DriverError> {
        let out = self
            .escadm(
                &EscadmCommand::OpModeSet { mode, ipt_check },
                self.timeouts.quick,
            )
            .await?;
        let got = parse::parse_op_mode(&out.stdout).map_err(|e| self.parse_err(e))?;
        if got != mode {
            return Err(DriverError::ModeNotReached {
                node: self.session.node().clone(),
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
        parse::parse_status(&out.stdout).map_err(|e| self.parse_err(e))
    }

    /// `escadm backup --file FILE` (a path on the node; fetch it with
    /// [`SshSession::read_file`]). Succeeds only when escadm reports having written `FILE`
    /// itself.
    pub async fn backup(&self, file: &RemotePath) -> Result<BackupResult, DriverError> {
        let out = self
            .escadm(
                &EscadmCommand::Backup { file: file.clone() },
                self.timeouts.backup,
            )
            .await?;
        let result = parse::parse_backup(&out.stdout).map_err(|e| self.parse_err(e))?;
        written_where_asked(self.session.node(), file, result)
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
        parse::parse_restore(&out.stdout).map_err(|e| self.parse_err(e))
    }

    /// `escadm stop`.
    pub async fn stop(&self) -> Result<(), DriverError> {
        let out = self
            .escadm(&EscadmCommand::Stop, self.timeouts.stop_restart)
            .await?;
        parse::parse_stop(&out.stdout).map_err(|e| self.parse_err(e))
    }

    /// `escadm restart`.
    pub async fn restart(&self) -> Result<(), DriverError> {
        let out = self
            .escadm(&EscadmCommand::Restart, self.timeouts.stop_restart)
            .await?;
        parse::parse_restart(&out.stdout).map_err(|e| self.parse_err(e))
    }

    /// `escadm log collect`: the path of the archive it wrote, as it printed it.
    pub async fn log_collect(&self) -> Result<LogCollectResult, DriverError> {
        let out = self
            .escadm(&EscadmCommand::LogCollect, self.timeouts.log_collect)
            .await?;
        parse::parse_log_collect(&out.stdout).map_err(|e| self.parse_err(e))
    }

    /// Starts `command` detached in `run` (see [`crate::esc::detached`]): it survives this
    /// connection and the operator. Idempotent: `Ok(false)` when the directory already held a
    /// run (this call started nothing).
    pub async fn start_detached(
        &self,
        run: &RunDir,
        command: &EscadmCommand,
    ) -> Result<bool, DriverError> {
        let out = self
            .session
            .run_ok(
                &run.start(command),
                &CommandLimits::with_timeout(self.timeouts.quick),
            )
            .await?;
        match OutputText::new(&out.stdout).lines().last().map(str::trim) {
            Some("started") => {
                tracing::info!(target = %self.session.target(), command = command.name(), dir = %run.path(), "started detached");
                Ok(true)
            }
            Some("already") => Ok(false),
            _ => Err(self.parse_err(ParseError::unexpected(
                "start detached",
                "`started` or `already`",
                &out.stdout,
            ))),
        }
    }

    /// Where a detached run is.
    pub async fn poll_detached(&self, run: &RunDir) -> Result<RunState, DriverError> {
        let out = self
            .session
            .run_ok(
                &run.poll(),
                &CommandLimits::with_timeout(self.timeouts.quick),
            )
            .await?;
        parse::parse_run_state(&out.stdout).map_err(|e| self.parse_err(e))
    }

    /// The output of a detached run that exited with `code`, judged like an attached run.
    async fn detached_output(
        &self,
        run: &RunDir,
        command: &EscadmCommand,
        code: i32,
    ) -> Result<CommandOutput, DriverError> {
        let limits = CommandLimits::with_timeout(self.timeouts.quick);
        let stdout = self
            .session
            .run_ok(&run.read(RunStream::Stdout), &limits)
            .await?;
        let stderr = self
            .session
            .run_ok(&run.read(RunStream::Stderr), &limits)
            .await?;
        let out = CommandOutput {
            exit_status: ExitStatus::Code(code.unsigned_abs()),
            stdout: stdout.stdout,
            stderr: stderr.stdout,
            stderr_truncated: None,
        };
        self.checked(command, out)
    }

    /// The result of a detached `escadm backup --file FILE` that exited with `code`: done only
    /// when escadm reports having written `FILE` itself.
    pub async fn finish_backup(
        &self,
        run: &RunDir,
        file: &RemotePath,
        code: i32,
    ) -> Result<BackupResult, DriverError> {
        let command = EscadmCommand::Backup { file: file.clone() };
        let out = self.detached_output(run, &command, code).await?;
        let result = parse::parse_backup(&out.stdout).map_err(|e| self.parse_err(e))?;
        written_where_asked(self.session.node(), file, result)
    }

    /// The result of a detached `escadm log collect` that exited with `code`.
    pub async fn finish_log_collect(
        &self,
        run: &RunDir,
        code: i32,
    ) -> Result<LogCollectResult, DriverError> {
        let out = self
            .detached_output(run, &EscadmCommand::LogCollect, code)
            .await?;
        parse::parse_log_collect(&out.stdout).map_err(|e| self.parse_err(e))
    }

    /// The result of a detached `escadm stop` that exited with `code` (check the services with
    /// [`EscNode::status`] afterwards: stop's own word is not proof).
    pub async fn finish_stop(&self, run: &RunDir, code: i32) -> Result<(), DriverError> {
        let out = self
            .detached_output(run, &EscadmCommand::Stop, code)
            .await?;
        parse::parse_stop(&out.stdout).map_err(|e| self.parse_err(e))
    }

    /// The result of a detached `escadm restore --file FILE` that exited with `code`.
    pub async fn finish_restore(
        &self,
        run: &RunDir,
        file: &RemotePath,
        code: i32,
    ) -> Result<(), DriverError> {
        let command = EscadmCommand::Restore { file: file.clone() };
        let out = self.detached_output(run, &command, code).await?;
        parse::parse_restore(&out.stdout).map_err(|e| self.parse_err(e))
    }

    /// The result of a detached `escadm restart` that exited with `code` (check the role and
    /// health with [`EscNode::status`] afterwards).
    pub async fn finish_restart(&self, run: &RunDir, code: i32) -> Result<(), DriverError> {
        let out = self
            .detached_output(run, &EscadmCommand::Restart, code)
            .await?;
        parse::parse_restart(&out.stdout).map_err(|e| self.parse_err(e))
    }

    /// The restore history kept in `file` on this node (see [`crate::esc::history`]); empty
    /// when the file does not exist. Fails closed on content it does not understand.
    pub async fn restore_history(
        &self,
        file: &RemotePath,
    ) -> Result<Vec<history::RestoreRecord>, DriverError> {
        let out = self
            .session
            .run_ok(
                &history::read_history(file),
                &CommandLimits::with_timeout(self.timeouts.quick),
            )
            .await?;
        history::parse_history(&out.stdout).map_err(|e| self.parse_err(e))
    }

    /// Appends a completed restore to the history in `file` on this node.
    pub async fn record_restore(
        &self,
        file: &RemotePath,
        record: &history::RestoreRecord,
    ) -> Result<(), DriverError> {
        self.session
            .run_ok(
                &history::append_history(file, record),
                &CommandLimits::with_timeout(self.timeouts.quick),
            )
            .await?;
        Ok(())
    }

    /// Free bytes on the filesystem that holds `dir` (created if missing).
    pub async fn free_space(&self, dir: &RemotePath) -> Result<u64, DriverError> {
        let out = self
            .session
            .run_ok(
                &history::free_space(dir),
                &CommandLimits::with_timeout(self.timeouts.quick),
            )
            .await?;
        history::parse_free_space(&out.stdout).map_err(|e| self.parse_err(e))
    }

    /// Removes a detached run's directory with everything in it.
    pub async fn remove_run(&self, run: &RunDir) -> Result<(), DriverError> {
        self.session
            .run_ok(
                &run.remove(),
                &CommandLimits::with_timeout(self.timeouts.quick),
            )
            .await?;
        Ok(())
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
        self.log_warnings("sha256sum", &out);
        parse::parse_sha256sum(&out.stdout).map_err(|e| self.parse_err(e))
    }

    /// The size of a file on the node.
    pub async fn file_size(&self, path: &RemotePath) -> Result<u64, DriverError> {
        Ok(self.session.file_size(path).await?)
    }

    /// `rm -f -- PATH` (temporary files: backup archives, staged restores, log archives).
    pub async fn remove_file(&self, path: &RemotePath) -> Result<(), DriverError> {
        let out = self
            .session
            .run_ok(
                &CommandLine::remove(path),
                &CommandLimits::with_timeout(self.timeouts.quick),
            )
            .await?;
        self.log_warnings("rm", &out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_written_elsewhere_is_not_done() {
        let node = NodeAddr::new("esc-a", 22);
        let asked = RemotePath::new("/tmp/esc-db.tar.bz2").unwrap();
        let result = |path: &str| BackupResult {
            path: path.into(),
            size_bytes: Some(1),
        };
        assert_eq!(
            written_where_asked(&node, &asked, result("/tmp/esc-db.tar.bz2")).unwrap(),
            result("/tmp/esc-db.tar.bz2")
        );
        for other in [
            "/tmp/esc-db.tar.bz2.1",
            "/var/tmp/esc-db.tar.bz2",
            "/tmp//esc-db.tar.bz2",
        ] {
            let err = written_where_asked(&node, &asked, result(other)).unwrap_err();
            assert_eq!(err.reason(), "BackupPathMismatch");
            assert!(err.to_string().contains(other), "{err}");
        }
    }
}
