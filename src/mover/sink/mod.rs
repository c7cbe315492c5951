//! Where an artifact goes, and where a restore reads it from: an S3 object written by multipart
//! upload ([`s3`]) or a file on an SSH host written over SFTP ([`sftp`]). Each sink is an
//! [`tokio::io::AsyncWrite`] the archive is streamed into, then finished (the artifact appears
//! under its final name only once it is complete, with a `.sha256` sidecar in `sha256sum`
//! format beside it, and its stored size verified) or aborted (nothing is left behind). Read
//! back, the store gives the artifact as a stream ([`open_read`]) or only its head
//! ([`read_head`], a restore's preflight).
//!
//! Owns: the sinks and sources, [`SinkError`] (a stable reason and a message that says what to
//! do, never a secret), [`StoredObject`], [`ArtifactHead`], and reading credential files from a
//! mounted Secret. Imports [`crate::mover::request`] (the sink specs), [`crate::mover::archive`]
//! and [`crate::mover::manifest`] (to read an artifact's head by the archive's own rules),
//! [`crate::esc`] (the SSH transport, for SFTP) and the ESC vocabulary.

pub mod s3;
pub mod sftp;

use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use zeroize::Zeroizing;

use crate::esc::Sha256Digest;
use crate::mover::archive::{ArchiveError, ArchiveReader, MAX_HEAD_BYTES};
use crate::mover::manifest::Manifest;
use crate::mover::request::SinkSpec;

/// A sink's failure.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{message}")]
pub struct SinkError {
    /// A short, stable CamelCase reason (`S3AccessDenied`, `NoSuchBucket`, `SizeMismatch`, ...).
    pub reason: &'static str,
    /// What happened and what the user can do. Never holds a secret.
    pub message: String,
}

impl SinkError {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        SinkError {
            reason,
            message: message.into(),
        }
    }
}

/// A stored artifact, as the store reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredObject {
    pub size: u64,
    pub sha256: Sha256Digest,
}

/// What reaches a store, held in memory (the controller reads it from Secrets) or read from
/// mounted files (the mover: [`s3::S3Access::from_files`], [`sftp::SshAccess::from_files`]).
#[derive(Clone, Debug)]
pub enum StoreAccess {
    S3(s3::S3Access),
    Sftp(sftp::SshAccess),
}

fn access_mismatch(spec: &SinkSpec) -> SinkError {
    SinkError::new(
        "AccessMismatch",
        format!("the access given does not fit the store of {}", spec.uri()),
    )
}

/// The stored artifact's size and digest, read back from the store (S3: HEAD, metadata and
/// sidecar, which must agree; SFTP: stat and sidecar). `connect_timeout` bounds the SSH
/// connection of an SFTP store.
pub async fn verify_stored(
    spec: &SinkSpec,
    access: &StoreAccess,
    connect_timeout: Duration,
) -> Result<StoredObject, SinkError> {
    match (spec, access) {
        (SinkSpec::S3(spec), StoreAccess::S3(access)) => s3::verify_stored(spec, access).await,
        (SinkSpec::Sftp(spec), StoreAccess::Sftp(access)) => {
            sftp::verify_stored(spec, access, connect_timeout).await
        }
        _ => Err(access_mismatch(spec)),
    }
}

/// Whether the store takes a file at the artifact's place (written and removed again).
pub async fn probe_writable(
    spec: &SinkSpec,
    access: &StoreAccess,
    connect_timeout: Duration,
) -> Result<(), SinkError> {
    match (spec, access) {
        (SinkSpec::S3(spec), StoreAccess::S3(access)) => s3::probe_writable(spec, access).await,
        (SinkSpec::Sftp(spec), StoreAccess::Sftp(access)) => {
            sftp::probe_writable(spec, access, connect_timeout).await
        }
        _ => Err(access_mismatch(spec)),
    }
}

/// Deletes the stored artifact and its sidecar (`deletionPolicy: Delete`); what is already
/// gone is no error.
pub async fn delete_stored(
    spec: &SinkSpec,
    access: &StoreAccess,
    connect_timeout: Duration,
) -> Result<(), SinkError> {
    match (spec, access) {
        (SinkSpec::S3(spec), StoreAccess::S3(access)) => s3::delete_stored(spec, access).await,
        (SinkSpec::Sftp(spec), StoreAccess::Sftp(access)) => {
            sftp::delete_stored(spec, access, connect_timeout).await
        }
        _ => Err(access_mismatch(spec)),
    }
}

/// Removes what a mover killed mid-transfer left in the store for this artifact (S3: its
/// incomplete multipart uploads; SFTP: its temporary files), created at or after
/// `cutoff_unix_secs`; returns how many went. A mover that fails on its own cleans up itself:
/// this is for the kills it cannot see (OOM, a lost node, SIGKILL after the grace period).
pub async fn remove_leftovers(
    spec: &SinkSpec,
    access: &StoreAccess,
    connect_timeout: Duration,
    cutoff_unix_secs: i64,
) -> Result<u32, SinkError> {
    match (spec, access) {
        (SinkSpec::S3(spec), StoreAccess::S3(access)) => {
            s3::abort_incomplete_uploads(spec, access, cutoff_unix_secs).await
        }
        (SinkSpec::Sftp(spec), StoreAccess::Sftp(access)) => {
            sftp::remove_temp_files(spec, access, connect_timeout, cutoff_unix_secs).await
        }
        _ => Err(access_mismatch(spec)),
    }
}

/// What a restore's preflight learns from the store without reading the artifact whole.
#[derive(Clone, Debug, PartialEq)]
pub struct ArtifactHead {
    pub manifest: Manifest,
    pub stored: StoredObject,
}

/// The reason for an artifact that is not in the store (the object or file; a missing bucket,
/// directory or permission keep their own reasons).
pub const ARTIFACT_NOT_FOUND: &str = "ArtifactNotFound";

/// The artifact's manifest and stored size/digest: HEAD + digest metadata/sidecar (as
/// [`verify_stored`]) and a bounded read of the archive's first bytes (S3: ranged GET; SFTP:
/// read only the prefix), parsed with the archive's own reader rules.
///
/// At most [`MAX_HEAD_BYTES`] are read, whatever the artifact's size: a prefix that does not
/// hold a whole manifest within them is `ArtifactMalformed`, as is one that is not an archive.
/// A manifest the archive reader refuses keeps [`crate::mover::ManifestError`]'s reason
/// (`ArtifactFormatTooNew` for a newer format, `ManifestUnreadable`, `ManifestInvalid`).
pub async fn read_head(
    spec: &SinkSpec,
    access: &StoreAccess,
    connect_timeout: Duration,
) -> Result<ArtifactHead, SinkError> {
    match (spec, access) {
        (SinkSpec::S3(spec), StoreAccess::S3(access)) => s3::read_head(spec, access).await,
        (SinkSpec::Sftp(spec), StoreAccess::Sftp(access)) => {
            sftp::read_head(spec, access, connect_timeout).await
        }
        _ => Err(access_mismatch(spec)),
    }
}

/// The stored artifact opened for reading: its size as the store reports it, and its bytes.
pub struct ArtifactSource {
    pub size: u64,
    inner: Source,
}

enum Source {
    S3(Box<dyn AsyncRead + Send + Unpin>),
    Sftp(Box<sftp::SftpSource>),
}

impl std::fmt::Debug for ArtifactSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactSource")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl ArtifactSource {
    /// Closes the store's connection (SFTP); an S3 body is simply dropped.
    pub async fn close(self) {
        if let Source::Sftp(source) = self.inner {
            source.close().await;
        }
    }
}

impl AsyncRead for ArtifactSource {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().inner {
            Source::S3(body) => Pin::new(body.as_mut()).poll_read(cx, buf),
            Source::Sftp(file) => Pin::new(file.as_mut()).poll_read(cx, buf),
        }
    }
}

/// Opens the stored artifact for reading, front to back (a restore's staging run). A missing
/// object or file is [`ARTIFACT_NOT_FOUND`]. Nothing is buffered beyond what the transport
/// holds: the reader pulls the bytes as it consumes them.
pub async fn open_read(
    spec: &SinkSpec,
    access: &StoreAccess,
    connect_timeout: Duration,
) -> Result<ArtifactSource, SinkError> {
    match (spec, access) {
        (SinkSpec::S3(spec), StoreAccess::S3(access)) => {
            let client = s3::client(spec, access).await?;
            let (size, body) = s3::get(&client, spec, None).await?;
            Ok(ArtifactSource {
                size,
                inner: Source::S3(Box::new(body)),
            })
        }
        (SinkSpec::Sftp(spec), StoreAccess::Sftp(access)) => {
            let session = sftp::connect(spec, access, connect_timeout).await?;
            let source = sftp::SftpSource::open(session, spec).await?;
            Ok(ArtifactSource {
                size: source.size(),
                inner: Source::Sftp(Box::new(source)),
            })
        }
        _ => Err(access_mismatch(spec)),
    }
}

/// Reads the manifest from an artifact's first bytes, never more than [`MAX_HEAD_BYTES`].
async fn parse_head<R: AsyncRead + Unpin>(prefix: R, uri: &str) -> Result<Manifest, SinkError> {
    let bounded = prefix.take(MAX_HEAD_BYTES);
    match ArchiveReader::open(bounded).await {
        Ok(reader) => Ok(reader.manifest().clone()),
        Err(e) => Err(head_error(e, uri)),
    }
}

/// An archive error from reading an artifact's head, as a store's failure.
fn head_error(e: ArchiveError, uri: &str) -> SinkError {
    match e {
        ArchiveError::Manifest(m) => SinkError::new(m.reason(), format!("{uri}: {m}")),
        ArchiveError::ReadArchive { source } => {
            match source.get_ref().and_then(|i| i.downcast_ref::<SinkError>()) {
                Some(inner) => inner.clone(),
                None => SinkError::new(
                    "ArtifactReadFailed",
                    format!("reading the start of {uri}: {source}"),
                ),
            }
        }
        // Truncated within the bound, garbled, not a tar archive, not ours: not an artifact
        // this build reads.
        other => SinkError::new(
            "ArtifactMalformed",
            format!(
                "{uri} is not an esc-operator backup artifact: {other}; check the backup's location"
            ),
        ),
    }
}

/// The sidecar's content: `HEX  BASENAME\n`, what `sha256sum` prints, so
/// `sha256sum -c ARTIFACT.sha256` checks a downloaded artifact.
pub fn sidecar_content(sha256: &Sha256Digest, artifact_path: &str) -> String {
    let base = artifact_path.rsplit('/').next().unwrap_or(artifact_path);
    format!("{sha256}  {base}\n")
}

/// The digest in a sidecar's content (the first word, 64 hex digits); `None` for anything else.
pub fn parse_sidecar(content: &[u8]) -> Option<Sha256Digest> {
    let text = std::str::from_utf8(content).ok()?;
    let first = text.lines().next()?;
    let hex = first.split_whitespace().next()?;
    hex.parse().ok()
}

/// Reads one key of a Secret mounted as a directory. `Ok(None)` when the file does not exist.
/// Trailing newlines are dropped: `kubectl create secret --from-file` keeps the one an editor
/// adds. The content is never quoted in an error.
pub(crate) fn read_secret_file(
    dir: &Path,
    key: &str,
) -> Result<Option<Zeroizing<Vec<u8>>>, SinkError> {
    let path = dir.join(key);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(Zeroizing::new(bytes))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SinkError::new(
            "CredentialsUnreadable",
            format!(
                "cannot read the credentials file {}: {e}; check the Secret's volume",
                path.display()
            ),
        )),
    }
}

/// [`read_secret_file`] as text, without trailing line breaks.
pub(crate) fn read_secret_text(
    dir: &Path,
    key: &str,
) -> Result<Option<Zeroizing<String>>, SinkError> {
    let Some(bytes) = read_secret_file(dir, key)? else {
        return Ok(None);
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        SinkError::new(
            "CredentialsUnreadable",
            format!(
                "the credentials file {} is not UTF-8 text",
                dir.join(key).display()
            ),
        )
    })?;
    Ok(Some(Zeroizing::new(
        text.trim_end_matches(['\r', '\n']).to_owned(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecars_are_sha256sum_lines() {
        let d = Sha256Digest([0x0f; 32]);
        let text = sidecar_content(&d, "esc/prod/backup-1.tar");
        assert_eq!(text, format!("{}  backup-1.tar\n", "0f".repeat(32)));
        assert_eq!(parse_sidecar(text.as_bytes()), Some(d));
        assert_eq!(parse_sidecar(b""), None);
        assert_eq!(parse_sidecar(b"nonsense  x\n"), None);
        assert_eq!(parse_sidecar(&[0xff, 0xfe]), None);
    }

    /// `prefix`, then `fill` without end; counts what it served.
    struct Endless {
        prefix: Vec<u8>,
        fill: u8,
        served: u64,
    }

    impl AsyncRead for Endless {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            let this = self.get_mut();
            let at = this.served as usize;
            let n = if at < this.prefix.len() {
                let n = buf.remaining().min(this.prefix.len() - at);
                buf.put_slice(&this.prefix[at..at + n]);
                n
            } else {
                let n = buf.remaining();
                buf.put_slice(&vec![this.fill; n]);
                n
            };
            this.served += n as u64;
            Poll::Ready(Ok(()))
        }
    }

    /// A PAX extended header block with `records`, padded to whole blocks.
    fn pax_header(records: &[(&str, &str)]) -> Vec<u8> {
        use crate::mover::tar::{BLOCK, entry_headers, padding};
        let mut data = Vec::new();
        for (key, value) in records {
            let body = format!(" {key}={value}\n");
            let mut len = body.len() + 1;
            while body.len() + len.to_string().len() != len {
                len = body.len() + len.to_string().len();
            }
            data.extend_from_slice(format!("{len}{body}").as_bytes());
        }
        // A regular file's header turned into an extended header's: type 'x', checksum again.
        let mut header = entry_headers("PaxHeaders/manifest.json", data.len() as u64, 0);
        header[156] = b'x';
        header[148..156].fill(b' ');
        let sum: u32 = header[..BLOCK].iter().map(|&b| u32::from(b)).sum();
        header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        header.extend_from_slice(&data);
        header.resize(header.len() + padding(data.len() as u64), 0);
        header
    }

    #[tokio::test]
    async fn a_head_read_stays_within_its_bound() {
        use crate::mover::manifest::{MANIFEST_PATH, MAX_MANIFEST_BYTES};
        use crate::mover::tar::entry_headers;

        // The largest manifest a reader accepts, that is no manifest: read to its end, no further.
        let mut source = Endless {
            prefix: entry_headers(MANIFEST_PATH, MAX_MANIFEST_BYTES, 0),
            fill: b' ',
            served: 0,
        };
        let err = parse_head(&mut source, "s3://b/k").await.unwrap_err();
        assert_eq!(err.reason, "ManifestUnreadable", "{err:?}");
        assert!(source.served <= MAX_HEAD_BYTES, "{}", source.served);
        assert!(err.message.starts_with("s3://b/k: "), "{}", err.message);

        // One byte more than a manifest may have: refused at the header.
        let mut source = Endless {
            prefix: entry_headers(MANIFEST_PATH, MAX_MANIFEST_BYTES + 1, 0),
            fill: b' ',
            served: 0,
        };
        let err = parse_head(&mut source, "s3://b/k").await.unwrap_err();
        assert_eq!(err.reason, "ManifestUnreadable", "{err:?}");
        assert!(source.served <= MAX_HEAD_BYTES, "{}", source.served);

        // A long extended header before the largest manifest: together more than the bound,
        // which stops the read (the header alone is within the archive reader's limits).
        let mut prefix = pax_header(&[
            ("comment", &"x".repeat(60 << 10)),
            ("size", &MAX_MANIFEST_BYTES.to_string()),
        ]);
        prefix.extend_from_slice(&entry_headers(MANIFEST_PATH, 0, 0));
        let mut source = Endless {
            prefix,
            fill: b' ',
            served: 0,
        };
        let err = parse_head(&mut source, "s3://b/k").await.unwrap_err();
        assert_eq!(err.reason, "ArtifactMalformed", "{err:?}");
        assert!(source.served <= MAX_HEAD_BYTES, "{}", source.served);

        // Not a tar archive at all; and an archive that ends inside its manifest.
        let mut source = Endless {
            prefix: Vec::new(),
            fill: 0x5a,
            served: 0,
        };
        let err = parse_head(&mut source, "s3://b/k").await.unwrap_err();
        assert_eq!(err.reason, "ArtifactMalformed", "{err:?}");
        assert!(source.served <= MAX_HEAD_BYTES, "{}", source.served);
        let mut cut = entry_headers(MANIFEST_PATH, 1000, 0);
        cut.extend_from_slice(b"{\"formatVersion\": 1");
        let err = parse_head(cut.as_slice(), "sftp://u@h:22/a.tar")
            .await
            .unwrap_err();
        assert_eq!(err.reason, "ArtifactMalformed", "{err:?}");
        assert!(err.message.contains("truncated"), "{}", err.message);

        // The store's own failure while reading keeps its reason.
        struct Failing;
        impl AsyncRead for Failing {
            fn poll_read(
                self: Pin<&mut Self>,
                _: &mut Context<'_>,
                _: &mut ReadBuf<'_>,
            ) -> Poll<std::io::Result<()>> {
                Poll::Ready(Err(std::io::Error::other(SinkError::new(
                    "S3Unreachable",
                    "reading s3://b/k: connection reset",
                ))))
            }
        }
        let err = parse_head(Failing, "s3://b/k").await.unwrap_err();
        assert_eq!(err.reason, "S3Unreachable", "{err:?}");
    }

    #[test]
    fn secret_files_lose_trailing_newlines_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("password"), " pass word \n\n").unwrap();
        let text = read_secret_text(dir.path(), "password").unwrap().unwrap();
        assert_eq!(text.as_str(), " pass word ");
        assert!(read_secret_text(dir.path(), "absent").unwrap().is_none());
        std::fs::write(dir.path().join("bin"), [0xff]).unwrap();
        let err = read_secret_text(dir.path(), "bin").unwrap_err();
        assert_eq!(err.reason, "CredentialsUnreadable");
    }
}
