//! The archive streams, with data made up in memory: round trips, a 50 MiB member through a
//! pipe with no buffer that grows, every kind of corruption, and the system's `tar` reading what
//! the writer wrote.

use std::process::Command;

use super::*;
use crate::mover::manifest::MemberKind;
use crate::mover::manifest::tests::{digest_of, manifest_with, member};

/// Deterministic pseudo-random bytes, made as they are read (never stored), that record the
/// largest read asked of them.
struct Generated {
    state: u64,
    left: u64,
    max_request: usize,
}

impl Generated {
    fn new(seed: u64, len: u64) -> Self {
        Generated {
            state: seed | 1,
            left: len,
            max_request: 0,
        }
    }
}

impl AsyncRead for Generated {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.max_request = this.max_request.max(buf.remaining());
        let n = (buf.remaining() as u64).min(this.left) as usize;
        for chunk in buf.initialize_unfilled_to(n).chunks_mut(8) {
            // xorshift64
            this.state ^= this.state << 13;
            this.state ^= this.state >> 7;
            this.state ^= this.state << 17;
            chunk.copy_from_slice(&this.state.to_le_bytes()[..chunk.len()]);
        }
        buf.advance(n);
        this.left -= n as u64;
        Poll::Ready(Ok(()))
    }
}

/// A sink that keeps nothing: it counts, hashes unless told not to, and records the largest
/// single write.
#[derive(Default)]
struct Discard {
    hasher: Option<Sha256>,
    bytes: u64,
    max_write: usize,
}

impl Discard {
    fn hashing() -> Self {
        Discard {
            hasher: Some(Sha256::new()),
            ..Discard::default()
        }
    }

    fn digest(&self) -> Sha256Digest {
        Sha256Digest(
            self.hasher
                .clone()
                .expect("a hashing sink")
                .finalize()
                .into(),
        )
    }
}

impl AsyncWrite for Discard {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(h) = this.hasher.as_mut() {
            h.update(data);
        }
        this.bytes += data.len() as u64;
        this.max_write = this.max_write.max(data.len());
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

async fn digest_generated(seed: u64, len: u64) -> Sha256Digest {
    let mut sink = Discard::hashing();
    tokio::io::copy(&mut Generated::new(seed, len), &mut sink)
        .await
        .unwrap();
    sink.digest()
}

fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Four members exercising the padding: a block and a half, empty, exactly one block, one byte.
fn sample() -> (Manifest, Vec<(&'static str, Vec<u8>)>) {
    let data = vec![
        ("database", pseudo_random(1, 768)),
        ("logs-esc-1", Vec::new()),
        ("logs-esc-0", pseudo_random(2, BLOCK)),
        ("dynamic-mapping", b"<".to_vec()),
    ];
    let manifest = manifest_with(vec![
        member(MemberKind::Database, "esc-0", "esc-db.tar.bz2", &data[0].1),
        member(MemberKind::Logs, "esc-1", "esc_log-1.tar.bz2", &data[1].1),
        member(MemberKind::Logs, "esc-0", "esc_log-2.tar.bz2", &data[2].1),
        member(
            MemberKind::DynamicMapping,
            "esc-0",
            "dynamic_mappings.xml",
            &data[3].1,
        ),
    ]);
    (manifest, data)
}

async fn write_sample() -> (
    Manifest,
    Vec<(&'static str, Vec<u8>)>,
    Vec<u8>,
    ArchiveSummary,
) {
    let (manifest, data) = sample();
    let mut writer = ArchiveWriter::start(Vec::new(), &manifest).await.unwrap();
    for (name, bytes) in &data {
        writer.append(name, &mut bytes.as_slice()).await.unwrap();
    }
    let (out, summary) = writer.finish().await.unwrap();
    (manifest, data, out, summary)
}

async fn extract(archive: &[u8], name: &str) -> Result<Vec<u8>, ArchiveError> {
    let mut out = Vec::new();
    ArchiveReader::open(archive)
        .await?
        .extract_to(name, &mut out)
        .await?;
    Ok(out)
}

/// Where member `index`'s data starts in an archive written by [`write_sample`] (no PAX).
fn data_offset(archive: &[u8], index: usize) -> usize {
    let mut at = 0;
    for i in 0..=index + 1 {
        let header: &[u8; BLOCK] = archive[at..at + BLOCK].try_into().unwrap();
        let size = parse_header(header).unwrap().size;
        at += BLOCK;
        if i == index + 1 {
            return at;
        }
        at += size as usize + padding(size);
    }
    unreachable!()
}

#[tokio::test]
async fn round_trips_every_member() {
    let (manifest, data, archive, summary) = write_sample().await;
    assert_eq!(summary.bytes, archive.len() as u64);
    assert_eq!(archive_size(&manifest).unwrap(), summary.bytes);
    assert_eq!(summary.sha256, digest_of(&archive));
    assert_eq!(archive.len() % BLOCK, 0);
    assert_eq!(&archive[..MANIFEST_PATH.len() + 1], b"manifest.json\0");

    let reader = ArchiveReader::open(archive.as_slice()).await.unwrap();
    assert_eq!(reader.manifest(), &manifest);
    assert_eq!(reader.verify().await.unwrap(), 4);
    for (name, bytes) in &data {
        assert_eq!(&extract(&archive, name).await.unwrap(), bytes, "{name}");
    }
    let err = extract(&archive, "logs-esc-9").await.unwrap_err();
    assert!(matches!(err, ArchiveError::NoSuchMember { .. }), "{err:?}");
}

/// The same content gives the same bytes: entry times come from the manifest, not the clock.
#[tokio::test]
async fn the_same_content_gives_the_same_archive() {
    let (_, _, first, a) = write_sample().await;
    let (_, _, second, b) = write_sample().await;
    assert_eq!(a, b);
    assert!(first == second);
}

/// A 50 MiB member streams writer → pipe → reader → sink while no part holds more than its
/// fixed buffer: the source is generated as it is read, the pipe holds one copy buffer, the
/// sinks keep only a count or a hash. The largest read asked of the source, and the largest
/// write made to the archive's output and to the extracted member's sink, are the copy buffer
/// whatever the member's size.
#[tokio::test]
async fn a_50_mib_member_streams_through_fixed_buffers() {
    const SIZE: u64 = 50 << 20;
    let digest = digest_generated(7, SIZE).await;
    let db = member(MemberKind::Database, "esc-0", "esc-db.tar.bz2", b"");
    let manifest = manifest_with(vec![Member {
        size: SIZE,
        sha256: digest,
        ..db
    }]);

    let (pipe_in, mut pipe_out) = tokio::io::duplex(COPY_BUFFER);
    let writer_manifest = manifest.clone();
    let writer = tokio::spawn(async move {
        // The output is the pipe, and beside it a sink that records the write sizes.
        let tee = Tee {
            a: pipe_in,
            b: Discard::default(),
        };
        let mut source = Generated::new(7, SIZE);
        let mut w = ArchiveWriter::start(tee, &writer_manifest).await.unwrap();
        w.append("database", &mut source).await.unwrap();
        let (tee, summary) = w.finish().await.unwrap();
        (summary, source.max_request, tee.b)
    });
    // The reader hashes what passes (its verdict); the sink only counts, to keep this test fast
    // in a debug build. The small round trips compare extracted bytes.
    let mut sink = Discard::default();
    let reader = ArchiveReader::open(&mut pipe_out).await.unwrap();
    assert_eq!(reader.manifest(), &manifest);
    let extracted = reader.extract_to("database", &mut sink).await.unwrap();
    let (summary, max_request, seen) = writer.await.unwrap();

    assert_eq!(
        extracted,
        Extracted {
            bytes: SIZE,
            sha256: digest
        }
    );
    assert_eq!(sink.bytes, SIZE);
    assert_eq!(
        max_request, COPY_BUFFER,
        "the source is read one buffer at a time"
    );
    assert!(
        seen.max_write <= COPY_BUFFER,
        "largest write {}",
        seen.max_write
    );
    assert!(
        sink.max_write <= COPY_BUFFER,
        "largest write {}",
        sink.max_write
    );
    // manifest header and blocks + member header + 50 MiB (whole blocks) + end marker
    let manifest_len = manifest.to_json().unwrap().len() as u64;
    let expected =
        BLOCK as u64 + manifest_len + padding(manifest_len) as u64 + BLOCK as u64 + SIZE + 1024;
    assert_eq!((summary.bytes, seen.bytes), (expected, expected));
    // What the reader left in the pipe is the end marker.
    drop(seen);
    let mut rest = Vec::new();
    pipe_out.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, [0; 2 * BLOCK]);
}

/// Writes everything to both outputs.
struct Tee<A, B> {
    a: A,
    b: B,
}

impl<A: AsyncWrite + Unpin, B: AsyncWrite + Unpin> AsyncWrite for Tee<A, B> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.a).poll_write(cx, data))?;
        // Discard-like sinks take everything at once.
        match Pin::new(&mut this.b).poll_write(cx, &data[..n]) {
            Poll::Ready(Ok(m)) if m == n => Poll::Ready(Ok(n)),
            other => panic!("the second sink must take all: {other:?}"),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.a).poll_flush(cx))?;
        Pin::new(&mut this.b).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.a).poll_shutdown(cx))?;
        Pin::new(&mut this.b).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn the_writer_refuses_bytes_that_differ_from_the_manifest() {
    let (manifest, data) = sample();
    let db = &data[0].1;

    // A flipped byte: the digest differs.
    let mut flipped = db.clone();
    flipped[100] ^= 0x01;
    let mut w = ArchiveWriter::start(Vec::new(), &manifest).await.unwrap();
    let err = w
        .append("database", &mut flipped.as_slice())
        .await
        .unwrap_err();
    assert!(matches!(err, ArchiveError::MemberDigest { .. }), "{err:?}");
    assert_eq!(err.reason(), "ChecksumMismatch");
    // The archive is incomplete now: nothing more is written, not even the end marker.
    let err = w.append("logs-esc-1", &mut &b""[..]).await.unwrap_err();
    assert!(matches!(err, ArchiveError::Poisoned), "{err:?}");
    assert!(matches!(w.finish().await, Err(ArchiveError::Poisoned)));

    // A short source.
    let mut w = ArchiveWriter::start(Vec::new(), &manifest).await.unwrap();
    let err = w
        .append("database", &mut &db[..db.len() - 1])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ArchiveError::MemberTruncated {
                declared: 768,
                received: 767,
                ..
            }
        ),
        "{err:?}"
    );

    // A long source: the size declared is not the size given.
    let mut longer = db.clone();
    longer.push(0);
    let mut w = ArchiveWriter::start(Vec::new(), &manifest).await.unwrap();
    let err = w
        .append("database", &mut longer.as_slice())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ArchiveError::MemberOverrun { declared: 768, .. }),
        "{err:?}"
    );
    assert_eq!(err.reason(), "MemberSizeMismatch");

    // A source that fails: its error is kept, with the member's name.
    let mut w = ArchiveWriter::start(Vec::new(), &manifest).await.unwrap();
    let mut failing = tokio_test_io_error();
    let err = w.append("database", &mut failing).await.unwrap_err();
    match err {
        ArchiveError::ReadMember { member, source } => {
            assert_eq!(member, "database");
            assert_eq!(source.to_string(), "connection lost");
        }
        other => panic!("{other:?}"),
    }
}

/// A reader that fails at once, as a dropped SSH transfer does.
fn tokio_test_io_error() -> impl AsyncRead + Unpin {
    struct Failing;
    impl AsyncRead for Failing {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Ready(Err(io::Error::other("connection lost")))
        }
    }
    Failing
}

#[tokio::test]
async fn the_writer_keeps_the_manifests_order_and_completeness() {
    let (manifest, data) = sample();
    let mut w = ArchiveWriter::start(Vec::new(), &manifest).await.unwrap();
    let err = w.append("logs-esc-0", &mut &b""[..]).await.unwrap_err();
    assert!(
        matches!(&err, ArchiveError::OutOfOrder { expected: Some(e), .. } if e == "database"),
        "{err:?}"
    );
    // Refusing the order wrote nothing: the right member still goes in.
    assert_eq!(w.next_member().unwrap().name, "database");
    w.append("database", &mut data[0].1.as_slice())
        .await
        .unwrap();
    let err = w.finish().await.unwrap_err();
    match err {
        ArchiveError::MissingMembers { missing } => {
            assert_eq!(missing, ["logs-esc-1", "logs-esc-0", "dynamic-mapping"])
        }
        other => panic!("{other:?}"),
    }
    // An invalid manifest is never written.
    let mut bad = manifest.clone();
    bad.members.retain(|m| m.kind != MemberKind::Database);
    let err = ArchiveWriter::start(Vec::new(), &bad).await.unwrap_err();
    assert_eq!(err.reason(), "ManifestInvalid");
}

#[tokio::test]
async fn the_reader_refuses_a_flipped_byte() {
    let (_, data, archive, _) = write_sample().await;

    // In the member's data: the member is refused; the others still read.
    let mut bad = archive.clone();
    bad[data_offset(&archive, 0) + 5] ^= 0x80;
    let err = extract(&bad, "database").await.unwrap_err();
    assert!(matches!(err, ArchiveError::MemberDigest { .. }), "{err:?}");
    assert!(err.to_string().contains("database"), "{err}");
    assert_eq!(extract(&bad, "logs-esc-0").await.unwrap(), data[2].1);
    let err = ArchiveReader::open(bad.as_slice())
        .await
        .unwrap()
        .verify()
        .await
        .unwrap_err();
    assert!(matches!(err, ArchiveError::MemberDigest { .. }), "{err:?}");

    // As a stream the member ends with the error, never a clean end of file: a consumer that
    // commits on EOF (an upload renaming its partial file) never commits it.
    let mut reader = ArchiveReader::open(bad.as_slice())
        .await
        .unwrap()
        .member("database")
        .await
        .unwrap();
    let mut out = Vec::new();
    let err = reader.read_to_end(&mut out).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    let inner = err
        .get_ref()
        .unwrap()
        .downcast_ref::<ArchiveError>()
        .unwrap();
    assert!(
        matches!(inner, ArchiveError::MemberDigest { .. }),
        "{inner:?}"
    );
    assert_eq!(reader.verified(), None);
    // And it stays failed.
    assert!(reader.read(&mut [0; 16]).await.is_err());

    // In a header: its checksum catches it.
    let mut bad = archive.clone();
    let header = data_offset(&archive, 2) - BLOCK;
    bad[header + 3] ^= 0x01;
    let err = extract(&bad, "dynamic-mapping").await.unwrap_err();
    assert!(
        matches!(&err, ArchiveError::Malformed { detail } if detail.contains("checksum")),
        "{err:?}"
    );

    // In the manifest: its JSON no longer parses, or says something else than the headers.
    let mut bad = archive.clone();
    bad[BLOCK] ^= b'{' ^ b'[';
    let err = ArchiveReader::open(bad.as_slice()).await.unwrap_err();
    assert_eq!(err.reason(), "ManifestUnreadable", "{err}");
}

#[tokio::test]
async fn the_reader_refuses_a_truncated_archive() {
    let (_, data, archive, _) = write_sample().await;
    let inside_db = data_offset(&archive, 0) + 100;
    let err = extract(&archive[..inside_db], "database")
        .await
        .unwrap_err();
    assert!(matches!(err, ArchiveError::Truncated { .. }), "{err:?}");
    assert_eq!(err.reason(), "ArtifactTruncated");
    let err = extract(&archive[..inside_db], "dynamic-mapping")
        .await
        .unwrap_err();
    assert!(matches!(err, ArchiveError::Truncated { .. }), "{err:?}");
    for cut in [0, 100, BLOCK, BLOCK + 10] {
        let err = ArchiveReader::open(&archive[..cut]).await.unwrap_err();
        assert!(
            matches!(err, ArchiveError::Truncated { .. }),
            "{cut}: {err:?}"
        );
    }
    // Without the end marker every member reads, but the archive does not verify.
    let no_end = &archive[..archive.len() - 2 * BLOCK];
    assert_eq!(extract(no_end, "dynamic-mapping").await.unwrap(), data[3].1);
    let err = ArchiveReader::open(no_end)
        .await
        .unwrap()
        .verify()
        .await
        .unwrap_err();
    assert!(matches!(err, ArchiveError::Truncated { .. }), "{err:?}");
    // Anything after the end marker but zeros is refused too.
    let mut longer = archive.clone();
    longer.extend_from_slice(&[0; 3 * BLOCK]);
    ArchiveReader::open(longer.as_slice())
        .await
        .unwrap()
        .verify()
        .await
        .unwrap();
    longer.push(1);
    let err = ArchiveReader::open(longer.as_slice())
        .await
        .unwrap()
        .verify()
        .await
        .unwrap_err();
    assert!(matches!(err, ArchiveError::Malformed { .. }), "{err:?}");
}

/// An archive whose tar headers and manifest disagree — a size, a path, an extra entry — is
/// refused: a restore reads only what the manifest describes.
#[tokio::test]
async fn the_reader_refuses_entries_the_manifest_does_not_describe() {
    let (manifest, data) = sample();
    let json = manifest.to_json().unwrap();
    let build = |entries: &[(&str, &[u8])]| {
        let mut out = Vec::new();
        for (path, bytes) in entries {
            out.extend(entry_headers(path, bytes.len() as u64, 0));
            out.extend_from_slice(bytes);
            out.resize(out.len() + padding(bytes.len() as u64), 0);
        }
        out.extend_from_slice(&[0; 2 * BLOCK]);
        out
    };
    let db_path = manifest.members[0].path.as_str();

    // The tar header declares one byte more than the manifest.
    let mut longer = data[0].1.clone();
    longer.push(0);
    let archive = build(&[(MANIFEST_PATH, &json), (db_path, &longer)]);
    let err = extract(&archive, "database").await.unwrap_err();
    assert!(
        matches!(&err, ArchiveError::Malformed { detail } if detail.contains("769 bytes")),
        "{err:?}"
    );

    // Another path where the database should be.
    let archive = build(&[(MANIFEST_PATH, &json), ("database/other", &data[0].1)]);
    let err = extract(&archive, "database").await.unwrap_err();
    assert!(
        matches!(&err, ArchiveError::Malformed { detail } if detail.contains("database/other")),
        "{err:?}"
    );

    // The manifest not first.
    let archive = build(&[(db_path, &data[0].1), (MANIFEST_PATH, &json)]);
    let err = ArchiveReader::open(archive.as_slice()).await.unwrap_err();
    assert!(
        matches!(&err, ArchiveError::Malformed { detail } if detail.contains("not an esc-operator artifact")),
        "{err:?}"
    );

    // An extra entry after the last member.
    let mut entries: Vec<(&str, &[u8])> = vec![(MANIFEST_PATH, &json)];
    for (m, (_, bytes)) in manifest.members.iter().zip(&data) {
        entries.push((&m.path, bytes));
    }
    entries.push(("extra", b"x"));
    let archive = build(&entries);
    let err = ArchiveReader::open(archive.as_slice())
        .await
        .unwrap()
        .verify()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ArchiveError::Malformed { detail } if detail.contains("does not list")),
        "{err:?}"
    );

    // A directory or a link is not a member.
    let mut archive = build(&[(MANIFEST_PATH, &json)]);
    let mut header = [0u8; BLOCK];
    header.copy_from_slice(&entry_headers(db_path, 0, 0));
    header[156] = b'2';
    let sum: u64 = header[..148]
        .iter()
        .chain(&[b' '; 8])
        .chain(&header[156..])
        .map(|&b| u64::from(b))
        .sum();
    header[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    let end = archive.len() - 2 * BLOCK;
    archive.splice(end..end, header);
    let err = extract(&archive, "database").await.unwrap_err();
    assert!(
        matches!(&err, ArchiveError::Malformed { detail } if detail.contains("not a regular file")),
        "{err:?}"
    );

    // A manifest of a newer format is refused before any member is read.
    let newer = br#"{"formatVersion": 2}"#;
    let archive = build(&[(MANIFEST_PATH, newer)]);
    let err = ArchiveReader::open(archive.as_slice()).await.unwrap_err();
    assert_eq!(err.reason(), "ArtifactFormatTooNew", "{err}");
}

/// A member of 8 GiB or more carries its size in a PAX record; the reader takes it from there.
#[tokio::test]
async fn sizes_beyond_ustar_use_a_pax_record() {
    let huge = 10u64 << 30;
    let headers = entry_headers("database/esc-db.tar.bz2", huge, 0);
    assert_eq!(
        headers.len(),
        3 * BLOCK,
        "PAX header, its record, the ustar header"
    );
    let parsed = read_entry_header(&mut headers.as_slice(), "test")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        parsed,
        EntryHeader {
            path: "database/esc-db.tar.bz2".into(),
            size: huge
        }
    );
    assert_eq!(entry_headers("x", OCTAL_SIZE_MAX, 0).len(), BLOCK);
}

/// The system's tar (GNU tar here) lists and extracts what the writer wrote, with no warning.
#[tokio::test]
async fn system_tar_reads_the_archive() {
    let (manifest, data, archive, _) = write_sample().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("artifact.tar");
    std::fs::write(&file, &archive).unwrap();

    let out = Command::new("tar").arg("-tf").arg(&file).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let mut expected = vec![MANIFEST_PATH.to_owned()];
    expected.extend(manifest.members.iter().map(|m| m.path.clone()));
    assert_eq!(listed, expected);

    let into = dir.path().join("x");
    std::fs::create_dir(&into).unwrap();
    let out = Command::new("tar")
        .arg("-xf")
        .arg(&file)
        .arg("-C")
        .arg(&into)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = std::fs::read(into.join(MANIFEST_PATH)).unwrap();
    assert_eq!(parse_manifest(&json).unwrap(), manifest);
    for (m, (_, bytes)) in manifest.members.iter().zip(&data) {
        assert_eq!(
            &std::fs::read(into.join(&m.path)).unwrap(),
            bytes,
            "{}",
            m.path
        );
    }

    // The entries' time is the manifest's finishedAt (2026-11-20T10:04:31Z).
    let out = Command::new("tar")
        .args(["--utc", "-tvf"])
        .arg(&file)
        .output()
        .unwrap();
    let listing = String::from_utf8(out.stdout).unwrap();
    assert!(
        listing.lines().all(|l| l.contains("2026-11-20 10:04")),
        "{listing}"
    );
    assert!(listing.starts_with("-rw-r--r-- 0/0"), "{listing}");
}

/// The PAX encoding, checked against the system's tar with a small member (a real 8 GiB one
/// would take minutes): a PAX `size` record overriding the ustar field is read as we read it.
#[tokio::test]
async fn system_tar_reads_the_pax_encoding() {
    let mut archive = crate::mover::tar::pax_entry_headers("database/db", 5, 0);
    archive.extend_from_slice(b"hello");
    archive.resize(archive.len() + padding(5) + 2 * BLOCK, 0);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pax.tar");
    std::fs::write(&file, &archive).unwrap();
    let out = Command::new("tar")
        .args(["-xOf"])
        .arg(&file)
        .arg("database/db")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"hello");
    let parsed = read_entry_header(&mut archive.as_slice(), "test")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(parsed.size, 5);
}

#[tokio::test]
async fn a_streamed_member_gives_the_archive_back_to_read_on() {
    let (manifest, data, archive, _) = write_sample().await;
    // A member in the middle, read whole by the caller: the reader resumes after it and checks
    // the rest to the end of the archive.
    let mut reader = ArchiveReader::open(archive.as_slice())
        .await
        .unwrap()
        .member("logs-esc-1")
        .await
        .unwrap();
    let mut out = Vec::new();
    reader.read_to_end(&mut out).await.unwrap();
    assert_eq!(out, data[1].1);
    let rest = reader.into_archive().await.unwrap();
    assert_eq!(rest.manifest(), &manifest);
    assert_eq!(rest.verify().await.unwrap(), 2);

    // The first member, left unread by the caller: it is read and checked on the way.
    let mut source = archive.as_slice();
    let reader = ArchiveReader::open(&mut source)
        .await
        .unwrap()
        .member("database")
        .await
        .unwrap();
    let rest = reader.into_archive().await.unwrap();
    assert_eq!(rest.verify().await.unwrap(), 3);
    assert!(source.is_empty(), "the archive is read to its end");

    // A flipped byte in the member: its error, not a resumed reader.
    let mut bad = archive.clone();
    bad[data_offset(&archive, 0) + 5] ^= 0x80;
    let reader = ArchiveReader::open(bad.as_slice())
        .await
        .unwrap()
        .member("database")
        .await
        .unwrap();
    let err = reader.into_archive().await.unwrap_err();
    assert!(matches!(err, ArchiveError::MemberDigest { .. }), "{err:?}");

    // A flipped byte after it: the resumed reader's verification finds it.
    let mut bad = archive.clone();
    bad[data_offset(&archive, 2) + 1] ^= 0x01;
    let mut reader = ArchiveReader::open(bad.as_slice())
        .await
        .unwrap()
        .member("database")
        .await
        .unwrap();
    let mut out = Vec::new();
    reader.read_to_end(&mut out).await.unwrap();
    let err = reader
        .into_archive()
        .await
        .unwrap()
        .verify()
        .await
        .unwrap_err();
    assert!(matches!(err, ArchiveError::MemberDigest { .. }), "{err:?}");

    // Cut inside the member's padding.
    let cut = &archive[..data_offset(&archive, 0) + 768 + 10];
    let mut reader = ArchiveReader::open(cut)
        .await
        .unwrap()
        .member("database")
        .await
        .unwrap();
    reader.read_to_end(&mut Vec::new()).await.unwrap();
    let err = reader.into_archive().await.unwrap_err();
    assert_eq!(err.reason(), "ArtifactTruncated", "{err}");
}

#[tokio::test]
async fn the_head_bound_holds_the_largest_manifest() {
    // The largest manifest a reader accepts, with its header and padding, fits the bound a
    // preflight reads.
    let (mut manifest, _) = sample();
    let one = manifest.members[1].clone();
    let add = |manifest: &mut Manifest, i: usize| {
        let mut m = one.clone();
        m.name = format!("logs-n{i:06}");
        m.source_node = format!("n{i:06}");
        m.path = format!("logs/n{i:06}/f");
        manifest.members.push(m);
        manifest.nodes.push(crate::mover::manifest::NodeEntry {
            name: format!("n{i:06}"),
            role: crate::mover::manifest::NodeRole::Backup,
        });
    };
    let len = |m: &Manifest| m.to_json().unwrap().len() as u64;
    let base = len(&manifest);
    add(&mut manifest, 0);
    // Node names of one width: each added node and member adds the same length.
    let per = len(&manifest) - base;
    let n = (MAX_MANIFEST_BYTES - len(&manifest)) / per;
    for i in 1..=n as usize {
        add(&mut manifest, i);
    }
    let size = len(&manifest);
    assert!(
        size <= MAX_MANIFEST_BYTES && size > MAX_MANIFEST_BYTES - per,
        "{size}"
    );
    let json = manifest.to_json().unwrap();
    let mut head = Vec::new();
    let writer = ArchiveWriter::start(&mut head, &manifest).await.unwrap();
    drop(writer);
    assert!(
        head.len() as u64 <= MAX_HEAD_BYTES,
        "{} > {MAX_HEAD_BYTES}",
        head.len()
    );
    let reader = ArchiveReader::open(&head[..]).await.unwrap();
    assert_eq!(reader.manifest().to_json().unwrap(), json);
}
