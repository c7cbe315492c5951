//! [`SshSession`]: one authenticated connection per ESC node — where to connect
//! ([`SshTarget`]), how ([`SessionOptions`]), the handshake with its timeouts, and opening
//! a channel for a command. Running commands is in [`super::exec`], moving files in
//! [`super::transfer`].
//!
//! Owns: the connection. Imports the transport's credentials, host key check and error,
//! [`crate::esc::known_hosts`], [`crate::esc::remote`] and the leaves.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use russh::client::{self, AuthResult, Handle, Msg};
use russh::{Channel, Disconnect, cipher};

use crate::esc::known_hosts::KnownHosts;
use crate::esc::remote::CommandLine;
use crate::esc::ssh::credentials::{SshCredentials, authenticate};
use crate::esc::ssh::error::SshError;
use crate::esc::ssh::host_key::{HandlerError, Verifier, preferred_key_algorithms};
use crate::esc::text::clip;
use crate::esc::vocab::NodeAddr;

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

    /// The node, without the user: what errors name.
    pub fn addr(&self) -> NodeAddr {
        NodeAddr::new(self.host.clone(), self.port)
    }
}

impl fmt::Display for SshTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{} port {}", self.user, self.host, self.port)
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

/// An authenticated SSH connection to one node. Cheap to share by reference: commands and
/// transfers each open their own channel on it, so one connection serves a whole sequence.
pub struct SshSession {
    handle: Handle<Verifier>,
    target: SshTarget,
    /// `target` without the user, as every error names the node.
    node: NodeAddr,
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
    node: &NodeAddr,
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
    let defaults = russh::Preferred::default();
    let key = preferred_key_algorithms(known_hosts, node, &defaults.key);
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
        let material = credentials.material()?;
        let node = target.addr();
        let config = Arc::new(russh_config(&options, known_hosts, &node));
        let verifier = Verifier::new(node.clone(), known_hosts);
        let connecting = async {
            let tcp = tokio::net::TcpStream::connect((node.host.as_str(), node.port))
                .await
                .map_err(|source| SshError::Connect {
                    node: node.clone(),
                    source,
                })?;
            let _ = tcp.set_nodelay(true);
            client::connect_stream(config, tcp, verifier)
                .await
                .map_err(|e| match e {
                    HandlerError::HostKey(hk) => SshError::HostKey(hk),
                    HandlerError::Russh(e) => SshError::Handshake {
                        node: node.clone(),
                        message: e.to_string(),
                    },
                })
        };
        let mut handle = tokio::time::timeout(options.connect_timeout, connecting)
            .await
            .map_err(|_| SshError::ConnectTimeout {
                node: node.clone(),
                after: options.connect_timeout,
            })??;

        let result = tokio::time::timeout(
            options.auth_timeout,
            authenticate(&mut handle, &target.user, material),
        )
        .await
        .map_err(|_| SshError::AuthTimeout {
            node: node.clone(),
            user: target.user.clone(),
            after: options.auth_timeout,
        })?
        .map_err(|e| SshError::Handshake {
            node: node.clone(),
            message: format!("during authentication: {e}"),
        })?;
        if let AuthResult::Failure {
            remaining_methods, ..
        } = result
        {
            let accepted = remaining_methods
                .iter()
                .map(<&'static str>::from)
                .collect::<Vec<_>>()
                .join(", ");
            return Err(SshError::AuthRejected {
                node,
                user: target.user.clone(),
                method: credentials.method(),
                accepted: if accepted.is_empty() {
                    "none".into()
                } else {
                    accepted
                },
            });
        }
        tracing::debug!(target = %target, "SSH session established");
        Ok(SshSession {
            handle,
            target,
            node,
            options,
        })
    }

    /// The node this session is connected to.
    pub fn target(&self) -> &SshTarget {
        &self.target
    }

    /// The node, without the user: what errors name.
    pub fn node(&self) -> &NodeAddr {
        &self.node
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

    /// The command line as sent (with `sudo -n --` when configured).
    pub(super) fn render(&self, cmd: &CommandLine) -> String {
        cmd.render(self.options.sudo)
    }

    /// Opens a channel running the subsystem `name` (`sftp`): the caller speaks its protocol over
    /// the channel's stream. The connection's host key was verified like any other's.
    pub async fn open_subsystem(&self, name: &str) -> Result<Channel<Box<Msg>>, SshError> {
        let err = |message: String| SshError::Exec {
            node: self.node.clone(),
            command: format!("subsystem {name}"),
            message,
        };
        if self.handle.is_closed() {
            return Err(err("the connection is closed".into()));
        }
        let channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| err(format!("cannot open a channel: {e}")))?;
        channel
            .request_subsystem(true, name)
            .await
            .map_err(|e| err(format!("subsystem request failed: {e}")))?;
        Ok(channel)
    }

    /// Opens a channel and sends the exec request for `line` (the rendered command).
    pub(super) async fn open_channel(&self, line: &str) -> Result<Channel<Box<Msg>>, SshError> {
        tracing::debug!(target = %self.target, command = %line, "exec");
        let exec_err = |message: String| SshError::Exec {
            node: self.node.clone(),
            command: clip(line, 200),
            message,
        };
        if self.handle.is_closed() {
            return Err(SshError::ConnectionLost {
                node: self.node.clone(),
                command: clip(line, 200),
                detail: "the connection is closed".into(),
                received: 0,
            });
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
}

#[cfg(test)]
mod tests {
    /// Each connection's russh session makes four tokio channels, and each allocates its first
    /// block of 32 slots when it is created. Upstream russh 0.65.1's message is 552 bytes
    /// (17.7 KiB a block, ~70 KiB a connection). The patched copy in vendor/russh boxes the large
    /// variants and sends `Box<Msg>` through its channels (256-byte blocks): that `Channel<Box<Msg>>`
    /// is what `open_channel` returns is checked by the compiler; this checks the boxed variants,
    /// which every message still pays once, on its allocation.
    #[test]
    fn russh_messages_stay_small() {
        let size = std::mem::size_of::<russh::client::Msg>();
        assert!(size <= 96, "russh::client::Msg is {size} bytes");
    }
}
