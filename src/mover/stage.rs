//! One restore staging run, as the mover Job runs it (`esc-operator mover stage`): [`run`] takes
//! a checked [`StageRequest`] and returns the [`MoverReport`] (`Staged` or `Failed`).
//!
//! The steps, each announced on stdout ([`ProgressLine::Step`]):
//! 1. ReadRequest: the mounted credentials and known_hosts are read (before any network I/O).
//! 2. Connect: SSH to the node (host key verified), and the artifact opened in the store (S3
//!    GetObject, or the file over SFTP), so a wrong credential or a missing artifact fails
//!    before anything is written on the node.
//! 3. Transfer: the artifact streamed front to back through a hasher into the archive reader;
//!    its database member streamed onto the node at `stagedPath` (the parent directory created
//!    first), its digest checked against the manifest as it passes, so a corrupt member is never
//!    committed under that name; then the rest of the archive read to its end (the logs are
//!    checked and dropped) so the whole artifact's digest is known.
//! 4. Verify: the whole artifact's SHA-256 against the request's (`ChecksumMismatch`), and the
//!    staged file's, re-taken on the node with `sha256sum`, against the manifest's
//!    (`StagedChecksumMismatch`).
//!
//! The file is written to `stagedPath.partial` and renamed only when the member ended cleanly;
//! any later failure, and SIGTERM at any point after the node was reached (the report then says
//! `Cancelled`), removes both names (best effort: the controller removes the run's directory
//! anyway). Memory is flat in the artifact's size: the archive reader's one buffer, the upload's
//! one chunk, and what the transports hold in flight.
//!
//! Owns: the staging run and the mapping of every failure to a step and a stable reason.
//! Imports the rest of the mover and the ESC driver ([`EscNode`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, ReadBuf};

use crate::esc::{
    CommandLimits, CommandLine, EscNode, RemotePath, SessionOptions, Sha256Digest, SshError,
    SshTarget,
};
use crate::mover::archive::{ArchiveError, ArchiveReader};
use crate::mover::manifest::{Manifest, Member};
use crate::mover::report::{MoverReport, MoverStep, ProgressLine};
use crate::mover::request::{SinkSpec, StageRequest};
use crate::mover::sink::s3::S3Access;
use crate::mover::sink::sftp::{SshAccess, ssh_error};
use crate::mover::sink::{ArtifactSource, SinkError, StoreAccess, open_read};
use crate::mover::steps::{ProgressTask, StepError, Steps, driver_error, terminated};

/// How long the clean-up after a failure or SIGTERM may take: well inside the kubelet's default
/// grace period of 30 s, so the report is still written.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs the staging and returns its report (also when it failed).
pub async fn run(request: &StageRequest) -> MoverReport {
    let steps = Steps::new();
    match run_steps(request, &steps).await {
        Ok(report) => report,
        Err(StepError { step, error }) => {
            tracing::error!(?step, reason = error.reason, message = %error.message, "restore staging failed");
            MoverReport::failed(step, error.reason, error.message)
        }
    }
}

fn request_error(e: impl std::fmt::Display, reason: &'static str) -> StepError {
    StepError {
        step: MoverStep::ReadRequest,
        error: SinkError::new(reason, e.to_string()),
    }
}

async fn run_steps(request: &StageRequest, steps: &Steps) -> Result<MoverReport, StepError> {
    steps.enter(MoverStep::ReadRequest);
    let expected = request
        .expected_sha256()
        .map_err(|e| request_error(&e, e.reason()))?;
    let staged = RemotePath::new(request.staged_path.clone())
        .map_err(|e| request_error(&e, "RequestInvalid"))?;
    let node_access =
        SshAccess::from_files(&request.ssh.credentials_dir, &request.ssh.known_hosts_file)
            .map_err(StepError::at(MoverStep::ReadRequest))?;
    let store_access = match &request.store {
        SinkSpec::S3(spec) => StoreAccess::S3(
            S3Access::from_files(spec).map_err(StepError::at(MoverStep::ReadRequest))?,
        ),
        SinkSpec::Sftp(spec) => StoreAccess::Sftp(
            SshAccess::from_files(&spec.credentials_dir, &spec.known_hosts_file)
                .map_err(StepError::at(MoverStep::ReadRequest))?,
        ),
    };

    steps.enter(MoverStep::Connect);
    let connect_timeout = Duration::from_secs(request.ssh.connect_timeout_seconds);
    let options = SessionOptions {
        connect_timeout,
        sudo: request.ssh.sudo,
        ..SessionOptions::default()
    };
    let node = EscNode::connect(
        SshTarget::new(&request.node.host, request.node.port, &request.ssh.user),
        &node_access.credentials,
        &node_access.known_hosts,
        options,
    )
    .await
    .map_err(|e| {
        let mut e = driver_error(&e);
        e.message = format!("node {}: {}", request.node.name, e.message);
        StepError::at(MoverStep::Connect)(e)
    })?;
    tracing::info!(node = %request.node.name, host = %request.node.host, port = request.node.port, "connected");
    let source = match open_read(&request.store, &store_access, connect_timeout).await {
        Ok(source) => source,
        Err(e) => {
            node.close().await;
            return Err(StepError::at(MoverStep::Connect)(e));
        }
    };
    tracing::info!(uri = %request.store.uri(), size = source.size, "artifact opened");

    // From here on a file may appear on the node: every failure, and the stop signal, removes it.
    let outcome = tokio::select! {
        done = stage(request, &node, source, &staged, expected, steps) => done,
        which = terminated() => Err(StepError {
            step: steps.current(),
            error: SinkError::new(
                "Cancelled",
                format!("the mover received {which} (its Job was deleted or reached its deadline) and stopped; what it had staged is removed"),
            ),
        }),
    };
    if let Err(e) = &outcome {
        match remove_staged(&node, &staged).await {
            Ok(()) => {
                tracing::info!(path = %staged, reason = e.error.reason, "staged file removed after the failure")
            }
            // Best effort: the controller's clean-up removes the run's directory anyway.
            Err(also) => {
                tracing::warn!(path = %staged, reason = also.reason, message = %also.message, "could not remove the staged file")
            }
        }
    }
    node.close().await;
    outcome
}

/// Removes the staged file and its partial name, within [`CLEANUP_TIMEOUT`].
async fn remove_staged(node: &EscNode, staged: &RemotePath) -> Result<(), SinkError> {
    let partial = staged
        .with_suffix(".partial")
        .map_err(|e| SinkError::new(e.reason(), e.to_string()))?;
    let removed = tokio::time::timeout(CLEANUP_TIMEOUT, async {
        for path in [staged, &partial] {
            node.remove_file(path).await.map_err(|e| driver_error(&e))?;
        }
        Ok(())
    })
    .await;
    removed.unwrap_or_else(|_| {
        Err(SinkError::new(
            "CleanupTimedOut",
            format!("removing {staged} took longer than {CLEANUP_TIMEOUT:?}"),
        ))
    })
}

/// The Transfer and Verify steps.
async fn stage(
    request: &StageRequest,
    node: &EscNode,
    source: ArtifactSource,
    staged: &RemotePath,
    expected: Sha256Digest,
    steps: &Steps,
) -> Result<MoverReport, StepError> {
    steps.enter(MoverStep::Transfer);
    let started = Instant::now();
    make_parent(node, staged)
        .await
        .map_err(StepError::at(MoverStep::Transfer))?;
    let total = source.size;
    let count = Arc::new(AtomicU64::new(0));
    let progress = ProgressTask::start(
        count.clone(),
        total,
        Duration::from_secs(request.progress_interval_seconds),
    );
    let mut hashed = Hashed {
        inner: source,
        hasher: Sha256::new(),
        bytes: 0,
        count,
    };
    let result = transfer(node, &mut hashed, staged).await;
    drop(progress);
    let Hashed {
        inner: source,
        hasher,
        bytes,
        ..
    } = hashed;
    source.close().await;
    let (manifest, db) = result.map_err(StepError::at(MoverStep::Transfer))?;
    let seconds = started.elapsed().as_secs_f64();
    ProgressLine::Progress {
        bytes,
        total_bytes: total,
        bytes_per_second: bytes as f64 / seconds.max(1e-9),
    }
    .print();
    let sha256 = Sha256Digest(hasher.finalize().into());

    steps.enter(MoverStep::Verify);
    let uri = request.store.uri();
    check_artifact(&uri, bytes, sha256, total, expected)
        .map_err(StepError::at(MoverStep::Verify))?;
    let on_node = node.sha256(staged).await;
    let size = node.file_size(staged).await;
    let (on_node, size) = match (on_node, size) {
        (Ok(d), Ok(s)) => (d, s),
        (Err(e), _) | (_, Err(e)) => {
            let mut e = driver_error(&e);
            e.message = format!("node {}: {}", request.node.name, e.message);
            return Err(StepError::at(MoverStep::Verify)(e));
        }
    };
    check_staged(staged, &request.node.name, size, on_node, &db)
        .map_err(StepError::at(MoverStep::Verify))?;
    tracing::info!(%uri, path = %staged, size, sha256 = %on_node, artifact_bytes = bytes, seconds, "database staged");
    Ok(MoverReport::Staged {
        staged_path: staged.to_string(),
        size,
        sha256: on_node,
        artifact_size: bytes,
        artifact_sha256: sha256,
        esc_version: manifest.esc_version.to_string(),
        cluster: manifest.cluster.clone(),
        created_at: manifest.created_at.clone(),
        seconds,
        bytes_per_second: bytes as f64 / seconds.max(1e-9),
    })
}

/// The whole artifact as read (`bytes` with `sha256`, of the `total` the store reported) is
/// the one the restore expects: only then does the staged member come from that backup.
fn check_artifact(
    uri: &str,
    bytes: u64,
    sha256: Sha256Digest,
    total: u64,
    expected: Sha256Digest,
) -> Result<(), SinkError> {
    if sha256 == expected && bytes == total {
        return Ok(());
    }
    Err(SinkError::new(
        "ChecksumMismatch",
        format!(
            "{uri}: the {bytes} bytes read have SHA-256 {sha256}, the restore expects {expected} (the store reports {total} bytes); the artifact was changed or is not the backup's"
        ),
    ))
}

/// The staged file, as the node reports it (`stat`, `sha256sum` after the write), is the
/// manifest's database member.
fn check_staged(
    staged: &RemotePath,
    node: &str,
    size: u64,
    on_node: Sha256Digest,
    db: &Member,
) -> Result<(), SinkError> {
    if on_node == db.sha256 && size == db.size {
        return Ok(());
    }
    Err(SinkError::new(
        "StagedChecksumMismatch",
        format!(
            "{staged} on node {node} holds {size} bytes with SHA-256 {on_node}, the artifact's database member has {} bytes with {}; the node's disk lost or changed data",
            db.size, db.sha256
        ),
    ))
}

/// `mkdir -p` of the staged file's directory (through `sudo` when the request says so: the
/// restore's directory may be root's).
async fn make_parent(node: &EscNode, staged: &RemotePath) -> Result<(), SinkError> {
    let parent = match staged.as_str().rsplit_once('/') {
        Some(("", _)) | None => return Ok(()),
        Some((dir, _)) => dir,
    };
    node.session()
        .run_ok(
            &CommandLine::new("mkdir", ["mkdir", "-p", "--", parent]),
            &CommandLimits::with_timeout(Duration::from_secs(30)),
        )
        .await
        .map(|_| ())
        .map_err(|e| ssh_error(&e))
}

/// Reads the archive through `hashed`: the database member onto the node, the rest checked
/// to the end. Returns the manifest and its database member.
async fn transfer<R: AsyncRead + Unpin>(
    node: &EscNode,
    hashed: &mut R,
    staged: &RemotePath,
) -> Result<(Manifest, Member), SinkError> {
    let reader = ArchiveReader::open(hashed).await.map_err(archive_failure)?;
    let manifest = reader.manifest().clone();
    // A manifest that parsed has exactly one database member; fail closed all the same.
    let db = manifest.database().cloned().ok_or_else(|| {
        SinkError::new(
            "ArtifactMalformed",
            "the artifact's manifest lists no database member",
        )
    })?;
    tracing::info!(cluster = ?manifest.cluster, esc_version = %manifest.esc_version, member = %db.path, size = db.size, "manifest read");
    let mut member = reader.member(&db.name).await.map_err(archive_failure)?;
    let written = node
        .session()
        .upload_from(&mut member, staged)
        .await
        .map_err(|e| upload_failure(&e))?;
    tracing::info!(path = %staged, bytes = written, "database member written");
    let rest = member.into_archive().await.map_err(archive_failure)?;
    let checked = rest.verify().await.map_err(archive_failure)?;
    tracing::info!(
        members = checked,
        "the rest of the artifact read and checked"
    );
    Ok((manifest, db))
}

/// An archive error with the store's own reason when it wraps one.
fn archive_failure(e: ArchiveError) -> SinkError {
    if let ArchiveError::ReadArchive { source } = &e
        && let Some(inner) = source.get_ref().and_then(|i| i.downcast_ref::<SinkError>())
    {
        return inner.clone();
    }
    let reason = match &e {
        // The member's bytes differ from its manifest: the artifact is corrupt.
        ArchiveError::MemberDigest { .. } => "ChecksumMismatch",
        other => other.reason(),
    };
    SinkError::new(reason, e.to_string())
}

/// An upload failure: the archive's verdict (or the store's failure) when that is what stopped
/// it, the transport's otherwise.
fn upload_failure(e: &SshError) -> SinkError {
    if let SshError::LocalIo { source, .. } = e
        && let Some(inner) = source.get_ref()
    {
        if let Some(archive) = inner.downcast_ref::<ArchiveError>() {
            return SinkError::new(
                match archive {
                    ArchiveError::MemberDigest { .. } => "ChecksumMismatch",
                    other => other.reason(),
                },
                archive.to_string(),
            );
        }
        if let Some(store) = inner.downcast_ref::<SinkError>() {
            return store.clone();
        }
    }
    ssh_error(e)
}

/// The artifact as read: hashed and counted on its way to the archive reader.
struct Hashed<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
    /// For the progress lines.
    count: Arc<AtomicU64>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Hashed<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let new = &buf.filled()[before..];
        this.hasher.update(new);
        this.bytes += new.len() as u64;
        this.count.fetch_add(new.len() as u64, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mover::manifest::MemberKind;

    #[test]
    fn the_artifact_must_be_the_expected_one_whole() {
        let d = Sha256Digest([7; 32]);
        let other = Sha256Digest([8; 32]);
        assert!(check_artifact("s3://b/k", 10, d, 10, d).is_ok());
        for (bytes, sha, total) in [(10, other, 10), (9, d, 10), (10, d, 11)] {
            let err = check_artifact("s3://b/k", bytes, sha, total, d).unwrap_err();
            assert_eq!(err.reason, "ChecksumMismatch");
            assert!(err.message.contains(&d.to_string()), "{}", err.message);
        }
    }

    #[test]
    fn the_staged_file_must_be_the_member() {
        let path = RemotePath::new("/var/tmp/r/db.tar.bz2").unwrap();
        let db = Member::new(MemberKind::Database, "esc", &path, 5, Sha256Digest([1; 32])).unwrap();
        assert!(check_staged(&path, "esc", 5, Sha256Digest([1; 32]), &db).is_ok());
        for (size, sha) in [(5, Sha256Digest([2; 32])), (4, Sha256Digest([1; 32]))] {
            let err = check_staged(&path, "esc", size, sha, &db).unwrap_err();
            assert_eq!(err.reason, "StagedChecksumMismatch");
            assert!(
                err.message.contains("/var/tmp/r/db.tar.bz2 on node esc"),
                "{}",
                err.message
            );
        }
    }
}
