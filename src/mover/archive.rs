//! The artifact as a stream: a POSIX ustar archive written and read front to back, never held
//! whole in memory or on disk.
//!
//! Writing ([`ArchiveWriter`]): `manifest.json` first, then each member in the manifest's order,
//! copied from any [`AsyncRead`] through one fixed buffer of [`COPY_BUFFER`] bytes. The manifest
//! already holds every member's size and SHA-256 (taken on the node before the transfer), so the
//! writer checks the bytes against them as they pass and fails on the first difference; the tar
//! header needs the size before the data anyway. The SHA-256 of the whole archive is taken from
//! the bytes as written.
//!
//! Reading ([`ArchiveReader`]): the manifest first, then one member as an [`AsyncRead`]
//! ([`MemberReader`]) that ends with an error, never a clean end of file, when the member's bytes
//! do not match the manifest — so a consumer such as [`crate::esc::SshSession::upload_from`] never
//! commits a corrupt file. Members before it are skipped through the same fixed buffer.
//!
//! Memory is flat in the artifact's size: the only buffers are one [`COPY_BUFFER`] per writer or
//! reader, a header's few blocks, and the manifest (at most [`MAX_MANIFEST_BYTES`]). Nothing
//! here collects member data into a growing buffer.
//!
//! Owns: [`ArchiveWriter`], [`ArchiveReader`], [`MemberReader`], [`ArchiveError`] and the order
//! and framing rules between the manifest and the tar entries. Imports
//! [`crate::mover::manifest`], the encoding in `mover::tar` and [`Sha256Digest`]; the byte
//! streams are the caller's.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf, Take};

use crate::esc::Sha256Digest;
use crate::mover::manifest::{
    MANIFEST_PATH, MAX_MANIFEST_BYTES, Manifest, ManifestError, Member, parse_manifest,
};
use crate::mover::tar::{
    BLOCK, HeaderError, OCTAL_SIZE_MAX, PaxOverrides, entry_headers, padding, parse_header,
    parse_pax,
};

/// The one buffer member data passes through, in the writer and in the reader.
pub const COPY_BUFFER: usize = 64 * 1024;

/// The largest PAX extended header a reader accepts (ours hold one short record).
const MAX_PAX_BYTES: u64 = 64 * 1024;

/// The most bytes of an artifact's start that [`ArchiveReader::open`] needs for any manifest
/// this format writes: its header block (the writer never gives `manifest.json` an extended
/// header, but a block for one and its record is allowed for), the manifest of at most
/// [`MAX_MANIFEST_BYTES`], and its padding. A preflight reads no more than this of the store:
/// what does not fit is not an artifact this build reads.
pub const MAX_HEAD_BYTES: u64 = MAX_MANIFEST_BYTES + 4 * BLOCK as u64;

/// Why writing or reading an artifact failed. After a writer's error the archive written so far
/// is incomplete and must be discarded (the writer refuses to go on, and never writes the end
/// marker, so what was written is also not a valid archive).
#[derive(Debug, Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The writer was given members out of the manifest's order, or one it does not list.
    #[error("member {got:?} was appended, but the manifest's next member is {}", expected.as_deref().unwrap_or("none (all were written)"))]
    OutOfOrder {
        expected: Option<String>,
        got: String,
    },
    /// The archive was finished before every member was written.
    #[error("the archive was finished without the members {missing:?}")]
    MissingMembers { missing: Vec<String> },
    /// An earlier error left the archive incomplete.
    #[error("an earlier error left this archive incomplete; it must be discarded")]
    Poisoned,
    /// A member's source ended before its declared size.
    #[error(
        "member {member:?}: the source ended after {received} of the {declared} bytes the manifest declares"
    )]
    MemberTruncated {
        member: String,
        declared: u64,
        received: u64,
    },
    /// A member's source gave more than its declared size.
    #[error(
        "member {member:?}: the source gave more than the {declared} bytes the manifest declares"
    )]
    MemberOverrun { member: String, declared: u64 },
    /// A member's bytes are not the ones the manifest describes.
    #[error(
        "member {member:?}: SHA-256 {actual} of the bytes differs from {declared} in the manifest"
    )]
    MemberDigest {
        member: String,
        declared: Sha256Digest,
        actual: Sha256Digest,
    },
    /// Reading a member's source (for example the SSH transfer from the node) failed.
    #[error("reading member {member:?}: {source}")]
    ReadMember { member: String, source: io::Error },
    /// Writing the archive (for example the upload) failed.
    #[error("writing the archive: {source}")]
    WriteArchive { source: io::Error },
    /// Reading the archive failed (not its end: see [`ArchiveError::Truncated`]).
    #[error("reading the archive: {source}")]
    ReadArchive { source: io::Error },
    /// Writing an extracted member failed.
    #[error("writing member {member:?}: {source}")]
    WriteMember { member: String, source: io::Error },
    /// The archive ended early.
    #[error("the archive is truncated: {detail}")]
    Truncated { detail: String },
    /// The archive is not one this format writes.
    #[error("the archive is malformed: {detail}")]
    Malformed { detail: String },
    /// The manifest lists no member by this name.
    #[error("the artifact has no member {name:?}")]
    NoSuchMember { name: String },
}

impl ArchiveError {
    /// A short, stable CamelCase reason: a Kubernetes condition reason and a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            ArchiveError::Manifest(e) => e.reason(),
            ArchiveError::OutOfOrder { .. }
            | ArchiveError::MissingMembers { .. }
            | ArchiveError::Poisoned => "ArtifactWriteOrder",
            ArchiveError::MemberTruncated { .. } | ArchiveError::MemberOverrun { .. } => {
                "MemberSizeMismatch"
            }
            ArchiveError::MemberDigest { .. } => "ChecksumMismatch",
            ArchiveError::ReadMember { .. } => "MemberReadFailed",
            ArchiveError::WriteArchive { .. } => "ArtifactWriteFailed",
            ArchiveError::ReadArchive { .. } => "ArtifactReadFailed",
            ArchiveError::WriteMember { .. } => "MemberWriteFailed",
            ArchiveError::Truncated { .. } => "ArtifactTruncated",
            ArchiveError::Malformed { .. } => "ArtifactMalformed",
            ArchiveError::NoSuchMember { .. } => "NoSuchMember",
        }
    }

    fn malformed(detail: impl Into<String>) -> Self {
        ArchiveError::Malformed {
            detail: detail.into(),
        }
    }

    fn truncated(detail: impl Into<String>) -> Self {
        ArchiveError::Truncated {
            detail: detail.into(),
        }
    }

    /// An error from reading a [`MemberReader`]: the verdict it carries, or the archive's own.
    fn from_member_read(e: io::Error) -> Self {
        e.downcast::<ArchiveError>()
            .unwrap_or_else(|source| ArchiveError::ReadArchive { source })
    }
}

impl From<HeaderError> for ArchiveError {
    fn from(e: HeaderError) -> Self {
        ArchiveError::Malformed { detail: e.0 }
    }
}

/// A finished archive: what to record beside it (its own digest cannot be inside it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArchiveSummary {
    /// The archive's size in bytes.
    pub bytes: u64,
    /// The SHA-256 of the archive's bytes as written.
    pub sha256: Sha256Digest,
}

/// The size in bytes of the archive [`ArchiveWriter`] writes for `manifest`: known before the
/// first byte, since the manifest holds every member's size (a progress report's total).
pub fn archive_size(manifest: &Manifest) -> Result<u64, ArchiveError> {
    let mtime = 0; // the header's length does not depend on the time
    let json = manifest.to_json()?.len() as u64;
    let mut total = entry_headers(MANIFEST_PATH, json, mtime).len() as u64 + json;
    total += padding(json) as u64;
    for m in &manifest.members {
        total += entry_headers(&m.path, m.size, mtime).len() as u64 + m.size;
        total += padding(m.size) as u64;
    }
    Ok(total + 2 * BLOCK as u64)
}

/// The output, hashed and counted as it is written.
struct HashedOut<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: AsyncWrite + Unpin> HashedOut<W> {
    async fn write(&mut self, data: &[u8]) -> Result<(), ArchiveError> {
        self.inner
            .write_all(data)
            .await
            .map_err(|source| ArchiveError::WriteArchive { source })?;
        self.hasher.update(data);
        self.bytes += data.len() as u64;
        Ok(())
    }
}

/// Writes an artifact to `W`: [`ArchiveWriter::start`] (the manifest), one
/// [`ArchiveWriter::append`] per member in the manifest's order, [`ArchiveWriter::finish`].
pub struct ArchiveWriter<W> {
    out: HashedOut<W>,
    members: Vec<Member>,
    /// The index of the next member to append.
    next: usize,
    /// Every entry's modification time: the manifest's `finishedAt`, so the same content gives
    /// the same archive, byte for byte.
    mtime: u64,
    /// The copy buffer, allocated once.
    buf: Box<[u8]>,
    /// Set while an entry is being written; still set after a failure.
    poisoned: bool,
}

impl<W> fmt::Debug for ArchiveWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArchiveWriter")
            .field("written", &self.out.bytes)
            .field("next", &self.members.get(self.next).map(|m| &m.name))
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

impl<W: AsyncWrite + Unpin> ArchiveWriter<W> {
    /// Starts an archive on `out` and writes its first member, `manifest.json`. The manifest
    /// must pass [`Manifest::to_json`]'s checks.
    pub async fn start(out: W, manifest: &Manifest) -> Result<Self, ArchiveError> {
        let json = manifest.to_json()?;
        let mtime = manifest
            .finished_at
            .0
            .as_second()
            .clamp(0, OCTAL_SIZE_MAX as i64) as u64;
        let mut writer = ArchiveWriter {
            out: HashedOut {
                inner: out,
                hasher: Sha256::new(),
                bytes: 0,
            },
            members: manifest.members.clone(),
            next: 0,
            mtime,
            buf: vec![0; COPY_BUFFER].into_boxed_slice(),
            poisoned: true,
        };
        writer
            .write_header(MANIFEST_PATH, json.len() as u64)
            .await?;
        writer.out.write(&json).await?;
        writer.pad(json.len() as u64).await?;
        writer.poisoned = false;
        Ok(writer)
    }

    /// The member [`ArchiveWriter::append`] expects next; `None` when all are written.
    pub fn next_member(&self) -> Option<&Member> {
        self.members.get(self.next)
    }

    /// Appends the member called `name` (the manifest's next one) from `source`, which must give
    /// exactly the member's declared size and SHA-256 and then end. `source` is read to its end:
    /// a transfer gives its verdict there ([`crate::esc::RemoteFileReader`]).
    ///
    /// On a mismatch the bytes already copied are in the output: the error says the archive
    /// must be discarded, and this writer refuses any further call.
    pub async fn append<R: AsyncRead + Unpin>(
        &mut self,
        name: &str,
        source: &mut R,
    ) -> Result<(), ArchiveError> {
        if self.poisoned {
            return Err(ArchiveError::Poisoned);
        }
        let member = match self.members.get(self.next) {
            Some(m) if m.name == name => m.clone(),
            other => {
                return Err(ArchiveError::OutOfOrder {
                    expected: other.map(|m| m.name.clone()),
                    got: name.to_owned(),
                });
            }
        };
        self.poisoned = true;
        self.write_header(&member.path, member.size).await?;
        let mut hasher = Sha256::new();
        let mut copied = 0u64;
        loop {
            let n =
                source
                    .read(&mut self.buf)
                    .await
                    .map_err(|source| ArchiveError::ReadMember {
                        member: member.name.clone(),
                        source,
                    })?;
            if n == 0 {
                break;
            }
            if copied + n as u64 > member.size {
                return Err(ArchiveError::MemberOverrun {
                    member: member.name,
                    declared: member.size,
                });
            }
            hasher.update(&self.buf[..n]);
            self.out.write(&self.buf[..n]).await?;
            copied += n as u64;
        }
        if copied != member.size {
            return Err(ArchiveError::MemberTruncated {
                member: member.name,
                declared: member.size,
                received: copied,
            });
        }
        let actual = Sha256Digest(hasher.finalize().into());
        if actual != member.sha256 {
            return Err(ArchiveError::MemberDigest {
                member: member.name,
                declared: member.sha256,
                actual,
            });
        }
        self.pad(member.size).await?;
        self.next += 1;
        self.poisoned = false;
        Ok(())
    }

    /// Writes the end-of-archive marker and flushes (does not shut `out` down: the caller
    /// completes its upload). Returns `out` and the archive's size and SHA-256.
    pub async fn finish(mut self) -> Result<(W, ArchiveSummary), ArchiveError> {
        if self.poisoned {
            return Err(ArchiveError::Poisoned);
        }
        if self.next < self.members.len() {
            return Err(ArchiveError::MissingMembers {
                missing: self.members[self.next..]
                    .iter()
                    .map(|m| m.name.clone())
                    .collect(),
            });
        }
        self.out.write(&[0; 2 * BLOCK]).await?;
        self.out
            .inner
            .flush()
            .await
            .map_err(|source| ArchiveError::WriteArchive { source })?;
        let summary = ArchiveSummary {
            bytes: self.out.bytes,
            sha256: Sha256Digest(self.out.hasher.finalize().into()),
        };
        Ok((self.out.inner, summary))
    }

    async fn write_header(&mut self, path: &str, size: u64) -> Result<(), ArchiveError> {
        let headers = entry_headers(path, size, self.mtime);
        self.out.write(&headers).await
    }

    /// Zeros up to the next block boundary after `size` bytes of data.
    async fn pad(&mut self, size: u64) -> Result<(), ArchiveError> {
        self.out.write(&[0; BLOCK][..padding(size)]).await
    }
}

/// One entry's header, PAX overrides applied.
#[derive(Debug, PartialEq, Eq)]
struct EntryHeader {
    path: String,
    size: u64,
}

/// Reads one block, or says the archive ended where `what` was expected.
async fn read_block<R: AsyncRead + Unpin>(
    source: &mut R,
    what: &str,
) -> Result<[u8; BLOCK], ArchiveError> {
    let mut block = [0u8; BLOCK];
    read_exactly(source, &mut block, &format!("where {what} was expected")).await?;
    Ok(block)
}

/// Fills `buf`, or says the archive ended `at` some place.
async fn read_exactly<R: AsyncRead + Unpin>(
    source: &mut R,
    buf: &mut [u8],
    at: &str,
) -> Result<(), ArchiveError> {
    match source.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            Err(ArchiveError::truncated(format!("it ends {at}")))
        }
        Err(source) => Err(ArchiveError::ReadArchive { source }),
    }
}

/// Reads and discards exactly `n` bytes through `buf`.
async fn skip<R: AsyncRead + Unpin>(
    source: &mut R,
    mut n: u64,
    buf: &mut [u8],
    what: &str,
) -> Result<(), ArchiveError> {
    while n > 0 {
        let want = n.min(buf.len() as u64) as usize;
        let got = source
            .read(&mut buf[..want])
            .await
            .map_err(|source| ArchiveError::ReadArchive { source })?;
        if got == 0 {
            return Err(ArchiveError::truncated(format!("it ends inside {what}")));
        }
        n -= got as u64;
    }
    Ok(())
}

/// The next entry's header, or `None` at the end-of-archive marker (a block of zeros). Only
/// regular files are accepted, optionally preceded by one PAX extended header.
async fn read_entry_header<R: AsyncRead + Unpin>(
    source: &mut R,
    what: &str,
) -> Result<Option<EntryHeader>, ArchiveError> {
    let block = read_block(source, what).await?;
    if block.iter().all(|&b| b == 0) {
        return Ok(None);
    }
    let mut header = parse_header(&block)?;
    let mut overrides = PaxOverrides::default();
    if header.typeflag == b'x' {
        if header.size > MAX_PAX_BYTES {
            return Err(ArchiveError::malformed(format!(
                "a PAX extended header of {} bytes (at most {MAX_PAX_BYTES})",
                header.size
            )));
        }
        let mut data = vec![0; header.size as usize];
        read_exactly(source, &mut data, "inside a PAX header").await?;
        let mut pad = [0u8; BLOCK];
        skip(
            source,
            padding(header.size) as u64,
            &mut pad,
            "a PAX header",
        )
        .await?;
        overrides = parse_pax(&data)?;
        header = parse_header(&read_block(source, what).await?)?;
    }
    if !matches!(header.typeflag, b'0' | 0) {
        return Err(ArchiveError::malformed(format!(
            "entry {:?} is not a regular file (type {:?}); an artifact holds only files",
            header.path,
            char::from(header.typeflag)
        )));
    }
    Ok(Some(EntryHeader {
        path: overrides.path.unwrap_or(header.path),
        size: overrides.size.unwrap_or(header.size),
    }))
}

/// Reads an artifact front to back: [`ArchiveReader::open`] reads and checks the manifest;
/// then one member is extracted ([`ArchiveReader::member`], [`ArchiveReader::extract_to`]) or
/// every member is checked ([`ArchiveReader::verify`]).
///
/// The archive must hold exactly the manifest's members, in its order, with the manifest's
/// sizes: any other entry is refused, so what a restore reads is what the manifest describes.
pub struct ArchiveReader<R> {
    source: R,
    manifest: Manifest,
    /// The index of the member whose header comes next.
    next: usize,
    /// The copy buffer, allocated once.
    buf: Box<[u8]>,
}

impl<R> fmt::Debug for ArchiveReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArchiveReader")
            .field("cluster", &self.manifest.cluster)
            .field(
                "next",
                &self.manifest.members.get(self.next).map(|m| &m.name),
            )
            .finish_non_exhaustive()
    }
}

/// A member read to its end and found as the manifest describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extracted {
    pub bytes: u64,
    pub sha256: Sha256Digest,
}

impl<R: AsyncRead + Unpin> ArchiveReader<R> {
    /// Reads the first entry, which must be `manifest.json` of a format version this build
    /// reads ([`parse_manifest`]).
    pub async fn open(mut source: R) -> Result<Self, ArchiveError> {
        let header = read_entry_header(&mut source, "the manifest")
            .await?
            .ok_or_else(|| ArchiveError::malformed("the archive is empty"))?;
        if header.path != MANIFEST_PATH {
            return Err(ArchiveError::malformed(format!(
                "the first entry is {:?}, not {MANIFEST_PATH}: not an esc-operator artifact",
                header.path
            )));
        }
        if header.size > MAX_MANIFEST_BYTES {
            return Err(ManifestError::Unreadable {
                detail: format!(
                    "{} bytes, more than the {MAX_MANIFEST_BYTES} a manifest may have",
                    header.size
                ),
            }
            .into());
        }
        let mut json = vec![0; header.size as usize];
        read_exactly(&mut source, &mut json, "inside the manifest").await?;
        let mut buf = vec![0; COPY_BUFFER].into_boxed_slice();
        skip(
            &mut source,
            padding(header.size) as u64,
            &mut buf,
            "the manifest",
        )
        .await?;
        let manifest = parse_manifest(&json)?;
        Ok(ArchiveReader {
            source,
            manifest,
            next: 0,
            buf,
        })
    }

    /// The artifact's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The member called `name`, as a stream of its bytes that ends with an error if they do
    /// not match the manifest. The members before it are skipped: their framing is checked,
    /// their content is not (a restore of the database does not depend on intact logs).
    pub async fn member(mut self, name: &str) -> Result<MemberReader<R>, ArchiveError> {
        let member = self.seek(name).await?;
        let rest = Rest {
            manifest: self.manifest,
            next: self.next + 1,
            buf: self.buf,
        };
        let mut reader = MemberReader::new(self.source, member);
        reader.rest = Some(rest);
        Ok(reader)
    }

    /// Copies the member called `name` into `sink` (flushed, not shut down) through the fixed
    /// buffer. On an error the sink holds a partial or wrong copy and must be discarded; a
    /// consumer that cannot discard should read [`ArchiveReader::member`] instead.
    pub async fn extract_to<W: AsyncWrite + Unpin>(
        mut self,
        name: &str,
        sink: &mut W,
    ) -> Result<Extracted, ArchiveError> {
        let member = self.seek(name).await?;
        let mut reader = MemberReader::new(&mut self.source, member);
        let sink_err = |source| ArchiveError::WriteMember {
            member: name.to_owned(),
            source,
        };
        loop {
            let n = reader
                .read(&mut self.buf)
                .await
                .map_err(ArchiveError::from_member_read)?;
            if n == 0 {
                break;
            }
            sink.write_all(&self.buf[..n]).await.map_err(sink_err)?;
        }
        sink.flush().await.map_err(sink_err)?;
        let sha256 = reader
            .verified()
            .expect("a member read to its end without an error is verified");
        Ok(Extracted {
            bytes: reader.member().size,
            sha256,
        })
    }

    /// Skips the members before the one called `name` and reads its header.
    async fn seek(&mut self, name: &str) -> Result<Member, ArchiveError> {
        let index = self
            .manifest
            .members
            .iter()
            .position(|m| m.name == name)
            .ok_or_else(|| ArchiveError::NoSuchMember {
                name: name.to_owned(),
            })?;
        while self.next < index {
            let member = self.manifest.members[self.next].clone();
            self.expect_header(&member).await?;
            let what = format!("member {:?}", member.name);
            let len = member.size + padding(member.size) as u64;
            skip(&mut self.source, len, &mut self.buf, &what).await?;
            self.next += 1;
        }
        let member = self.manifest.members[index].clone();
        self.expect_header(&member).await?;
        Ok(member)
    }

    /// Reads the rest of the archive and checks every member's size and SHA-256, then the
    /// end-of-archive marker and that nothing but zeros follows it. Returns how many members
    /// were checked.
    pub async fn verify(mut self) -> Result<usize, ArchiveError> {
        let mut checked = 0;
        while self.next < self.manifest.members.len() {
            let member = self.manifest.members[self.next].clone();
            self.expect_header(&member).await?;
            let what = format!("the padding of member {:?}", member.name);
            let pad = padding(member.size) as u64;
            let mut reader = MemberReader::new(&mut self.source, member);
            loop {
                let n = reader
                    .read(&mut self.buf)
                    .await
                    .map_err(ArchiveError::from_member_read)?;
                if n == 0 {
                    break;
                }
            }
            skip(&mut self.source, pad, &mut self.buf, &what).await?;
            self.next += 1;
            checked += 1;
        }
        for what in [
            "the end-of-archive marker",
            "the end-of-archive marker's second block",
        ] {
            if read_block(&mut self.source, what).await? != [0; BLOCK] {
                return Err(ArchiveError::malformed(format!(
                    "an entry the manifest does not list, where {what} was expected"
                )));
            }
        }
        loop {
            let n = self
                .source
                .read(&mut self.buf)
                .await
                .map_err(|source| ArchiveError::ReadArchive { source })?;
            if n == 0 {
                return Ok(checked);
            }
            if self.buf[..n].iter().any(|&b| b != 0) {
                return Err(ArchiveError::malformed(
                    "data after the end-of-archive marker",
                ));
            }
        }
    }

    /// Reads the next header and checks it is `member`'s, with the manifest's size.
    async fn expect_header(&mut self, member: &Member) -> Result<(), ArchiveError> {
        let what = format!("member {:?}", member.name);
        let header = read_entry_header(&mut self.source, &what)
            .await?
            .ok_or_else(|| ArchiveError::malformed(format!("the archive ends before {what}")))?;
        if header.path != member.path {
            return Err(ArchiveError::malformed(format!(
                "entry {:?} where the manifest puts {:?}",
                header.path, member.path
            )));
        }
        if header.size != member.size {
            return Err(ArchiveError::malformed(format!(
                "entry {:?} holds {} bytes, the manifest says {}",
                member.path, header.size, member.size
            )));
        }
        Ok(())
    }
}

/// How a [`MemberReader`] ended.
#[derive(Clone, Copy, Debug)]
enum Verdict {
    Verified(Sha256Digest),
    Mismatch(Sha256Digest),
    Truncated(u64),
}

/// What a [`MemberReader`] from [`ArchiveReader::member`] keeps of its archive reader, to give
/// it back positioned after the member ([`MemberReader::into_archive`]).
struct Rest {
    manifest: Manifest,
    /// The index of the member after this one.
    next: usize,
    buf: Box<[u8]>,
}

/// One member's bytes, read from the archive: an [`AsyncRead`] that, once the declared size is
/// read, ends cleanly only if the SHA-256 matches the manifest, and with an error otherwise (or
/// when the archive ends early). The error's inner error (via [`io::Error::get_ref`]) is the
/// [`ArchiveError`].
pub struct MemberReader<R> {
    inner: Take<R>,
    member: Member,
    hasher: Sha256,
    verdict: Option<Verdict>,
    /// Set when the reader came from [`ArchiveReader::member`].
    rest: Option<Rest>,
}

impl<R: AsyncRead> fmt::Debug for MemberReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemberReader")
            .field("member", &self.member.name)
            .field("remaining", &self.inner.limit())
            .field("verdict", &self.verdict)
            .finish_non_exhaustive()
    }
}

impl<R: AsyncRead + Unpin> MemberReader<R> {
    fn new(source: R, member: Member) -> Self {
        MemberReader {
            inner: source.take(member.size),
            member,
            hasher: Sha256::new(),
            verdict: None,
            rest: None,
        }
    }

    /// The archive reader again, positioned after this member, to read on: a restore reads the
    /// artifact to its end ([`ArchiveReader::verify`]) so that the whole artifact's digest is
    /// known, after streaming the member it needs. What the caller left unread of the member is
    /// read and checked first: the member's error, if its bytes do not match, is returned here.
    pub async fn into_archive(mut self) -> Result<ArchiveReader<R>, ArchiveError> {
        let Some(mut rest) = self.rest.take() else {
            // Only readers from `ArchiveReader::member` own their archive's source.
            return Err(ArchiveError::Poisoned);
        };
        loop {
            let n = self
                .read(&mut rest.buf)
                .await
                .map_err(ArchiveError::from_member_read)?;
            if n == 0 {
                break;
            }
        }
        let mut source = self.inner.into_inner();
        let what = format!("the padding of member {:?}", self.member.name);
        skip(
            &mut source,
            padding(self.member.size) as u64,
            &mut rest.buf,
            &what,
        )
        .await?;
        Ok(ArchiveReader {
            source,
            manifest: rest.manifest,
            next: rest.next,
            buf: rest.buf,
        })
    }

    /// What the manifest says of this member.
    pub fn member(&self) -> &Member {
        &self.member
    }

    /// The member's SHA-256, once it was read to its end and matched the manifest.
    pub fn verified(&self) -> Option<Sha256Digest> {
        match self.verdict {
            Some(Verdict::Verified(d)) => Some(d),
            _ => None,
        }
    }

    fn verdict_result(&self) -> io::Result<()> {
        let m = &self.member;
        let (kind, err) = match self.verdict {
            None | Some(Verdict::Verified(_)) => return Ok(()),
            Some(Verdict::Mismatch(actual)) => (
                io::ErrorKind::InvalidData,
                ArchiveError::MemberDigest {
                    member: m.name.clone(),
                    declared: m.sha256,
                    actual,
                },
            ),
            Some(Verdict::Truncated(received)) => (
                io::ErrorKind::UnexpectedEof,
                ArchiveError::truncated(format!(
                    "it ends after {received} of the {} bytes of member {:?}",
                    m.size, m.name
                )),
            ),
        };
        Err(io::Error::new(kind, err))
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for MemberReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.verdict.is_some() {
            return Poll::Ready(this.verdict_result());
        }
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let new = &buf.filled()[before..];
        if !new.is_empty() {
            this.hasher.update(new);
            return Poll::Ready(Ok(()));
        }
        // The end: of the member (the limit is reached) or of the archive (it is not).
        let remaining = this.inner.limit();
        this.verdict = Some(if remaining > 0 {
            Verdict::Truncated(this.member.size - remaining)
        } else {
            let actual = Sha256Digest(std::mem::take(&mut this.hasher).finalize().into());
            if actual == this.member.sha256 {
                Verdict::Verified(actual)
            } else {
                Verdict::Mismatch(actual)
            }
        });
        Poll::Ready(this.verdict_result())
    }
}

#[cfg(test)]
mod tests;
