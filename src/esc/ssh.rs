//! The SSH transport: one authenticated connection per ESC node, commands with timeouts and
//! bounded output, and streaming file transfer with backpressure and truncation detection.
//!
//! - Pure Rust ([`russh`] on aws-lc-rs); no `ssh` binary needed.
//! - Host keys are always verified against known_hosts content ([`KnownHosts`]); there is no
//!   accept-any mode.
//! - Credentials ([`SshCredentials`]) are held in zeroizing buffers, redacted in `Debug`, and
//!   only ever handed to the SSH authentication layer — never to a command line, a log or an
//!   error.
//! - A file is read with `cat` after a `stat` of its size; it counts as complete only when the
//!   byte count matches, `cat` exited 0 and the channel closed cleanly. A dropped connection is
//!   therefore always an error, never a short file.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::{BoxStream, StreamExt};
use russh::client::{self, AuthResult, Handle, Msg};
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{Channel, ChannelMsg, Disconnect, Sig, cipher};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufRead, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;
use tokio_util::io::StreamReader;
use zeroize::Zeroizing;

use crate::esc::error::{HostKeyError, SshError, clip, quote_output};
use crate::esc::known_hosts::{KnownHosts, fingerprint};
use crate::esc::parse::{Sha256Digest, parse_stat_size};
use crate::esc::remote::{CommandLine, RemotePath};

/// Where to connect, and as whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshTarget {
    /// Host name or IP address, as written in known_hosts.
    pub host: String,
    /// TCP port (22 by default on real nodes).
    pub port: u16,
    /// Login user.
    pub user: String,
}

impl SshTarget {
    /// A target.
    pub fn new(host: impl Into<String>, port: u16, user: impl Into<String>) -> Self {
        SshTarget {
            host: host.into(),
            port,
            user: user.into(),
        }
    }
}

impl fmt::Display for SshTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{} port {}", self.user, self.host, self.port)
    }
}

/// How to authenticate. Holds secrets: zeroized on drop, redacted in `Debug`.
#[derive(Clone)]
pub enum SshCredentials {
    /// A private key (OpenSSH, PKCS#1/PKCS#8 PEM, PuTTY; ed25519, ECDSA or RSA), optionally
    /// passphrase-protected.
    PrivateKey {
        /// The key file's bytes, as loaded from a Secret.
        key: Zeroizing<Vec<u8>>,
        /// The passphrase, if the key is encrypted.
        passphrase: Option<Zeroizing<String>>,
    },
    /// A password.
    Password(Zeroizing<String>),
}

impl SshCredentials {
    /// Private key credentials from the key file's bytes.
    pub fn private_key(key: impl Into<Vec<u8>>, passphrase: Option<String>) -> Self {
        SshCredentials::PrivateKey {
            key: Zeroizing::new(key.into()),
            passphrase: passphrase.map(Zeroizing::new),
        }
    }

    /// Password credentials.
    pub fn password(password: impl Into<String>) -> Self {
        SshCredentials::Password(Zeroizing::new(password.into()))
    }

    fn method(&self) -> &'static str {
        match self {
            SshCredentials::PrivateKey { .. } => "publickey",
            SshCredentials::Password(_) => "password",
        }
    }
}

impl fmt::Debug for SshCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SshCredentials::PrivateKey { key, passphrase } => f
                .debug_struct("PrivateKey")
                .field("key", &format_args!("<redacted {} bytes>", key.len()))
                .field(
                    "passphrase",
                    &format_args!(
                        "{}",
                        if passphrase.is_some() {
                            "<redacted>"
                        } else {
                            "None"
                        }
                    ),
                )
                .finish(),
            SshCredentials::Password(_) => f.write_str("Password(<redacted>)"),
        }
    }
}

/// Limits of one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandLimits {
    /// Time from channel open to exit status.
    pub timeout: Duration,
    /// The most stdout kept; more is an [`SshError::OutputTooLarge`] error.
    pub max_stdout: usize,
    /// The most stderr kept; the rest is dropped ([`CommandOutput::stderr_truncated`]).
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

/// Connection-wide settings.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    /// TCP connect plus SSH handshake (incl. host key check).
    pub connect_timeout: Duration,
    /// User authentication.
    pub auth_timeout: Duration,
    /// Send a keepalive after this long without traffic from the server.
    pub keepalive_interval: Duration,
    /// Close the connection after this many unanswered keepalives.
    pub keepalive_max: usize,
    /// Prefix every command with `sudo -n --` (non-interactive sudo).
    pub sudo: bool,
    /// A transfer fails when no data arrives for this long.
    pub stream_idle_timeout: Duration,
    /// SSH channel window (flow control) in bytes.
    pub window_size: u32,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            connect_timeout: Duration::from_secs(20),
            auth_timeout: Duration::from_secs(20),
            keepalive_interval: Duration::from_secs(15),
            keepalive_max: 3,
            sudo: false,
            stream_idle_timeout: Duration::from_secs(120),
            window_size: 8 << 20,
        }
    }
}

/// How long [`SshSession::run`] waits for the rest of the output once the command has exited.
const EXIT_LINGER: Duration = Duration::from_secs(2);

/// A completed download ([`SshSession::download_hashed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Downloaded {
    /// The byte count (equal to the file's size).
    pub bytes: u64,
    /// The SHA-256 of the bytes received.
    pub sha256: Sha256Digest,
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
    /// True when stderr was longer than the limit and cut.
    pub stderr_truncated: bool,
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
}

/// Decoded credentials, ready for the authentication request.
enum AuthMaterial<'a> {
    Key(Arc<russh::keys::PrivateKey>),
    Password(&'a str),
}

/// Errors inside russh's handler; a refused host key keeps its full description.
#[derive(Debug)]
enum HandlerError {
    Russh(russh::Error),
    HostKey(HostKeyError),
}

impl From<russh::Error> for HandlerError {
    fn from(e: russh::Error) -> Self {
        HandlerError::Russh(e)
    }
}

struct Verifier {
    host: String,
    port: u16,
    known_hosts: Arc<KnownHosts>,
}

impl client::Handler for Verifier {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                match self.known_hosts.verify(&self.host, self.port, key) {
                    Ok(()) => {
                        tracing::debug!(host = %self.host, port = self.port, fingerprint = %fingerprint(key), "host key verified");
                        Ok(true)
                    }
                    Err(e) => Err(HandlerError::HostKey(e)),
                }
            }
            PublicKeyOrCertificate::Certificate(cert) => Err(HandlerError::HostKey(
                HostKeyError::CertificateUnsupported {
                    host: self.host.clone(),
                    port: self.port,
                    fingerprint: cert
                        .public_key()
                        .fingerprint(russh::keys::HashAlg::Sha256)
                        .to_string(),
                },
            )),
        }
    }
}

/// An authenticated SSH connection to one node. Cheap to share by reference: commands and
/// transfers each open their own channel on it, so one connection serves a whole sequence.
pub struct SshSession {
    handle: Handle<Verifier>,
    target: SshTarget,
    options: SessionOptions,
}

impl fmt::Debug for SshSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshSession")
            .field("target", &self.target)
            .field("sudo", &self.options.sudo)
            .finish_non_exhaustive()
    }
}

fn russh_config(
    options: &SessionOptions,
    known_hosts: &KnownHosts,
    target: &SshTarget,
) -> client::Config {
    // AES-GCM first: hardware-accelerated through aws-lc-rs, the fastest choice for bulk
    // transfers; ChaCha20-Poly1305 stays as a fallback.
    let cipher = Cow::Owned(vec![
        cipher::AES_256_GCM,
        cipher::AES_128_GCM,
        cipher::CHACHA20_POLY1305,
        cipher::AES_256_CTR,
        cipher::AES_128_CTR,
    ]);
    // Ask first for the host key types known_hosts can vouch for (as OpenSSH does), then the
    // rest, so that a server without any of them still shows its key and the refusal names it.
    let defaults = russh::Preferred::default();
    let mut key = known_hosts.algorithms_for(&target.host, target.port);
    for alg in defaults.key.iter() {
        if !key.contains(alg) {
            key.push(alg.clone());
        }
    }
    let preferred = russh::Preferred {
        cipher,
        key: Cow::Owned(key),
        ..defaults
    };
    client::Config {
        preferred,
        keepalive_interval: Some(options.keepalive_interval),
        keepalive_max: options.keepalive_max,
        window_size: options.window_size,
        nodelay: true,
        ..Default::default()
    }
}

fn decode_key(key: &[u8], passphrase: Option<&str>) -> Result<russh::keys::PrivateKey, SshError> {
    let text = std::str::from_utf8(key).map_err(|_| SshError::InvalidPrivateKey {
        reason: "the key is not text (expected an OpenSSH or PEM private key file)".into(),
    })?;
    russh::keys::decode_secret_key(text, passphrase).map_err(|e| {
        let reason = match (&e, passphrase) {
            (russh::keys::Error::KeyIsEncrypted, None) => {
                "the key is encrypted and no passphrase was given".to_owned()
            }
            (_, Some(_)) if text.contains("ENCRYPTED") || text.contains("BEGIN OPENSSH") => {
                format!(
                    "wrong passphrase, or not a valid key ({})",
                    key_error_kind(&e)
                )
            }
            _ => format!("not a valid private key ({})", key_error_kind(&e)),
        };
        SshError::InvalidPrivateKey { reason }
    })
}

/// A description of a key decoding error that cannot contain key material.
fn key_error_kind(e: &russh::keys::Error) -> &'static str {
    use russh::keys::Error as E;
    match e {
        E::CouldNotReadKey => "could not read key",
        E::UnsupportedKeyType { .. } => "unsupported key type",
        E::KeyIsEncrypted => "key is encrypted",
        E::KeyIsCorrupt => "key is corrupt",
        E::SshKey(_) => "invalid OpenSSH key or passphrase",
        _ => "decoding failed",
    }
}

impl SshSession {
    /// Connects, verifies the host key against `known_hosts`, and authenticates.
    ///
    /// Errors name the host and port, and for a refused host key the offered key's SHA256
    /// fingerprint; none ever contains the credentials.
    pub async fn connect(
        target: SshTarget,
        credentials: &SshCredentials,
        known_hosts: &KnownHosts,
        options: SessionOptions,
    ) -> Result<Self, SshError> {
        // Decode the key first: a bad Secret is reported without touching the network.
        let material = match credentials {
            SshCredentials::PrivateKey { key, passphrase } => AuthMaterial::Key(Arc::new(
                decode_key(key, passphrase.as_ref().map(|p| p.as_str()))?,
            )),
            SshCredentials::Password(pw) => AuthMaterial::Password(pw.as_str()),
        };
        let config = Arc::new(russh_config(&options, known_hosts, &target));
        let verifier = Verifier {
            host: target.host.clone(),
            port: target.port,
            known_hosts: Arc::new(known_hosts.clone()),
        };
        let host = target.host.clone();
        let port = target.port;
        let connecting = async {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|source| SshError::Connect {
                    host: host.clone(),
                    port,
                    source,
                })?;
            let _ = tcp.set_nodelay(true);
            client::connect_stream(config, tcp, verifier)
                .await
                .map_err(|e| match e {
                    HandlerError::HostKey(hk) => SshError::HostKey(hk),
                    HandlerError::Russh(e) => SshError::Handshake {
                        host: host.clone(),
                        port,
                        message: e.to_string(),
                    },
                })
        };
        let mut handle = tokio::time::timeout(options.connect_timeout, connecting)
            .await
            .map_err(|_| SshError::ConnectTimeout {
                host: target.host.clone(),
                port,
                after: options.connect_timeout,
            })??;

        let auth = async {
            match material {
                AuthMaterial::Password(pw) => {
                    handle.authenticate_password(target.user.clone(), pw).await
                }
                AuthMaterial::Key(key) => {
                    let hash = if key.algorithm().is_rsa() {
                        handle.best_supported_rsa_hash().await?.flatten()
                    } else {
                        None
                    };
                    handle
                        .authenticate_publickey(
                            target.user.clone(),
                            PrivateKeyWithHashAlg::new(key, hash),
                        )
                        .await
                }
            }
        };
        let result = tokio::time::timeout(options.auth_timeout, auth)
            .await
            .map_err(|_| SshError::AuthTimeout {
                host: target.host.clone(),
                port,
                user: target.user.clone(),
                after: options.auth_timeout,
            })?
            .map_err(|e| SshError::Handshake {
                host: target.host.clone(),
                port,
                message: format!("during authentication: {e}"),
            })?;
        match result {
            AuthResult::Success => {}
            AuthResult::Failure {
                remaining_methods, ..
            } => {
                let accepted = remaining_methods
                    .iter()
                    .map(<&'static str>::from)
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(SshError::AuthRejected {
                    host: target.host.clone(),
                    port,
                    user: target.user.clone(),
                    method: credentials.method(),
                    accepted: if accepted.is_empty() {
                        "none".into()
                    } else {
                        accepted
                    },
                });
            }
        }
        tracing::debug!(target = %target, "SSH session established");
        Ok(SshSession {
            handle,
            target,
            options,
        })
    }

    /// The node this session is connected to.
    pub fn target(&self) -> &SshTarget {
        &self.target
    }

    /// The session's options.
    pub fn options(&self) -> &SessionOptions {
        &self.options
    }

    /// True once the connection is gone (dropped by the peer, keepalive timeout, closed).
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Closes the connection politely.
    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
    }

    fn lost(&self, command: &str, detail: impl Into<String>, received: u64) -> SshError {
        SshError::ConnectionLost {
            host: self.target.host.clone(),
            port: self.target.port,
            command: clip(command, 200),
            detail: detail.into(),
            received,
        }
    }

    async fn open_exec(&self, cmd: &CommandLine) -> Result<Channel<Msg>, SshError> {
        let line = cmd.render(self.options.sudo);
        tracing::debug!(target = %self.target, command = %line, "exec");
        let exec_err = |message: String| SshError::Exec {
            host: self.target.host.clone(),
            port: self.target.port,
            command: clip(&line, 200),
            message,
        };
        if self.handle.is_closed() {
            return Err(self.lost(&line, "the connection is closed", 0));
        }
        let channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| exec_err(format!("cannot open a channel: {e}")))?;
        channel
            .exec(true, line.as_bytes())
            .await
            .map_err(|e| exec_err(format!("exec request failed: {e}")))?;
        Ok(channel)
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
        let line = cmd.render(self.options.sudo);
        let mut channel = ChannelGuard::new(
            tokio::time::timeout_at(deadline, self.open_exec(cmd))
                .await
                .map_err(|_| self.timeout_err(&line, limits.timeout))??,
        );
        // No input, ever: a command that prompts (a password, a confirmation) reads end of
        // file and fails at once instead of hanging until the timeout.
        if let Err(e) = channel.get().eof().await {
            return Err(self.lost(&line, format!("sending EOF failed: {e}"), 0));
        }
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let mut stderr_truncated = false;
        let mut exit = None;
        let mut wait_until = deadline;
        loop {
            let msg = match tokio::time::timeout_at(wait_until, channel.get().wait()).await {
                Ok(m) => m,
                Err(_) if exit.is_some() => {
                    // The command exited but something it started (a daemon, on `escadm
                    // restart`) still holds its output open: done. Close the channel without
                    // signalling, so that what it started keeps running.
                    let _ = channel.get().close().await;
                    channel.finished();
                    break;
                }
                Err(_) => {
                    channel.abort().await;
                    return Err(self.timeout_err(&line, limits.timeout));
                }
            };
            match msg {
                Some(ChannelMsg::Data { data }) => {
                    if stdout.len() + data.len() > limits.max_stdout {
                        channel.abort().await;
                        stdout.extend_from_slice(&data);
                        return Err(SshError::OutputTooLarge {
                            host: self.target.host.clone(),
                            port: self.target.port,
                            command: clip(&line, 200),
                            stream: "stdout",
                            limit: limits.max_stdout,
                            head: quote_output(&stdout),
                        });
                    }
                    stdout.extend_from_slice(&data);
                }
                Some(ChannelMsg::ExtendedData { data, .. }) => {
                    let room = limits.max_stderr.saturating_sub(stderr.len());
                    if data.len() > room {
                        stderr_truncated = true;
                    }
                    stderr.extend_from_slice(&data[..data.len().min(room)]);
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => {
                    exit = Some(ExitStatus::Code(exit_status));
                    wait_until = deadline.min(Instant::now() + EXIT_LINGER);
                }
                Some(ChannelMsg::ExitSignal {
                    signal_name,
                    core_dumped,
                    ..
                }) => {
                    exit = Some(ExitStatus::Signal {
                        signal: sig_name(&signal_name),
                        core_dumped,
                    });
                    wait_until = deadline.min(Instant::now() + EXIT_LINGER);
                }
                Some(ChannelMsg::Failure) => {
                    channel.abort().await;
                    return Err(SshError::Exec {
                        host: self.target.host.clone(),
                        port: self.target.port,
                        command: clip(&line, 200),
                        message: "the server refused to run the command".into(),
                    });
                }
                Some(ChannelMsg::Close) | None => {
                    channel.finished();
                    break;
                }
                Some(_) => {}
            }
        }
        match exit {
            Some(exit_status) => Ok(CommandOutput {
                exit_status,
                stdout,
                stderr,
                stderr_truncated,
            }),
            None => Err(self.lost(
                &line,
                "the channel closed without an exit status",
                stdout.len() as u64,
            )),
        }
    }

    fn timeout_err(&self, line: &str, after: Duration) -> SshError {
        SshError::CommandTimeout {
            host: self.target.host.clone(),
            port: self.target.port,
            command: clip(line, 200),
            after,
        }
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
                host: self.target.host.clone(),
                port: self.target.port,
                command: clip(&cmd.render(self.options.sudo), 200),
                exit: out.exit_status.to_string(),
                stderr: quote_output(&out.stderr),
            })
        }
    }

    /// The size of a remote file (`stat -c %s`).
    pub async fn file_size(&self, path: &RemotePath) -> Result<u64, SshError> {
        let out = self
            .run_ok(
                &CommandLine::stat_size(path),
                &CommandLimits::with_timeout(Duration::from_secs(30)),
            )
            .await?;
        parse_stat_size(&out.stdout_text()).map_err(|source| SshError::UnexpectedOutput {
            host: self.target.host.clone(),
            port: self.target.port,
            source,
        })
    }

    /// Opens a remote file for streaming. The returned reader yields the file's bytes and, if
    /// the transfer is cut short in any way (connection dropped, `cat` failed or killed, size
    /// changed, stalled), an error instead of a clean end of file.
    ///
    /// Backpressure: data is pulled from the connection only as fast as the reader is read.
    pub async fn read_file(&self, path: &RemotePath) -> Result<RemoteFileReader, SshError> {
        let size = self.file_size(path).await?;
        let chunks = self.chunks(path, size).await?;
        let stream = chunks.map(|r| r.map_err(io::Error::other)).boxed();
        Ok(RemoteFileReader {
            inner: StreamReader::new(stream),
            size,
        })
    }

    /// Streams a remote file into `sink` and returns the byte count; the count is only returned
    /// when the whole file arrived (see [`SshSession::read_file`]). `sink` is flushed, not shut
    /// down.
    pub async fn download_to<W: AsyncWrite + Unpin>(
        &self,
        path: &RemotePath,
        sink: &mut W,
    ) -> Result<u64, SshError> {
        self.download_inner(path, sink, None).await
    }

    /// [`SshSession::download_to`] that also computes the SHA-256 of the bytes as they pass, to
    /// compare with the node's own `sha256sum` ([`crate::esc::EscNode::sha256`]) or an
    /// artifact's recorded digest.
    pub async fn download_hashed<W: AsyncWrite + Unpin>(
        &self,
        path: &RemotePath,
        sink: &mut W,
    ) -> Result<Downloaded, SshError> {
        let mut hasher = Sha256::new();
        let bytes = self.download_inner(path, sink, Some(&mut hasher)).await?;
        Ok(Downloaded {
            bytes,
            sha256: Sha256Digest(hasher.finalize().into()),
        })
    }

    async fn download_inner<W: AsyncWrite + Unpin>(
        &self,
        path: &RemotePath,
        sink: &mut W,
        mut hasher: Option<&mut Sha256>,
    ) -> Result<u64, SshError> {
        let size = self.file_size(path).await?;
        let mut chunks = self.chunks(path, size).await?;
        let mut total = 0u64;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            if let Some(h) = hasher.as_mut() {
                h.update(&chunk);
            }
            sink.write_all(&chunk)
                .await
                .map_err(|source| SshError::LocalIo {
                    context: format!("writing {path} from {}", self.target.host),
                    source,
                })?;
            total += chunk.len() as u64;
        }
        sink.flush().await.map_err(|source| SshError::LocalIo {
            context: format!("flushing {path} from {}", self.target.host),
            source,
        })?;
        Ok(total)
    }

    async fn chunks(
        &self,
        path: &RemotePath,
        expected: u64,
    ) -> Result<BoxStream<'static, Result<Bytes, SshError>>, SshError> {
        let cmd = CommandLine::cat(path);
        let channel = tokio::time::timeout(self.options.stream_idle_timeout, self.open_exec(&cmd))
            .await
            .map_err(|_| {
                self.timeout_err(
                    &cmd.render(self.options.sudo),
                    self.options.stream_idle_timeout,
                )
            })??;
        let state = ChunkState {
            channel: Some(ChannelGuard::new(channel)),
            expected,
            received: 0,
            exit: None,
            stderr: Vec::new(),
            idle: self.options.stream_idle_timeout,
            host: self.target.host.clone(),
            port: self.target.port,
            command: clip(&cmd.render(self.options.sudo), 200),
            path: path.to_string(),
        };
        Ok(futures::stream::unfold(state, ChunkState::next).boxed())
    }

    /// Writes `source` to a remote file (mode 0600), with backpressure, and returns the byte
    /// count. The data goes to `PATH.partial` first and is renamed to `PATH` only after `cat`
    /// exited 0 and the remote size equals the bytes sent; on failure the partial file is
    /// removed (best effort) and `PATH` is untouched.
    pub async fn upload_from<R: AsyncRead + Unpin>(
        &self,
        source: &mut R,
        path: &RemotePath,
    ) -> Result<u64, SshError> {
        let partial = path.with_suffix(".partial")?;
        let result = self.upload_partial(source, &partial).await;
        let result = match result {
            Ok(sent) => match self.file_size(&partial).await {
                Ok(size) if size == sent => self
                    .run_ok(
                        &CommandLine::rename(&partial, path),
                        &CommandLimits::with_timeout(Duration::from_secs(30)),
                    )
                    .await
                    .map(|_| sent),
                Ok(size) => Err(SshError::SizeMismatch {
                    host: self.target.host.clone(),
                    port: self.target.port,
                    path: partial.to_string(),
                    expected: sent,
                    actual: size,
                }),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        if result.is_err() && !self.is_closed() {
            let _ = self
                .run(
                    &CommandLine::remove(&partial),
                    &CommandLimits::with_timeout(Duration::from_secs(10)),
                )
                .await;
        }
        result
    }

    async fn upload_partial<R: AsyncRead + Unpin>(
        &self,
        source: &mut R,
        partial: &RemotePath,
    ) -> Result<u64, SshError> {
        let cmd = CommandLine::write_stdin_to(partial);
        let line = cmd.render(self.options.sudo);
        let idle = self.options.stream_idle_timeout;
        let mut channel = ChannelGuard::new(
            tokio::time::timeout(idle, self.open_exec(&cmd))
                .await
                .map_err(|_| self.timeout_err(&line, idle))??,
        );
        let mut sent = 0u64;
        loop {
            let mut buf = BytesMut::with_capacity(256 << 10);
            let n = source
                .read_buf(&mut buf)
                .await
                .map_err(|source| SshError::LocalIo {
                    context: format!("reading the data for {partial}"),
                    source,
                })?;
            if n == 0 {
                break;
            }
            match tokio::time::timeout(idle, channel.get().data_bytes(buf.freeze())).await {
                Ok(Ok(())) => sent += n as u64,
                Ok(Err(e)) => {
                    return Err(self.lost(&line, format!("sending data failed: {e}"), sent));
                }
                Err(_) => {
                    channel.abort().await;
                    return Err(SshError::StreamStalled {
                        host: self.target.host.clone(),
                        port: self.target.port,
                        command: clip(&line, 200),
                        after: idle,
                    });
                }
            }
        }
        channel
            .get()
            .eof()
            .await
            .map_err(|e| self.lost(&line, format!("sending EOF failed: {e}"), sent))?;
        let mut exit = None;
        let mut stderr = Vec::new();
        loop {
            match tokio::time::timeout(idle, channel.get().wait()).await {
                Err(_) => {
                    channel.abort().await;
                    return Err(self.timeout_err(&line, idle));
                }
                Ok(Some(ChannelMsg::ExitStatus { exit_status })) => {
                    exit = Some(ExitStatus::Code(exit_status))
                }
                Ok(Some(ChannelMsg::ExitSignal {
                    signal_name,
                    core_dumped,
                    ..
                })) => {
                    exit = Some(ExitStatus::Signal {
                        signal: sig_name(&signal_name),
                        core_dumped,
                    })
                }
                Ok(Some(ChannelMsg::ExtendedData { data, .. })) => {
                    if stderr.len() < 4096 {
                        stderr.extend_from_slice(&data);
                    }
                }
                Ok(Some(ChannelMsg::Close)) | Ok(None) => {
                    channel.finished();
                    break;
                }
                Ok(Some(_)) => {}
            }
        }
        match exit {
            Some(e) if e.success() => Ok(sent),
            Some(e) => Err(SshError::RemoteFailed {
                host: self.target.host.clone(),
                port: self.target.port,
                command: clip(&line, 200),
                exit: e.to_string(),
                stderr: quote_output(&stderr),
            }),
            None => Err(self.lost(&line, "the channel closed without an exit status", sent)),
        }
    }
}

/// Stops the remote command (TERM, then KILL after a short grace, as sshd delivers signals to
/// the session's process group) and closes the channel.
async fn abort_channel(channel: &Channel<Msg>) {
    let _ = channel.signal(Sig::TERM).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = channel.signal(Sig::KILL).await;
    let _ = channel.close().await;
}

/// A channel that is killed and closed when dropped before it finished — e.g. when the caller
/// drops a transfer or cancels a command — so the remote command does not run on unattended.
struct ChannelGuard {
    channel: Option<Channel<Msg>>,
    finished: bool,
}

impl ChannelGuard {
    fn new(channel: Channel<Msg>) -> Self {
        ChannelGuard {
            channel: Some(channel),
            finished: false,
        }
    }

    fn get(&mut self) -> &mut Channel<Msg> {
        self.channel.as_mut().expect("channel present until drop")
    }

    /// The channel closed (or was aborted): nothing to clean up on drop.
    fn finished(&mut self) {
        self.finished = true;
    }

    async fn abort(&mut self) {
        abort_channel(self.get()).await;
        self.finished = true;
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

struct ChunkState {
    channel: Option<ChannelGuard>,
    expected: u64,
    received: u64,
    exit: Option<ExitStatus>,
    stderr: Vec<u8>,
    idle: Duration,
    host: String,
    port: u16,
    command: String,
    path: String,
}

impl ChunkState {
    /// The next chunk, or the verdict on the transfer when the channel ends.
    async fn next(mut self) -> Option<(Result<Bytes, SshError>, Self)> {
        let channel = self.channel.as_mut()?;
        loop {
            let msg = match tokio::time::timeout(self.idle, channel.get().wait()).await {
                Ok(m) => m,
                Err(_) => {
                    channel.abort().await;
                    self.channel = None;
                    let err = SshError::StreamStalled {
                        host: self.host.clone(),
                        port: self.port,
                        command: self.command.clone(),
                        after: self.idle,
                    };
                    return Some((Err(err), self));
                }
            };
            match msg {
                Some(ChannelMsg::Data { data }) => {
                    self.received += data.len() as u64;
                    if self.received > self.expected {
                        channel.abort().await;
                        self.channel = None;
                        let err = self.size_mismatch();
                        return Some((Err(err), self));
                    }
                    return Some((Ok(data), self));
                }
                Some(ChannelMsg::ExtendedData { data, .. }) => {
                    if self.stderr.len() < 4096 {
                        self.stderr.extend_from_slice(&data);
                    }
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => {
                    self.exit = Some(ExitStatus::Code(exit_status))
                }
                Some(ChannelMsg::ExitSignal {
                    signal_name,
                    core_dumped,
                    ..
                }) => {
                    self.exit = Some(ExitStatus::Signal {
                        signal: sig_name(&signal_name),
                        core_dumped,
                    })
                }
                Some(ChannelMsg::Close) | None => {
                    channel.finished();
                    self.channel = None;
                    return self.verdict().map(|e| (Err(e), self));
                }
                Some(_) => {}
            }
        }
    }

    fn size_mismatch(&self) -> SshError {
        SshError::SizeMismatch {
            host: self.host.clone(),
            port: self.port,
            path: self.path.clone(),
            expected: self.expected,
            actual: self.received,
        }
    }

    /// `None` when the transfer is complete; the error otherwise.
    fn verdict(&self) -> Option<SshError> {
        match &self.exit {
            None => Some(SshError::ConnectionLost {
                host: self.host.clone(),
                port: self.port,
                command: self.command.clone(),
                detail: format!(
                    "the transfer of {} ended without an exit status ({} of {} bytes received)",
                    self.path, self.received, self.expected
                ),
                received: self.received,
            }),
            Some(e) if !e.success() => Some(SshError::RemoteFailed {
                host: self.host.clone(),
                port: self.port,
                command: self.command.clone(),
                exit: e.to_string(),
                stderr: quote_output(&self.stderr),
            }),
            Some(_) if self.received != self.expected => Some(self.size_mismatch()),
            Some(_) => None,
        }
    }
}

/// A remote file being streamed ([`SshSession::read_file`]): an [`AsyncRead`] that ends with an
/// error, never a clean EOF, when the transfer is incomplete. The error's inner error (via
/// [`io::Error::get_ref`]) is the [`SshError`].
pub struct RemoteFileReader {
    inner: StreamReader<BoxStream<'static, io::Result<Bytes>>, Bytes>,
    size: u64,
}

impl RemoteFileReader {
    /// The file's size, as `stat` reported it before the transfer.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl fmt::Debug for RemoteFileReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteFileReader")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl AsyncRead for RemoteFileReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncBufRead for RemoteFileReader {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        Pin::new(&mut self.get_mut().inner).poll_fill_buf(cx)
    }

    fn consume(mut self: Pin<&mut Self>, amt: usize) {
        Pin::new(&mut self.inner).consume(amt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_debug_is_redacted() {
        let pw = SshCredentials::password("hunter2-secret");
        assert_eq!(format!("{pw:?}"), "Password(<redacted>)");
        let key = SshCredentials::private_key(
            b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA-secret\n".to_vec(),
            Some("pass-secret".into()),
        );
        let dbg = format!("{key:?}");
        assert!(!dbg.contains("secret"), "{dbg}");
        assert!(dbg.contains("redacted"), "{dbg}");
    }

    #[test]
    fn bad_keys_give_clear_errors_without_key_material() {
        let err = decode_key(b"\xff\xfe", None).unwrap_err();
        assert!(err.to_string().contains("not text"), "{err}");
        let err = decode_key(
            b"-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0\n-----END OPENSSH PRIVATE KEY-----\n",
            None,
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("not a valid private key"), "{msg}");
        assert!(!msg.contains("c2VjcmV0"), "{msg}");
    }

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
}
