//! One backup transfer, as the mover Job runs it: [`run`] takes a checked [`MoverRequest`] and
//! returns the [`MoverReport`].
//!
//! The steps, each announced on stdout ([`ProgressLine::Step`]):
//! 1. ReadRequest: the mounted credentials and known_hosts are read (before any network I/O).
//! 2. Connect: one SSH connection per node (host keys verified), and the sink opened (the S3
//!    multipart upload created, or the SFTP temporary file), so a wrong credential or a missing
//!    bucket fails before minutes of checksumming.
//! 3. Inspect: each member's size and SHA-256 taken on its node (`stat`, then `openssl dgst` or
//!    `sha256sum`), all members at once; an absent optional member is skipped; the manifest is
//!    complete from here on.
//! 4. Transfer: the archive streamed from the nodes into the sink (progress lines on stdout),
//!    then the sink finished (upload completed, digest metadata, sidecar).
//! 5. Verify: the stored size and digest read back from the store and compared.
//!
//! Any failure after the sink was opened aborts it (no multipart upload, no temporary file
//! left), and so does SIGTERM while the members are inspected or streamed (the Job deleted or
//! past its deadline: the report then says `Cancelled`); a failed verification deletes what was
//! stored. The ESC nodes' files are never
//! touched: they are the controller's to remove.
//!
//! Owns: the run and the mapping of every failure to a step and a stable reason. Imports the
//! rest of the mover (the steps, signal and progress lines shared with the restore's staging
//! run are in `mover::steps`) and the ESC driver ([`EscNode`]).

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use tokio::io::AsyncWrite;

use crate::api::Time;
use crate::esc::{
    CommandLimits, CommandLine, DriverError, EscNode, RemotePath, SessionOptions, SshError,
    SshTarget,
};
use crate::mover::archive::{ArchiveError, ArchiveSummary, ArchiveWriter, archive_size};
use crate::mover::manifest::{Manifest, Member};
use crate::mover::report::{MoverReport, MoverStep, ProgressLine};
use crate::mover::request::{MemberSource, MoverRequest, SinkSpec};
use crate::mover::sink::s3::{self, S3Access, S3Upload};
use crate::mover::sink::sftp::{self, SftpUpload, SshAccess, ssh_error};
use crate::mover::sink::{SinkError, StoreAccess, StoredObject};
use crate::mover::steps::{StepError, Steps, driver_error, progress_lines, terminated};

/// Runs the transfer and returns its report (also when it failed).
pub async fn run(request: &MoverRequest) -> MoverReport {
    let steps = Steps::new();
    match run_steps(request, &steps).await {
        Ok(report) => report,
        Err(StepError { step, error }) => {
            tracing::error!(?step, reason = error.reason, message = %error.message, "backup transfer failed");
            MoverReport::failed(step, error.reason, error.message)
        }
    }
}

/// The opened sink.
enum Sink {
    S3(Box<S3Upload>),
    Sftp(Box<SftpUpload>),
}

impl Sink {
    /// The precise failure behind a write error, when the sink knows it.
    fn failure(&self) -> Option<SinkError> {
        match self {
            Sink::S3(u) => u.failure().cloned(),
            Sink::Sftp(_) => None,
        }
    }

    async fn abort(self) -> Option<SinkError> {
        match self {
            Sink::S3(u) => u.abort().await,
            Sink::Sftp(u) => {
                u.abort().await;
                None
            }
        }
    }
}

impl AsyncWrite for Sink {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Sink::S3(u) => Pin::new(u.as_mut()).poll_write(cx, data),
            Sink::Sftp(u) => Pin::new(u.as_mut()).poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Sink::S3(u) => Pin::new(u.as_mut()).poll_flush(cx),
            Sink::Sftp(u) => Pin::new(u.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Sink::S3(u) => Pin::new(u.as_mut()).poll_shutdown(cx),
            Sink::Sftp(u) => Pin::new(u.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Counts the bytes that reach the sink, for the progress lines.
struct Counted<'a> {
    inner: &'a mut Sink,
    count: Arc<AtomicU64>,
}

impl AsyncWrite for Counted<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut *this.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = &poll {
            this.count.fetch_add(*n as u64, Ordering::Relaxed);
        }
        poll
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_shutdown(cx)
    }
}

async fn run_steps(request: &MoverRequest, steps: &Steps) -> Result<MoverReport, StepError> {
    let started = Instant::now();
    steps.enter(MoverStep::ReadRequest);
    let nodes_access =
        SshAccess::from_files(&request.ssh.credentials_dir, &request.ssh.known_hosts_file)
            .map_err(StepError::at(MoverStep::ReadRequest))?;
    let sink_access = match &request.sink {
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
    let nodes = connect_nodes(request, &nodes_access, connect_timeout)
        .await
        .map_err(StepError::at(MoverStep::Connect))?;
    let mut s3_client = None;
    let mut sink = match (&request.sink, &sink_access) {
        (SinkSpec::S3(spec), StoreAccess::S3(access)) => {
            let client = s3::client(spec, access)
                .await
                .map_err(StepError::at(MoverStep::Connect))?;
            s3_client = Some(client.clone());
            Sink::S3(Box::new(
                S3Upload::start(client, spec)
                    .await
                    .map_err(StepError::at(MoverStep::Connect))?,
            ))
        }
        (SinkSpec::Sftp(spec), StoreAccess::Sftp(access)) => {
            let session = sftp::connect(spec, access, connect_timeout)
                .await
                .map_err(StepError::at(MoverStep::Connect))?;
            Sink::Sftp(Box::new(
                SftpUpload::start(session, spec)
                    .await
                    .map_err(StepError::at(MoverStep::Connect))?,
            ))
        }
        _ => unreachable!("the access is read for the sink's kind"),
    };

    // From here on the sink is open: every failure aborts it.
    let transferred = tokio::select! {
        done = inspect_and_transfer(request, &nodes, &mut sink, steps) => done,
        which = terminated() => Err(StepError {
            step: steps.current(),
            error: SinkError::new(
                "Cancelled",
                format!("the mover received {which} (its Job was deleted or reached its deadline) and stopped; what it had stored is removed"),
            ),
        }),
    };
    for node in nodes.into_values() {
        node.close().await;
    }
    let (summary, members, transfer_seconds) = match transferred {
        Ok(done) => done,
        Err(mut e) => {
            if let Some(abort_failed) = sink.abort().await {
                e.error
                    .message
                    .push_str(&format!("; also: {}", abort_failed.message));
            }
            return Err(e);
        }
    };

    let finish_started = Instant::now();
    let sftp_session = match sink {
        Sink::S3(upload) => {
            upload
                .finish(&summary.sha256)
                .await
                .map_err(StepError::at(MoverStep::Transfer))?;
            None
        }
        Sink::Sftp(upload) => Some(
            upload
                .finish(&summary.sha256)
                .await
                .map_err(StepError::at(MoverStep::Transfer))?,
        ),
    };
    let seconds = transfer_seconds + finish_started.elapsed().as_secs_f64();

    steps.enter(MoverStep::Verify);
    let stored = match (&request.sink, s3_client, sftp_session) {
        (SinkSpec::S3(spec), Some(client), _) => {
            let stored = s3::verify_with(&client, spec).await;
            let checked = stored.and_then(|s| matches(&request.sink, &s, &summary));
            if checked.is_err() {
                let _ = s3::delete_with(&client, spec).await;
            }
            checked
        }
        (SinkSpec::Sftp(spec), _, Some(session)) => {
            let stored = sftp::verify_on(&session, spec).await;
            let checked = stored.and_then(|s| matches(&request.sink, &s, &summary));
            if checked.is_err() {
                let _ = sftp::delete_on(&session, spec).await;
            }
            session.close().await;
            checked
        }
        _ => unreachable!("the finished sink matches its spec"),
    }
    .map_err(StepError::at(MoverStep::Verify))?;

    tracing::info!(uri = %request.sink.uri(), size = stored.size, sha256 = %stored.sha256, seconds, total_seconds = started.elapsed().as_secs_f64(), "backup transfer succeeded");
    Ok(MoverReport::Succeeded {
        uri: request.sink.uri(),
        size: stored.size,
        sha256: stored.sha256,
        members,
        seconds,
        bytes_per_second: if seconds > 0.0 {
            stored.size as f64 / seconds
        } else {
            0.0
        },
    })
}

/// The stored artifact is the one written.
fn matches(
    sink: &SinkSpec,
    stored: &StoredObject,
    summary: &ArchiveSummary,
) -> Result<StoredObject, SinkError> {
    let uri = sink.uri();
    if stored.size != summary.bytes {
        return Err(SinkError::new(
            "SizeMismatch",
            format!(
                "{uri} holds {} bytes, {} were written; the store lost or changed data",
                stored.size, summary.bytes
            ),
        ));
    }
    if stored.sha256 != summary.sha256 {
        return Err(SinkError::new(
            "ChecksumMismatch",
            format!(
                "{uri} records SHA-256 {}, the bytes written had {}",
                stored.sha256, summary.sha256
            ),
        ));
    }
    Ok(*stored)
}

/// One connection per node (members on the same host and port share it).
async fn connect_nodes(
    request: &MoverRequest,
    access: &SshAccess,
    connect_timeout: Duration,
) -> Result<BTreeMap<(String, u16), EscNode>, SinkError> {
    let mut nodes = BTreeMap::new();
    for m in &request.members {
        let addr = (m.host.clone(), m.port);
        if nodes.contains_key(&addr) {
            continue;
        }
        let options = SessionOptions {
            connect_timeout,
            sudo: request.ssh.sudo,
            ..SessionOptions::default()
        };
        let node = EscNode::connect(
            SshTarget::new(&m.host, m.port, &request.ssh.user),
            &access.credentials,
            &access.known_hosts,
            options,
        )
        .await
        .map_err(|e| {
            let mut e = driver_error(&e);
            e.message = format!("node {}: {}", m.node, e.message);
            e
        })?;
        tracing::info!(node = %m.node, host = %m.host, port = m.port, "connected");
        nodes.insert(addr, node);
    }
    Ok(nodes)
}

/// Whether `path` exists on the node (`test -e`): exit 0 yes, 1 no, anything else an error.
async fn exists(node: &EscNode, path: &RemotePath) -> Result<bool, SshError> {
    let out = node
        .session()
        .run(
            &CommandLine::new("test", ["test", "-e", path.as_str()]),
            &CommandLimits::with_timeout(Duration::from_secs(30)),
        )
        .await?;
    match out.exit_status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(SshError::RemoteFailed {
            node: node.session().node().clone(),
            command: format!("test -e {path}"),
            exit: out.exit_status.to_string(),
            stderr: out.stderr_quoted(),
        }),
    }
}

async fn inspect(
    request: &MoverRequest,
    nodes: &BTreeMap<(String, u16), EscNode>,
) -> Result<(Manifest, Vec<(MemberSource, Member)>), SinkError> {
    // Every member at once (one SSH channel each, on the node's one connection): the nodes
    // hash their files side by side instead of one after the other.
    let inspected = futures::future::try_join_all(
        request
            .members
            .iter()
            .map(|source| inspect_member(source, nodes)),
    )
    .await?;
    // In the request's order, whatever order they finished in.
    let members: Vec<(MemberSource, Member)> = inspected.into_iter().flatten().collect();
    let now =
        Time(Timestamp::from_second(Timestamp::now().as_second()).expect("now is a valid time"));
    let mut manifest = request.manifest.clone();
    // A clock behind the controller's must not make the manifest invalid.
    manifest.finished_at = if now < manifest.created_at {
        manifest.created_at.clone()
    } else {
        now
    };
    manifest.members = members.iter().map(|(_, m)| m.clone()).collect();
    manifest
        .validate()
        .map_err(|e| SinkError::new(e.reason(), e.to_string()))?;
    Ok((manifest, members))
}

/// One member's size and SHA-256, taken on its node; `None` for an absent optional member.
async fn inspect_member(
    source: &MemberSource,
    nodes: &BTreeMap<(String, u16), EscNode>,
) -> Result<Option<(MemberSource, Member)>, SinkError> {
    let node = &nodes[&(source.host.clone(), source.port)];
    let path = RemotePath::new(source.path.clone())
        .map_err(|e| SinkError::new(e.reason(), e.to_string()))?;
    let on = |e: &DriverError| {
        let mut e = driver_error(e);
        e.message = format!("node {}: {}", source.node, e.message);
        e
    };
    if !exists(node, &path)
        .await
        .map_err(|e| on(&DriverError::Ssh(e)))?
    {
        if source.optional {
            tracing::info!(node = %source.node, %path, kind = %source.kind, "optional member absent: skipped");
            return Ok(None);
        }
        return Err(SinkError::new(
            "MemberMissing",
            format!(
                "{} file {path} does not exist on node {}; the file the backup left there was removed, or the backup must be run again",
                source.kind, source.node
            ),
        ));
    }
    let size = node.file_size(&path).await.map_err(|e| on(&e))?;
    let sha256 = node.sha256(&path).await.map_err(|e| on(&e))?;
    let member = Member::new(source.kind, &source.node, &path, size, sha256)
        .map_err(|e| SinkError::new(e.reason(), e.to_string()))?;
    tracing::info!(member = %member.name, node = %source.node, %path, size, %sha256, "member inspected");
    Ok(Some((source.clone(), member)))
}

async fn inspect_and_transfer(
    request: &MoverRequest,
    nodes: &BTreeMap<(String, u16), EscNode>,
    sink: &mut Sink,
    steps: &Steps,
) -> Result<(ArchiveSummary, Vec<Member>, f64), StepError> {
    steps.enter(MoverStep::Inspect);
    let (manifest, members) = inspect(request, nodes)
        .await
        .map_err(StepError::at(MoverStep::Inspect))?;
    let total = archive_size(&manifest).map_err(|e| StepError {
        step: MoverStep::Inspect,
        error: SinkError::new(e.reason(), e.to_string()),
    })?;

    steps.enter(MoverStep::Transfer);
    let started = Instant::now();
    let count = Arc::new(AtomicU64::new(0));
    let progress = tokio::spawn(progress_lines(
        count.clone(),
        total,
        Duration::from_secs(request.progress_interval_seconds),
    ));
    let result = transfer(&manifest, &members, nodes, sink, count.clone()).await;
    progress.abort();
    let summary = result.map_err(|e| StepError {
        step: MoverStep::Transfer,
        error: e,
    })?;
    ProgressLine::Progress {
        bytes: summary.bytes,
        total_bytes: total,
        bytes_per_second: summary.bytes as f64 / started.elapsed().as_secs_f64().max(1e-9),
    }
    .print();
    Ok((summary, manifest.members, started.elapsed().as_secs_f64()))
}

/// Why the archive could not be written.
enum WriteFailure {
    Archive(ArchiveError),
    Read(SshError),
}

async fn transfer(
    manifest: &Manifest,
    members: &[(MemberSource, Member)],
    nodes: &BTreeMap<(String, u16), EscNode>,
    sink: &mut Sink,
    count: Arc<AtomicU64>,
) -> Result<ArchiveSummary, SinkError> {
    let mut out = Counted { inner: sink, count };
    let written = write_archive(manifest, members, nodes, &mut out).await;
    drop(out);
    match written {
        Ok(summary) => Ok(summary),
        // A part that failed is the precise reason behind any write error.
        Err(_) if sink.failure().is_some() => Err(sink.failure().expect("checked")),
        Err(WriteFailure::Read(e)) => Err(ssh_error(&e)),
        Err(WriteFailure::Archive(e)) => Err(archive_failure(e)),
    }
}

/// An archive error with the transport's or the sink's own reason when it wraps one.
fn archive_failure(e: ArchiveError) -> SinkError {
    if let ArchiveError::WriteArchive { source } | ArchiveError::ReadMember { source, .. } = &e {
        if let Some(inner) = source.get_ref().and_then(|i| i.downcast_ref::<SinkError>()) {
            return inner.clone();
        }
        if let Some(ssh) = source.get_ref().and_then(|i| i.downcast_ref::<SshError>()) {
            let mut s = ssh_error(ssh);
            s.message = format!("{e}: {}", s.message);
            return s;
        }
    }
    SinkError::new(e.reason(), e.to_string())
}

async fn write_archive(
    manifest: &Manifest,
    members: &[(MemberSource, Member)],
    nodes: &BTreeMap<(String, u16), EscNode>,
    out: &mut Counted<'_>,
) -> Result<ArchiveSummary, WriteFailure> {
    let mut writer = ArchiveWriter::start(out, manifest)
        .await
        .map_err(WriteFailure::Archive)?;
    for (source, member) in members {
        let node = &nodes[&(source.host.clone(), source.port)];
        let path = RemotePath::new(source.path.clone())
            .map_err(|e| WriteFailure::Read(SshError::Path(e)))?;
        let mut reader = node
            .session()
            .read_file(&path)
            .await
            .map_err(WriteFailure::Read)?;
        writer
            .append(&member.name, &mut reader)
            .await
            .map_err(WriteFailure::Archive)?;
        tracing::info!(member = %member.name, bytes = member.size, "member streamed");
    }
    let (_, summary) = writer.finish().await.map_err(WriteFailure::Archive)?;
    Ok(summary)
}
