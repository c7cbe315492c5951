//! The data mover: what runs inside a backup or restore Job, where an operator restart does not
//! cut a long transfer. Today it owns the artifact: one tar archive, `manifest.json` first, then
//! the database backup, the logs and the dynamic mapping file, streamed from the ESC nodes over
//! SSH straight into the sink, never copied whole to the Job's disk or memory; and, for a
//! restore, the way back: the artifact read from the store front to back and its database
//! member streamed onto a node, both verified as they pass. The format is documented in
//! `docs/artifact-format.md`.
//!
//! Modules, and what each may import (`tests/layering.rs` holds the layer's edges: the mover
//! uses [`crate::esc`] and [`crate::api`] types, never the controllers, plans, runtime, command
//! line or a Kubernetes client):
//! ```text
//! stage    → sink, request, report, archive, manifest, esc (EscNode)
//!                                                        (the restore's staging run)
//! backup   → sink, request, report, archive, manifest, esc (EscNode)
//!                                                        (the backup run: steps, report)
//! sink     → request, archive, manifest, esc (SSH transport), api (storage)
//!                                                        (S3 and SFTP, written and read; the I/O)
//! request  → manifest, esc (RemotePath), api (storage)   (the Job's input; pure)
//! report   → manifest, esc (Sha256Digest), api (Time)   (the Job's output; pure)
//! archive  → manifest, tar, esc (Sha256Digest)          (the streams: writer and reader)
//! tar      → nothing                                     (the ustar/PAX encoding; pure)
//! manifest → esc (vocabulary), api (Time)                (the schema; pure)
//! ```
//!
//! The manifest comes first but holds every member's size and SHA-256, so both are taken on
//! the node before the transfer (`stat`, `sha256sum`); the writer checks the streamed bytes
//! against them and fails on the first difference. The same digests let a restore verify what
//! it reads, on the other end.
//!
//! ```no_run
//! # async fn demo(node: esc_operator::esc::EscNode, manifest_base: esc_operator::mover::Manifest,
//! #               sink: tokio::fs::File) -> Result<(), Box<dyn std::error::Error>> {
//! use esc_operator::esc::RemotePath;
//! use esc_operator::mover::{ArchiveWriter, Member, MemberKind};
//!
//! let file = RemotePath::new("/var/tmp/esc-db.tar.bz2")?;
//! node.backup(&file).await?;
//! // Size and digest on the node first: the manifest, written first, needs them.
//! let db = Member::new(
//!     MemberKind::Database,
//!     "esc-0",
//!     &file,
//!     node.file_size(&file).await?,
//!     node.sha256(&file).await?,
//! )?;
//! let manifest = esc_operator::mover::Manifest { members: vec![db], ..manifest_base };
//! let mut archive = ArchiveWriter::start(sink, &manifest).await?;
//! let mut source = node.session().read_file(&file).await?;
//! archive.append("database", &mut source).await?; // fails if the bytes differ from the digest
//! let (_sink, summary) = archive.finish().await?;
//! println!("{} bytes, sha256 {}", summary.bytes, summary.sha256);
//! # Ok(()) }
//! ```

pub mod archive;
pub mod backup;
pub mod manifest;
pub mod report;
pub mod request;
pub mod sink;
pub mod stage;
mod steps;
mod tar;

pub use archive::{
    ArchiveError, ArchiveReader, ArchiveSummary, ArchiveWriter, COPY_BUFFER, Extracted,
    MAX_HEAD_BYTES, MemberReader, archive_size,
};
pub use manifest::{
    ClusterRef, FORMAT_VERSION, MANIFEST_PATH, Manifest, ManifestError, Member, MemberKind,
    NodeEntry, NodeRole, parse_manifest,
};
pub use report::{MoverReport, MoverStep, ProgressLine};
pub use request::{
    MemberSource, MoverRequest, MoverSsh, REQUEST_ENV, REQUEST_VERSION, RequestError, S3Sink,
    SftpSink, SinkSpec, StageNode, StageRequest,
};
pub use sink::{ArtifactHead, read_head};
