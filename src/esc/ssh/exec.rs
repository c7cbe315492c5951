//! Running a command on a channel: [`SshSession::run`] with a timeout and bounded output, and
//! `ExecChannel`, the one place where a channel's messages are read — standard output handed
//! on, standard error kept up to a cap (the rest counted), the exit status or signal recorded.
//! Commands and transfers alike go through it.
//!
//! Owns: command limits, exit statuses, command output, the channel guard that kills an
//! abandoned command. Imports the transport's session and error, [`crate::esc::remote`] and the
//! leaves.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use russh::client::Msg;
use russh::{Channel, ChannelMsg, Sig};
use tokio::time::Instant;

use crate::esc::remote::CommandLine;
use crate::esc::ssh::error::SshError;
use crate::esc::ssh::session::SshSession;
use crate::esc::text::{clip, quote_capped, quote_output};
use crate::esc::vocab::NodeAddr;

/// How long [`SshSession::run`] waits for the rest of the output once the command has exited.
const EXIT_LINGER: Duration = Duration::from_secs(2);

/// Limits of one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandLimits {
    /// Time from channel open to exit status.
    pub timeout: Duration,
    /// The most stdout kept; more is an [`SshError::OutputTooLarge`] error.
    pub max_stdout: usize,
    /// The most stderr kept; the rest is dropped and counted
    /// ([`CommandOutput::stderr_truncated`]).
    pub max_stderr: usize,
}

impl Default for CommandLimits {
    fn default() -> Self {
        CommandLimits {
            timeout: Duration::from_secs(120),
            max_stdout: 1 << 20,
            max_stderr: 64 << 10,
        }
    }
}

impl CommandLimits {
    /// The default limits with another timeout.
    pub fn with_timeout(timeout: Duration) -> Self {
        CommandLimits {
            timeout,
            ..Default::default()
        }
    }
}

/// How a remote command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(u32),
    /// It was killed by a signal.
    Signal {
        /// The signal name (`KILL`, `TERM`, ...).
        signal: String,
        /// Whether it dumped core.
        core_dumped: bool,
    },
}

impl ExitStatus {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        matches!(self, ExitStatus::Code(0))
    }

    /// The exit code, if it exited.
    pub fn code(&self) -> Option<u32> {
        match self {
            ExitStatus::Code(c) => Some(*c),
            ExitStatus::Signal { .. } => None,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit status {c}"),
            ExitStatus::Signal {
                signal,
                core_dumped,
            } => write!(
                f,
                "killed by signal {signal}{}",
                if *core_dumped { " (core dumped)" } else { "" }
            ),
        }
    }
}

/// What a command returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandOutput {
    /// How it ended.
    pub exit_status: ExitStatus,
    /// Its standard output (at most [`CommandLimits::max_stdout`] bytes).
    pub stdout: Vec<u8>,
    /// Its standard error (at most [`CommandLimits::max_stderr`] bytes).
    pub stderr: Vec<u8>,
    /// When stderr was longer than the limit: how many bytes were dropped. A command that
    /// succeeded may still have said something there that nobody read; see
    /// [`CommandOutput::warnings`].
    pub stderr_truncated: Option<u64>,
}

impl CommandOutput {
    /// Stdout, lossily decoded.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Stderr, lossily decoded.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// Stderr quoted for a message, counting the dropped bytes in what was cut.
    pub fn stderr_quoted(&self) -> String {
        quote_capped(&self.stderr, self.stderr_truncated.unwrap_or(0))
    }

    /// What the caller should hear about even when the command succeeded: today, stderr cut at
    /// its limit.
    pub fn warnings(&self) -> Vec<String> {
        self.stderr_truncated
            .map(|n| {
                format!(
                    "stderr exceeded its limit: {} bytes kept, {n} bytes dropped unread",
                    self.stderr.len()
                )
            })
            .into_iter()
            .collect()
    }
}

/// Stops the remote command (TERM, then KILL after a short grace, as sshd delivers signals to
/// the session's process group) and closes the channel.
async fn abort_channel(channel: &Channel<Box<Msg>>) {
    let _ = channel.signal(Sig::TERM).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = channel.signal(Sig::KILL).await;
    let _ = channel.close().await;
}

/// A channel that is killed and closed when dropped before it finished — e.g. when the caller
/// drops a transfer or cancels a command — so the remote command does not run on unattended.
struct ChannelGuard {
    channel: Option<Channel<Box<Msg>>>,
    finished: bool,
}

impl ChannelGuard {
    fn get(&mut self) -> &mut Channel<Box<Msg>> {
        self.channel.as_mut().expect("channel present until drop")
    }
}

impl Drop for ChannelGuard {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let (Some(channel), Ok(rt)) =
            (self.channel.take(), tokio::runtime::Handle::try_current())
        {
            rt.spawn(async move { abort_channel(&channel).await });
        }
    }
}

fn sig_name(sig: &Sig) -> String {
    match sig {
        Sig::Custom(name) => name.clone(),
        other => format!("{other:?}"),
    }
}

/// How long [`ExecChannel::next`] waits.
#[derive(Clone, Copy, Debug)]
pub(super) enum Wait {
    /// Until this instant, whatever arrives in between (a command's overall deadline).
    Until(Instant),
    /// This long after the last message of any kind (a transfer's stall detection).
    Idle(Duration),
}

/// What one step of reading a channel brought.
#[derive(Debug)]
pub(super) enum Event {
    /// A piece of standard output.
    Stdout(Bytes),
    /// The exit status or signal arrived (see [`ExecChannel::exit`]).
    Exited,
    /// The server refused to run the command.
    Refused,
    /// The channel closed, or the connection ended.
    Closed,
    /// Nothing (or only stderr, for [`Wait::Until`]) arrived in time.
    TimedOut,
}

/// A command's channel, with what it said on stderr and how it ended.
pub(super) struct ExecChannel {
    guard: ChannelGuard,
    node: NodeAddr,
    /// The command line as sent, clipped: for errors.
    command: String,
    exit: Option<ExitStatus>,
    stderr: Vec<u8>,
    max_stderr: usize,
    stderr_dropped: u64,
    /// Bytes moved over the channel (stdout received plus stdin sent), for errors.
    moved: u64,
}

impl SshSession {
    /// Starts `cmd` on a new channel, within `open_within`. Stderr is kept up to `max_stderr`
    /// bytes.
    pub(super) async fn start(
        &self,
        cmd: &CommandLine,
        max_stderr: usize,
        open_within: Duration,
    ) -> Result<ExecChannel, SshError> {
        let line = self.render(cmd);
        let command = clip(&line, 200);
        let channel = tokio::time::timeout(open_within, self.open_channel(&line))
            .await
            .map_err(|_| SshError::CommandTimeout {
                node: self.node().clone(),
                command: command.clone(),
                after: open_within,
            })??;
        Ok(ExecChannel {
            guard: ChannelGuard {
                channel: Some(channel),
                finished: false,
            },
            node: self.node().clone(),
            command,
            exit: None,
            stderr: Vec::new(),
            max_stderr,
            stderr_dropped: 0,
            moved: 0,
        })
    }

    /// Runs a command and collects its output, within `limits`. Its stdin is closed at once
    /// (a prompt reads end of file rather than waiting).
    ///
    /// A non-zero exit status is not an error here (it is in [`CommandOutput::exit_status`]);
    /// a timeout, oversized stdout, a refused exec and a connection lost before the exit status
    /// are.
    pub async fn run(
        &self,
        cmd: &CommandLine,
        limits: &CommandLimits,
    ) -> Result<CommandOutput, SshError> {
        let deadline = Instant::now() + limits.timeout;
        let mut channel = self.start(cmd, limits.max_stderr, limits.timeout).await?;
        // No input, ever: a command that prompts (a password, a confirmation) reads end of
        // file and fails at once instead of hanging until the timeout.
        channel.send_eof().await?;
        channel
            .collect(deadline, limits.timeout, limits.max_stdout)
            .await
    }

    /// Runs a command that must exit 0; otherwise [`SshError::RemoteFailed`] with its stderr.
    pub async fn run_ok(
        &self,
        cmd: &CommandLine,
        limits: &CommandLimits,
    ) -> Result<CommandOutput, SshError> {
        let out = self.run(cmd, limits).await?;
        if out.exit_status.success() {
            Ok(out)
        } else {
            Err(SshError::RemoteFailed {
                node: self.node().clone(),
                command: clip(&self.render(cmd), 200),
                exit: out.exit_status.to_string(),
                stderr: out.stderr_quoted(),
            })
        }
    }
}

impl ExecChannel {
    /// Reads the channel until something the caller must act on: stderr is kept here (up to
    /// its cap, the rest counted), the exit status recorded and reported, stdout handed on.
    pub(super) async fn next(&mut self, wait: Wait) -> Event {
        loop {
            let until = match wait {
                Wait::Until(t) => t,
                Wait::Idle(d) => Instant::now() + d,
            };
            let msg = match tokio::time::timeout_at(until, self.guard.get().wait()).await {
                Ok(msg) => msg,
                Err(_) => return Event::TimedOut,
            };
            match msg {
                Some(ChannelMsg::Data { data }) => {
                    self.moved += data.len() as u64;
                    return Event::Stdout(data);
                }
                Some(ChannelMsg::ExtendedData { data, .. }) => {
                    let room = self.max_stderr.saturating_sub(self.stderr.len());
                    let kept = data.len().min(room);
                    self.stderr.extend_from_slice(&data[..kept]);
                    self.stderr_dropped += (data.len() - kept) as u64;
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => {
                    self.exit = Some(ExitStatus::Code(exit_status));
                    return Event::Exited;
                }
                Some(ChannelMsg::ExitSignal {
                    signal_name,
                    core_dumped,
                    ..
                }) => {
                    self.exit = Some(ExitStatus::Signal {
                        signal: sig_name(&signal_name),
                        core_dumped,
                    });
                    return Event::Exited;
                }
                Some(ChannelMsg::Failure) => return Event::Refused,
                Some(ChannelMsg::Close) | None => {
                    self.guard.finished = true;
                    return Event::Closed;
                }
                Some(_) => {}
            }
        }
    }

    /// Reads the channel to its end: stdout (at most `max_stdout` bytes), stderr and the exit
    /// status, all before `deadline` (`timeout` is what it stands for, for the error). Once the
    /// command has exited, the rest of its output gets [`EXIT_LINGER`].
    pub(super) async fn collect(
        mut self,
        deadline: Instant,
        timeout: Duration,
        max_stdout: usize,
    ) -> Result<CommandOutput, SshError> {
        let mut stdout = Vec::new();
        let mut wait_until = deadline;
        loop {
            match self.next(Wait::Until(wait_until)).await {
                Event::Stdout(data) => {
                    stdout.extend_from_slice(&data);
                    if stdout.len() > max_stdout {
                        self.abort().await;
                        return Err(SshError::OutputTooLarge {
                            node: self.node.clone(),
                            command: self.command.clone(),
                            stream: "stdout",
                            limit: max_stdout,
                            head: quote_output(&stdout),
                        });
                    }
                }
                Event::Exited => wait_until = deadline.min(Instant::now() + EXIT_LINGER),
                Event::Refused => {
                    self.abort().await;
                    return Err(self.refused());
                }
                Event::Closed => break,
                Event::TimedOut if self.exit.is_some() => {
                    // The command exited but something it started (a daemon, on `escadm
                    // restart`) still holds its output open: done. Close the channel without
                    // signalling, so that what it started keeps running.
                    let _ = self.guard.get().close().await;
                    self.guard.finished = true;
                    break;
                }
                Event::TimedOut => {
                    self.abort().await;
                    return Err(self.timed_out(timeout));
                }
            }
        }
        match self.exit.take() {
            Some(exit_status) => Ok(CommandOutput {
                exit_status,
                stdout,
                stderr: std::mem::take(&mut self.stderr),
                stderr_truncated: (self.stderr_dropped > 0).then_some(self.stderr_dropped),
            }),
            None => Err(self.lost("the channel closed without an exit status")),
        }
    }

    /// Sends stdin data, waiting at most `idle` for the flow-control window.
    pub(super) async fn send(&mut self, data: Bytes, idle: Duration) -> Result<(), SshError> {
        let n = data.len() as u64;
        match tokio::time::timeout(idle, self.guard.get().data_bytes(data)).await {
            Ok(Ok(())) => {
                self.moved += n;
                Ok(())
            }
            Ok(Err(e)) => Err(self.lost(format!("sending data failed: {e}"))),
            Err(_) => {
                self.abort().await;
                Err(self.stalled(idle))
            }
        }
    }

    /// Closes stdin.
    pub(super) async fn send_eof(&mut self) -> Result<(), SshError> {
        let sent = self.guard.get().eof().await;
        sent.map_err(|e| self.lost(format!("sending EOF failed: {e}")))
    }

    /// Kills the command and closes the channel.
    pub(super) async fn abort(&mut self) {
        abort_channel(self.guard.get()).await;
        self.guard.finished = true;
    }

    /// How the command ended, once [`Event::Exited`] was seen.
    pub(super) fn exit(&self) -> Option<&ExitStatus> {
        self.exit.as_ref()
    }

    /// The node, for errors the caller builds.
    pub(super) fn node(&self) -> &NodeAddr {
        &self.node
    }

    pub(super) fn timed_out(&self, after: Duration) -> SshError {
        SshError::CommandTimeout {
            node: self.node.clone(),
            command: self.command.clone(),
            after,
        }
    }

    pub(super) fn stalled(&self, after: Duration) -> SshError {
        SshError::StreamStalled {
            node: self.node.clone(),
            command: self.command.clone(),
            after,
        }
    }

    pub(super) fn lost(&self, detail: impl Into<String>) -> SshError {
        SshError::ConnectionLost {
            node: self.node.clone(),
            command: self.command.clone(),
            detail: detail.into(),
            received: self.moved,
        }
    }

    pub(super) fn refused(&self) -> SshError {
        SshError::Exec {
            node: self.node.clone(),
            command: self.command.clone(),
            message: "the server refused to run the command".into(),
        }
    }

    /// The command exited non-zero (or was killed): its stderr, quoted.
    pub(super) fn failed(&self, exit: &ExitStatus) -> SshError {
        SshError::RemoteFailed {
            node: self.node.clone(),
            command: self.command.clone(),
            exit: exit.to_string(),
            stderr: quote_capped(&self.stderr, self.stderr_dropped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_display() {
        assert_eq!(ExitStatus::Code(3).to_string(), "exit status 3");
        assert!(ExitStatus::Code(0).success());
        assert_eq!(
            ExitStatus::Signal {
                signal: "KILL".into(),
                core_dumped: false
            }
            .to_string(),
            "killed by signal KILL"
        );
    }

    #[test]
    fn truncated_stderr_is_a_warning_and_counted_in_quotes() {
        let out = CommandOutput {
            exit_status: ExitStatus::Code(0),
            stdout: Vec::new(),
            stderr: b"warning".to_vec(),
            stderr_truncated: Some(1000),
        };
        assert_eq!(
            out.warnings(),
            ["stderr exceeded its limit: 7 bytes kept, 1000 bytes dropped unread"]
        );
        assert_eq!(out.stderr_quoted(), "\"warning\" (+1000 more bytes)");
        let clean = CommandOutput {
            stderr_truncated: None,
            ..out
        };
        assert!(clean.warnings().is_empty());
    }
}
