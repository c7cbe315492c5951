//! The SFTP sink: the archive written to a file on an SSH host over the SFTP subsystem, on the
//! transport of [`crate::esc::ssh`] (host key always verified against known_hosts).
//!
//! The data goes to `PATH.part-RANDOM` (created exclusively, mode 0600); only after its size
//! matches the bytes written is it renamed to `PATH`, and the sidecar `PATH.sha256` beside it
//! (written to its own temporary name first). On any failure the temporary files are removed:
//! the final name never holds a partial artifact.
//!
//! Owns: [`SftpUpload`], [`SshAccess`] (SSH credentials and known_hosts from mounted files or
//! memory, also used for the ESC nodes), the SFTP error reasons. Imports the ESC transport
//! ([`SshSession`]) and the sink's shared words.

use std::fmt;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use russh_sftp::client::SftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::fs::File;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::esc::{
    KnownHosts, SessionOptions, Sha256Digest, SshCredentials, SshError, SshSession, SshTarget,
};
use crate::mover::request::SftpSink;
use crate::mover::sink::{
    ARTIFACT_NOT_FOUND, ArtifactHead, SinkError, StoredObject, parse_head, parse_sidecar,
    read_secret_file, read_secret_text, sidecar_content,
};

/// SSH credentials and the known_hosts that vouch for the host keys.
#[derive(Clone, Debug)]
pub struct SshAccess {
    pub credentials: SshCredentials,
    pub known_hosts: KnownHosts,
}

impl SshAccess {
    /// From a Secret mounted at `credentials_dir` (`ssh-privatekey` with optional `passphrase`,
    /// or `password`) and a known_hosts file.
    pub fn from_files(credentials_dir: &Path, known_hosts_file: &Path) -> Result<Self, SinkError> {
        let credentials = if let Some(key) = read_secret_file(credentials_dir, "ssh-privatekey")? {
            let passphrase = read_secret_text(credentials_dir, "passphrase")?;
            SshCredentials::private_key(key.to_vec(), passphrase.map(|p| p.to_string()))
        } else if let Some(password) = read_secret_text(credentials_dir, "password")? {
            SshCredentials::password(password.to_string())
        } else {
            return Err(SinkError::new(
                "CredentialsMissing",
                format!(
                    "the SSH credentials Secret (mounted at {}) has neither ssh-privatekey nor password",
                    credentials_dir.display()
                ),
            ));
        };
        let known_hosts = std::fs::read_to_string(known_hosts_file).map_err(|e| {
            SinkError::new(
                "KnownHostsUnreadable",
                format!(
                    "cannot read the known_hosts file {}: {e}; check the known_hosts Secret",
                    known_hosts_file.display()
                ),
            )
        })?;
        Ok(SshAccess {
            credentials,
            known_hosts: KnownHosts::parse(&known_hosts),
        })
    }
}

/// An SSH failure as a sink failure, with the transport's own reason (`HostKeyMismatch`,
/// `AuthRejected`, ...). Its message never holds a credential.
pub fn ssh_error(e: &SshError) -> SinkError {
    let reason = match e.reason() {
        "AuthFailed" => "AuthRejected",
        other => other,
    };
    SinkError::new(reason, e.to_string())
}

fn sftp_error(action: &str, host: &str, e: &SftpError) -> SinkError {
    let reason = match e {
        SftpError::Status(s) => match s.status_code {
            StatusCode::NoSuchFile => "NoSuchFile",
            StatusCode::PermissionDenied => "PermissionDenied",
            _ => "SftpFailed",
        },
        SftpError::Timeout => "SftpTimeout",
        _ => "SftpFailed",
    };
    SinkError::new(reason, format!("{action} on {host}: {e}"))
}

/// Connects to the SFTP host.
pub async fn connect(
    spec: &SftpSink,
    access: &SshAccess,
    connect_timeout: Duration,
) -> Result<SshSession, SinkError> {
    let options = SessionOptions {
        connect_timeout,
        ..SessionOptions::default()
    };
    SshSession::connect(
        SshTarget::new(&spec.host, spec.port, &spec.user),
        &access.credentials,
        &access.known_hosts,
        options,
    )
    .await
    .map_err(|e| ssh_error(&e))
}

async fn open_sftp(session: &SshSession) -> Result<SftpSession, SinkError> {
    let channel = session
        .open_subsystem("sftp")
        .await
        .map_err(|e| ssh_error(&e))?;
    let sftp = SftpSession::new(channel.into_stream())
        .await
        .map_err(|e| sftp_error("starting SFTP", &session.target().host, &e))?;
    sftp.set_timeout(60);
    Ok(sftp)
}

/// An artifact being written over SFTP: [`SftpUpload::start`], write, then
/// [`SftpUpload::finish`] or [`SftpUpload::abort`].
pub struct SftpUpload {
    session: SshSession,
    sftp: SftpSession,
    file: Option<File>,
    spec: SftpSink,
    temp: String,
    written: u64,
}

impl fmt::Debug for SftpUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SftpUpload")
            .field("uri", &self.spec.uri())
            .field("temp", &self.temp)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

fn temp_name(path: &str) -> String {
    format!("{path}.part-{:016x}", rand::random::<u64>())
}

impl SftpUpload {
    /// Opens SFTP on `session` and creates the temporary file.
    pub async fn start(session: SshSession, spec: &SftpSink) -> Result<Self, SinkError> {
        let sftp = open_sftp(&session).await?;
        let temp = temp_name(&spec.path);
        let file = create_exclusive(&sftp, &temp).await.map_err(|e| {
            let mut e = sftp_error(&format!("creating {temp}"), &spec.host, &e);
            if e.reason == "NoSuchFile" {
                e.reason = "TargetDirectoryMissing";
                e.message.push_str("; create the target directory");
            }
            e
        })?;
        tracing::info!(uri = %spec.uri(), %temp, "SFTP upload started");
        Ok(SftpUpload {
            session,
            sftp,
            file: Some(file),
            spec: spec.clone(),
            temp,
            written: 0,
        })
    }

    /// Closes the file, checks its size, writes the sidecar and renames both to their final
    /// names; gives the connection back (to verify on). Removes the temporary files on
    /// failure.
    pub async fn finish(mut self, sha256: &Sha256Digest) -> Result<SshSession, SinkError> {
        if let Err(e) = self.finish_inner(sha256).await {
            self.cleanup().await;
            self.close().await;
            return Err(e);
        }
        let _ = self.sftp.close().await;
        Ok(self.session)
    }

    async fn finish_inner(&mut self, sha256: &Sha256Digest) -> Result<(), SinkError> {
        let host = self.spec.host.clone();
        if let Some(mut file) = self.file.take() {
            file.shutdown().await.map_err(|e| {
                SinkError::new(
                    "SftpFailed",
                    format!("closing {} on {host}: {e}", self.temp),
                )
            })?;
        }
        let size = self
            .sftp
            .metadata(&self.temp)
            .await
            .map_err(|e| sftp_error(&format!("reading the size of {}", self.temp), &host, &e))?
            .len();
        if size != self.written {
            return Err(SinkError::new(
                "SizeMismatch",
                format!(
                    "{} on {host} holds {size} bytes, {} were written; the host's disk may be full",
                    self.temp, self.written
                ),
            ));
        }
        let sidecar = self.spec.sidecar_path();
        let sidecar_temp = temp_name(&sidecar);
        let mut file = create_exclusive(&self.sftp, &sidecar_temp)
            .await
            .map_err(|e| sftp_error(&format!("creating {sidecar_temp}"), &host, &e))?;
        let written = async {
            file.write_all(sidecar_content(sha256, &self.spec.path).as_bytes())
                .await?;
            file.shutdown().await
        };
        if let Err(e) = written.await {
            let _ = self.sftp.remove_file(&sidecar_temp).await;
            return Err(SinkError::new(
                "SftpFailed",
                format!("writing {sidecar_temp} on {host}: {e}"),
            ));
        }
        if let Err(e) = self.rename(&self.temp, &self.spec.path).await {
            let _ = self.sftp.remove_file(&sidecar_temp).await;
            return Err(e);
        }
        if let Err(e) = self.rename(&sidecar_temp, &sidecar).await {
            let _ = self.sftp.remove_file(&sidecar_temp).await;
            let _ = self.sftp.remove_file(&self.spec.path).await;
            return Err(e);
        }
        tracing::info!(uri = %self.spec.uri(), bytes = size, "SFTP upload finished");
        Ok(())
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), SinkError> {
        self.sftp.rename(from, to).await.map_err(|e| {
            let mut e = sftp_error(&format!("renaming {from} to {to}"), &self.spec.host, &e);
            e.message
                .push_str(" (an existing file is never replaced: choose another name)");
            e
        })
    }

    /// Removes the temporary file (closing it first).
    pub async fn abort(mut self) {
        self.cleanup().await;
        self.close().await;
    }

    async fn cleanup(&mut self) {
        if let Some(mut file) = self.file.take() {
            let _ = file.shutdown().await;
        }
        match self.sftp.remove_file(&self.temp).await {
            Ok(()) => tracing::info!(temp = %self.temp, "temporary file removed"),
            Err(e) => {
                tracing::warn!(temp = %self.temp, error = %e, "could not remove the temporary file")
            }
        }
    }

    async fn close(self) {
        let _ = self.sftp.close().await;
        self.session.close().await;
    }
}

async fn create_exclusive(sftp: &SftpSession, path: &str) -> Result<File, SftpError> {
    let attrs = FileAttributes {
        permissions: Some(0o600),
        ..FileAttributes::empty()
    };
    sftp.open_with_flags_and_attributes(
        path,
        OpenFlags::CREATE | OpenFlags::EXCLUDE | OpenFlags::WRITE,
        attrs,
    )
    .await
}

impl AsyncWrite for SftpUpload {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(file) = this.file.as_mut() else {
            return Poll::Ready(Err(io::Error::other("the SFTP file is closed")));
        };
        let poll = Pin::new(file).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = &poll {
            this.written += *n as u64;
        }
        poll
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().file.as_mut() {
            Some(file) => Pin::new(file).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    /// Closing needs the digest: see [`SftpUpload::finish`].
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Whether the host takes a file beside the artifact: `PATH.preflight-<random>` is created
/// (exclusive, 0600) and removed again (the operator's preflight).
pub async fn probe_writable(
    spec: &SftpSink,
    access: &SshAccess,
    connect_timeout: Duration,
) -> Result<(), SinkError> {
    let session = connect(spec, access, connect_timeout).await?;
    let result = async {
        let sftp = open_sftp(&session).await?;
        let probe = format!("{}.preflight-{:08x}", spec.path, rand::random::<u32>());
        let created = match create_exclusive(&sftp, &probe).await {
            Ok(file) => {
                drop(file);
                let _ = sftp.remove_file(&probe).await;
                Ok(())
            }
            Err(e) => Err(sftp_error(&format!("creating {probe}"), &spec.host, &e)),
        };
        let _ = sftp.close().await;
        created
    }
    .await;
    session.close().await;
    result
}

/// Reads back a stored artifact: its size (stat) and the digest in its sidecar.
pub async fn verify_stored(
    spec: &SftpSink,
    access: &SshAccess,
    connect_timeout: Duration,
) -> Result<StoredObject, SinkError> {
    let session = connect(spec, access, connect_timeout).await?;
    let result = verify_on(&session, spec).await;
    session.close().await;
    result
}

pub(crate) async fn verify_on(
    session: &SshSession,
    spec: &SftpSink,
) -> Result<StoredObject, SinkError> {
    let sftp = open_sftp(session).await?;
    let host = &spec.host;
    let result = async {
        let size = sftp
            .metadata(&spec.path)
            .await
            .map_err(|e| {
                let mut e = sftp_error(&format!("reading {}", spec.path), host, &e);
                if e.reason == "NoSuchFile" {
                    e.reason = "ArtifactMissing";
                }
                e
            })?
            .len();
        let sidecar = spec.sidecar_path();
        let content = sftp.read(&sidecar).await.map_err(|e| {
            let mut e = sftp_error(&format!("reading {sidecar}"), host, &e);
            if e.reason == "NoSuchFile" {
                e.reason = "SidecarMissing";
            }
            e
        })?;
        let sha256 = parse_sidecar(&content).ok_or_else(|| {
            SinkError::new(
                "SidecarInvalid",
                format!("{sidecar} on {host} does not hold a sha256sum line"),
            )
        })?;
        Ok(StoredObject { size, sha256 })
    }
    .await;
    let _ = sftp.close().await;
    result
}

/// The artifact's manifest and stored size and digest (see [`crate::mover::sink::read_head`]):
/// stat and sidecar first, then at most [`MAX_HEAD_BYTES`](crate::mover::MAX_HEAD_BYTES) of the
/// file's start.
pub async fn read_head(
    spec: &SftpSink,
    access: &SshAccess,
    connect_timeout: Duration,
) -> Result<ArtifactHead, SinkError> {
    let session = connect(spec, access, connect_timeout).await?;
    let result = async {
        let stored = verify_on(&session, spec).await.map_err(|mut e| {
            if e.reason == "ArtifactMissing" {
                e.reason = ARTIFACT_NOT_FOUND;
            }
            e
        })?;
        let sftp = open_sftp(&session).await?;
        let head = async {
            let file = open_artifact(&sftp, spec).await?;
            parse_head(SftpRead::new(file, spec), &spec.uri()).await
        }
        .await;
        let _ = sftp.close().await;
        Ok(ArtifactHead {
            manifest: head?,
            stored,
        })
    }
    .await;
    session.close().await;
    result
}

async fn open_artifact(sftp: &SftpSession, spec: &SftpSink) -> Result<File, SinkError> {
    sftp.open(&spec.path).await.map_err(|e| {
        let mut e = sftp_error(&format!("opening {}", spec.path), &spec.host, &e);
        if e.reason == "NoSuchFile" {
            e.reason = ARTIFACT_NOT_FOUND;
            e.message.push_str("; check the backup's location");
        }
        e
    })
}

/// An SFTP file's read errors told as the store's (`SftpFailed`).
struct SftpRead {
    file: File,
    host: String,
    path: String,
}

impl SftpRead {
    fn new(file: File, spec: &SftpSink) -> Self {
        SftpRead {
            file,
            host: spec.host.clone(),
            path: spec.path.clone(),
        }
    }
}

impl AsyncRead for SftpRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match std::task::ready!(Pin::new(&mut this.file).poll_read(cx, buf)) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(io::Error::new(
                e.kind(),
                SinkError::new(
                    "SftpFailed",
                    format!("reading {} on {}: {e}", this.path, this.host),
                ),
            ))),
        }
    }
}

/// The artifact on an SFTP host, open for reading front to back (a restore's staging run): owns
/// its connection, closed by [`SftpSource::close`].
pub struct SftpSource {
    session: SshSession,
    sftp: SftpSession,
    file: SftpRead,
    size: u64,
}

impl fmt::Debug for SftpSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SftpSource")
            .field("path", &self.file.path)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl SftpSource {
    /// Opens the artifact on `session`; a missing file is [`ARTIFACT_NOT_FOUND`].
    pub async fn open(session: SshSession, spec: &SftpSink) -> Result<Self, SinkError> {
        let sftp = match open_sftp(&session).await {
            Ok(sftp) => sftp,
            Err(e) => {
                session.close().await;
                return Err(e);
            }
        };
        let opened = async {
            let file = open_artifact(&sftp, spec).await?;
            let size = file
                .metadata()
                .await
                .map_err(|e| {
                    sftp_error(
                        &format!("reading the size of {}", spec.path),
                        &spec.host,
                        &e,
                    )
                })?
                .len();
            Ok::<_, SinkError>((file, size))
        }
        .await;
        match opened {
            Ok((file, size)) => Ok(SftpSource {
                session,
                sftp,
                file: SftpRead::new(file, spec),
                size,
            }),
            Err(e) => {
                let _ = sftp.close().await;
                session.close().await;
                Err(e)
            }
        }
    }

    /// The file's size when it was opened.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Closes the file and the connection.
    pub async fn close(self) {
        drop(self.file);
        let _ = self.sftp.close().await;
        self.session.close().await;
    }
}

impl AsyncRead for SftpSource {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().file).poll_read(cx, buf)
    }
}

/// Removes the temporary files a mover that could not clean up after itself left beside the
/// artifact (`PATH.part-<hex>` and `PATH.sha256.part-<hex>`, see [`temp_name`]), modified at or
/// after `cutoff_unix_secs`, and returns how many it removed. Never the artifact, its sidecar, or
/// any other name.
pub async fn remove_temp_files(
    spec: &SftpSink,
    access: &SshAccess,
    connect_timeout: Duration,
    cutoff_unix_secs: i64,
) -> Result<u32, SinkError> {
    let session = connect(spec, access, connect_timeout).await?;
    let result = async {
        let sftp = open_sftp(&session).await?;
        let (dir, _) = spec.path.rsplit_once('/').unwrap_or(("", &spec.path));
        let dir = if dir.is_empty() { "/" } else { dir };
        let listing = match sftp.read_dir(dir).await {
            Ok(listing) => listing,
            // No directory, no temporary file in it.
            Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => return Ok(0),
            Err(e) => return Err(sftp_error(&format!("listing {dir}"), &spec.host, &e)),
        };
        let mut removed = 0;
        for entry in listing {
            let path = format!("{}/{}", dir.trim_end_matches('/'), entry.file_name());
            let mtime = entry.metadata().mtime.map(i64::from);
            if !is_leftover_temp(&path, mtime, spec, cutoff_unix_secs) {
                continue;
            }
            match sftp.remove_file(&path).await {
                Ok(()) => removed += 1,
                Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => {}
                Err(e) => return Err(sftp_error(&format!("removing {path}"), &spec.host, &e)),
            }
            tracing::info!(%path, host = %spec.host, "temporary file left by a mover removed");
        }
        let _ = sftp.close().await;
        Ok(removed)
    }
    .await;
    session.close().await;
    result
}

/// Whether `path` is a temporary file of this artifact or its sidecar ([`temp_name`]: exactly
/// 16 hex digits after `.part-`), modified no earlier than `cutoff`. Unknown times are not
/// recent.
fn is_leftover_temp(path: &str, mtime: Option<i64>, spec: &SftpSink, cutoff: i64) -> bool {
    let of = |base: &str| {
        path.strip_prefix(base)
            .and_then(|rest| rest.strip_prefix(".part-"))
            .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    (of(&spec.path) || of(&spec.sidecar_path())) && mtime.is_some_and(|t| t >= cutoff)
}

/// Deletes a stored artifact and its sidecar; a missing one is no error.
pub async fn delete_stored(
    spec: &SftpSink,
    access: &SshAccess,
    connect_timeout: Duration,
) -> Result<(), SinkError> {
    let session = connect(spec, access, connect_timeout).await?;
    let result = delete_on(&session, spec).await;
    session.close().await;
    result
}

pub(crate) async fn delete_on(session: &SshSession, spec: &SftpSink) -> Result<(), SinkError> {
    let sftp = open_sftp(session).await;
    async {
        let sftp = sftp?;
        for path in [spec.path.clone(), spec.sidecar_path()] {
            match sftp.remove_file(&path).await {
                Ok(()) => {}
                Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => {}
                Err(e) => return Err(sftp_error(&format!("deleting {path}"), &spec.host, &e)),
            }
        }
        let _ = sftp.close().await;
        Ok(())
    }
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_recent_temp_files_of_this_artifact_are_leftovers() {
        let spec = SftpSink {
            host: "h".into(),
            port: 22,
            user: "u".into(),
            path: "/backups/ns-esc-nightly.tar".into(),
            credentials_dir: "/c".into(),
            known_hosts_file: "/k".into(),
        };
        let temp = temp_name(&spec.path);
        let sidecar_temp = temp_name(&spec.sidecar_path());
        for p in [&temp, &sidecar_temp] {
            assert!(is_leftover_temp(p, Some(1_000), &spec, 1_000), "{p}");
            // Older than the run, or of unknown age: left alone.
            assert!(!is_leftover_temp(p, Some(999), &spec, 1_000), "{p}");
            assert!(!is_leftover_temp(p, None, &spec, 1_000), "{p}");
        }
        for other in [
            "/backups/ns-esc-nightly.tar",
            "/backups/ns-esc-nightly.tar.sha256",
            "/backups/ns-esc-nightly.tar.preflight-0123456789abcdef",
            "/backups/ns-esc-nightly.tar.part-0123",
            "/backups/ns-esc-nightly.tar.part-0123456789abcdefg",
            "/backups/ns-esc-nightly.tar.part-zz23456789abcdef",
            "/backups/ns-esc-nightly.tar2.part-0123456789abcdef",
            "/backups/other.tar.part-0123456789abcdef",
        ] {
            assert!(
                !is_leftover_temp(other, Some(2_000), &spec, 1_000),
                "{other}"
            );
        }
    }
}
