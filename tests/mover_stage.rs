//! `esc-operator mover stage`, the real binary, as a restore's staging Job runs it: a backup
//! artifact (written here by the archive writer, as the backup mover writes it) read from MinIO
//! and the Versity S3 Gateway or from an SFTP host (a node's sshd), checked whole, and its
//! database member written onto a simulated ESC node behind real sshd. The staged file is read
//! back: it is the database member byte for byte. Every failure (a wrong expected digest, a
//! corrupt, truncated or missing object, SIGTERM) ends with exit status 1, a report naming the
//! step and a stable reason, and no staged file (nor its partial name) on the node.
//!
//! Also the preflight's reader, [`read_head`], against the same stores: the manifest and the
//! stored digest, and its refusals.
//!
//! Needs `tools/sshd/setup.sh` (run once, as root) and the S3 servers (`tools/s3/build.sh`,
//! built on first use).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use esc_operator::esc::{KnownHosts, Sha256Digest, SshCredentials};
use esc_operator::mover::sink::s3::{S3Access, S3Credentials};
use esc_operator::mover::sink::sftp::SshAccess;
use esc_operator::mover::sink::{StoreAccess, read_head};
use esc_operator::mover::{
    ArchiveSummary, ArchiveWriter, Manifest, MoverReport, MoverStep, REQUEST_ENV, SinkSpec,
    StageRequest,
};
use esc_testbed::s3::aws_sdk_s3::primitives::ByteStream;
use esc_testbed::s3::{S3Kind, S3Server};
use esc_testbed::sshd::{Fill, SimEsc, SimNode, SimSpec};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

const BUCKET: &str = "backups";
const TIMEOUT: Duration = Duration::from_secs(10);
const STAGED_NAME: &str = "esc-db-backup.tar.bz2";

/// One `#[tokio::test]` per server for each scenario: `scenario::minio`, `scenario::versity`.
macro_rules! on_both_servers {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn minio() -> Result<()> {
                super::$scenario(S3Kind::Minio).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn versity() -> Result<()> {
                super::$scenario(S3Kind::Versity).await
            }
        }
    )*};
}

on_both_servers!(stage_from_s3, read_head_from_s3);

/// A standalone simulated node, the mover's mounted files, and artifacts made from files on
/// the node.
struct Bed {
    sim: SimEsc,
    dir: tempfile::TempDir,
}

/// An artifact written to a local file.
struct Artifact {
    path: PathBuf,
    manifest: Manifest,
    summary: ArchiveSummary,
    /// The database member's source file, its size and digest.
    db: PathBuf,
    db_size: u64,
    db_sha256: Sha256Digest,
}

impl Artifact {
    fn sha256_hex(&self) -> String {
        self.summary.sha256.to_string()
    }

    /// Where the database member's bytes start: the manifest's header and padded data, then
    /// the member's header (no extended headers in these artifacts).
    fn db_offset(&self) -> Result<u64> {
        let json = self.manifest.to_json()?.len() as u64;
        Ok(512 + json.div_ceil(512) * 512 + 512)
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// The SHA-256 of a file, streamed.
fn file_digest(path: &Path) -> Result<Sha256Digest> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(Sha256Digest(hasher.finalize().into()))
}

fn listing(dir: &Path) -> Result<Vec<String>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_>>()?;
    names.sort();
    Ok(names)
}

/// A directory anyone may write (the node's SSH user creates the staging directories in it).
fn open_dir(parent: &Path, name: &str) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let dir = parent.join(format!("{name}-{}", rand_suffix()));
    std::fs::create_dir(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))?;
    Ok(dir)
}

impl Bed {
    fn start() -> Result<Bed> {
        let sim = SimEsc::start(SimSpec::standalone())?;
        let dir = tempfile::tempdir()?;
        let node = sim.node("esc");
        let ssh = dir.path().join("ssh");
        std::fs::create_dir(&ssh)?;
        std::fs::write(ssh.join("ssh-privatekey"), node.private_key_pem()?)?;
        std::fs::write(
            dir.path().join("known_hosts"),
            format!("{}\n", node.known_hosts_line()),
        )?;
        Ok(Bed { sim, dir })
    }

    fn node(&self) -> &SimNode {
        self.sim.node("esc")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// An artifact whose database member is `db_size` pseudo-random bytes (or sparse zeros),
    /// with a logs member after it, as the backup mover writes it.
    async fn artifact(&self, db_size: u64, fill: Fill) -> Result<Artifact> {
        let node = self.node();
        let n = rand_suffix();
        let db = node.create_file(&format!("db-{n}.tar.bz2"), db_size, fill)?;
        let logs = node.create_file(&format!("esc_log-{n}.tar.bz2"), 70_001, Fill::Random(n))?;
        let db_sha256 = file_digest(&db)?;
        let member = |kind: &str, name: &str, path: &Path, size: u64, sha: Sha256Digest| {
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            let folder = if kind == "Logs" {
                "logs/esc"
            } else {
                "database"
            };
            json!({"name": name, "path": format!("{folder}/{file}"), "kind": kind, "size": size,
                   "sha256": sha.to_string(), "sourceNode": "esc"})
        };
        let manifest: Manifest = serde_json::from_value(json!({
            "formatVersion": 1,
            "cluster": {"namespace": "esc", "name": "prod"},
            "nodes": [{"name": "esc", "role": "STANDALONE"}],
            "escVersion": "5.10.0.86",
            "createdAt": "2026-11-29T10:00:00Z",
            "finishedAt": "2026-11-29T10:02:00Z",
            "members": [
                member("Database", "database", &db, db_size, db_sha256),
                member("Logs", "logs-esc", &logs, 70_001, file_digest(&logs)?),
            ]
        }))?;
        let path = self.path(&format!("artifact-{n}.tar"));
        let out =
            tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::create(&path).await?);
        let mut writer = ArchiveWriter::start(out, &manifest).await?;
        writer
            .append("database", &mut tokio::fs::File::open(&db).await?)
            .await?;
        writer
            .append("logs-esc", &mut tokio::fs::File::open(&logs).await?)
            .await?;
        let (mut out, summary) = writer.finish().await?;
        out.shutdown().await?;
        Ok(Artifact {
            path,
            manifest,
            summary,
            db,
            db_size,
            db_sha256,
        })
    }

    /// The staging directory (to be created by the mover) under a fresh writable directory.
    fn staged_path(&self) -> Result<PathBuf> {
        let base = open_dir(&self.node().data_dir(), "restore")?;
        Ok(base.join("runs/r1").join(STAGED_NAME))
    }

    fn request(&self, store: Value, sha256: &str, staged: &Path) -> Value {
        let node = self.node();
        json!({
            "version": 1,
            "store": store,
            "sha256": sha256,
            "ssh": {
                "user": node.key_user(),
                "credentialsDir": self.path("ssh"),
                "knownHostsFile": self.path("known_hosts"),
                "connectTimeoutSeconds": 10
            },
            "node": {"name": node.name(), "host": node.address().to_string(), "port": node.port()},
            "stagedPath": staged.display().to_string(),
            "progressIntervalSeconds": 1
        })
    }

    /// An S3 store on `s3` (its credentials written as the Secret's files).
    fn s3_store(&self, s3: &S3Server, key: &str, mode: &str) -> Result<Value> {
        let creds = self.path("s3");
        std::fs::create_dir_all(&creds)?;
        std::fs::write(creds.join("AWS_ACCESS_KEY_ID"), s3.access_key())?;
        std::fs::write(
            creds.join("AWS_SECRET_ACCESS_KEY"),
            format!("{}\n", s3.secret_key()),
        )?;
        Ok(json!({"s3": {
            "bucket": BUCKET, "key": key, "endpoint": s3.endpoint(), "forcePathStyle": true,
            "checksumMode": mode, "credentialsDir": creds
        }}))
    }

    /// An SFTP store on the node's own sshd: the artifact at `path`.
    fn sftp_store(&self, path: &Path) -> Value {
        let node = self.node();
        json!({"sftp": {
            "host": node.address().to_string(), "port": node.port(), "user": node.key_user(),
            "path": path.display().to_string(),
            "credentialsDir": self.path("ssh"), "knownHostsFile": self.path("known_hosts")
        }})
    }

    fn sftp_access(&self) -> Result<StoreAccess> {
        let node = self.node();
        Ok(StoreAccess::Sftp(SshAccess {
            credentials: SshCredentials::private_key(node.private_key_pem()?.into_bytes(), None),
            known_hosts: KnownHosts::parse(&node.known_hosts_line()),
        }))
    }
}

fn s3_access(s3: &S3Server) -> StoreAccess {
    StoreAccess::S3(S3Access {
        credentials: S3Credentials::from_keys(s3.access_key(), s3.secret_key(), None),
        ca_bundle_pem: None,
    })
}

/// Stores `body` under `key` as the backup mover leaves an artifact: the digest in the
/// metadata and in the `KEY.sha256` sidecar.
async fn put_object(s3: &S3Server, key: &str, body: ByteStream, sha256: &str) -> Result<()> {
    s3.client()
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .metadata("sha256", sha256)
        .body(body)
        .send()
        .await
        .with_context(|| format!("put {key}"))?;
    let base = key.rsplit('/').next().unwrap_or(key);
    s3.client()
        .put_object()
        .bucket(BUCKET)
        .key(format!("{key}.sha256"))
        .body(ByteStream::from(format!("{sha256}  {base}\n").into_bytes()))
        .send()
        .await?;
    Ok(())
}

async fn put_artifact(s3: &S3Server, key: &str, artifact: &Artifact) -> Result<()> {
    let body = ByteStream::from_path(&artifact.path).await?;
    put_object(s3, key, body, &artifact.sha256_hex()).await
}

/// Bytes with their own digest as the stored one.
async fn put_bytes(s3: &S3Server, key: &str, bytes: Vec<u8>) -> Result<()> {
    let sha = Sha256Digest(Sha256::digest(&bytes).into()).to_string();
    put_object(s3, key, ByteStream::from(bytes), &sha).await
}

/// What one mover run gave.
struct Run {
    status: i32,
    stdout: String,
    stderr: String,
    report_text: String,
    report: MoverReport,
    /// The largest VmHWM seen while the mover ran (KiB).
    peak_rss_kib: u64,
}

impl Run {
    fn everything(&self) -> String {
        format!("{}\n{}\n{}", self.stdout, self.stderr, self.report_text)
    }

    fn steps(&self) -> Vec<String> {
        self.stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["event"] == "step")
            .map(|v| v["step"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    fn failed(&self) -> (MoverStep, String, String) {
        match &self.report {
            MoverReport::Failed {
                step,
                reason,
                message,
            } => (*step, reason.clone(), message.clone()),
            other => panic!("expected a failure, got {other:?}\n{}", self.stderr),
        }
    }
}

/// The process's high-water mark of resident memory, in KiB.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn mover_command(request: &Value, log: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_esc-operator"));
    cmd.args(["mover", "stage", "--termination-log"])
        .arg(log)
        .env(REQUEST_ENV, request.to_string())
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn read_report(log: &Path) -> Result<(String, MoverReport)> {
    let text = std::fs::read_to_string(log).context("no report written")?;
    ensure!(text.len() <= 4096, "report of {} bytes", text.len());
    let report = serde_json::from_str(&text).with_context(|| format!("report: {text}"))?;
    Ok((text, report))
}

async fn run_stage(request: &Value, dir: &Path) -> Result<Run> {
    // The request must be one the controller could write.
    StageRequest::parse(&request.to_string()).context("the test's request is invalid")?;
    let log = dir.join(format!("termination-log-{}", rand_suffix()));
    let child = mover_command(request, &log).spawn()?;
    let pid = child.id().context("pid")?;
    let watch = tokio::spawn(async move {
        let mut peak = 0;
        while let Some(kib) = vm_hwm_kib(pid) {
            peak = peak.max(kib);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        peak
    });
    let out = child.wait_with_output().await?;
    let peak_rss_kib = watch.await?;
    let (report_text, report) = read_report(&log)?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    for line in stdout.lines() {
        serde_json::from_str::<Value>(line)
            .with_context(|| format!("a stdout line is not JSON: {line}"))?;
    }
    for line in stderr.lines() {
        serde_json::from_str::<Value>(line)
            .with_context(|| format!("a log line is not JSON: {line}"))?;
    }
    Ok(Run {
        status: out.status.code().unwrap_or(-1),
        stdout,
        stderr,
        report_text,
        report,
        peak_rss_kib,
    })
}

/// The run staged `artifact`'s database member at `staged`, and says so.
fn check_staged(run: &Run, artifact: &Artifact, staged: &Path, what: &str) -> Result<()> {
    ensure!(
        run.status == 0,
        "{what}: exit {}: {}\n{}",
        run.status,
        run.report_text,
        run.stderr
    );
    let MoverReport::Staged {
        staged_path,
        size,
        sha256,
        artifact_size,
        artifact_sha256,
        esc_version,
        cluster,
        created_at,
        seconds,
        bytes_per_second,
    } = &run.report
    else {
        bail!("{what}: {:?}", run.report);
    };
    ensure!(
        staged_path == &staged.display().to_string(),
        "{what}: {staged_path}"
    );
    ensure!(
        *size == artifact.db_size && *sha256 == artifact.db_sha256,
        "{what}: member"
    );
    ensure!(
        *artifact_size == artifact.summary.bytes && *artifact_sha256 == artifact.summary.sha256,
        "{what}: artifact {artifact_size} {artifact_sha256}"
    );
    ensure!(esc_version == "5.10.0.86" && cluster.name == "prod" && cluster.namespace == "esc");
    ensure!(
        created_at.0.to_string() == "2026-11-29T10:00:00Z",
        "{created_at:?}"
    );
    ensure!(*seconds > 0.0 && *bytes_per_second > 0.0);
    ensure!(
        run.steps() == ["ReadRequest", "Connect", "Transfer", "Verify"],
        "{what}: steps {:?}",
        run.steps()
    );
    ensure!(
        run.stdout.contains(r#""event":"progress""#),
        "{what}: no progress line"
    );
    // The staged file is the database member, byte for byte, and alone (no partial name).
    ensure!(std::fs::metadata(staged)?.len() == artifact.db_size);
    ensure!(
        file_digest(staged)? == file_digest(&artifact.db)?,
        "{what}: the staged file differs from the database member"
    );
    let dir = staged.parent().context("parent")?;
    ensure!(
        listing(dir)? == [STAGED_NAME],
        "{what}: {:?}",
        listing(dir)?
    );
    Ok(())
}

/// The run failed at `step` for `reason`, and left nothing at `staged`.
fn check_failed(run: &Run, staged: &Path, step: MoverStep, reasons: &[&str]) -> Result<String> {
    ensure!(run.status == 1, "exit {}: {}", run.status, run.report_text);
    let (got_step, reason, message) = run.failed();
    ensure!(
        got_step == step && reasons.contains(&reason.as_str()),
        "{got_step:?} {reason}: {message}\n{}",
        run.stderr
    );
    ensure!(!message.is_empty());
    let dir = staged.parent().context("parent")?;
    ensure!(
        listing(dir)?.is_empty(),
        "left on the node: {:?}",
        listing(dir)?
    );
    Ok(message)
}

/// Staged from S3 in both checksum modes: the database member is on the node, verified; the
/// S3 secret appears nowhere.
async fn stage_from_s3(kind: S3Kind) -> Result<()> {
    let bed = Bed::start()?;
    let s3 = S3Server::start(kind).await?;
    s3.create_bucket(BUCKET).await?;
    let artifact = bed.artifact((3 << 20) + 4321, Fill::Random(11)).await?;
    let key = "esc/prod/backup-1.tar";
    put_artifact(&s3, key, &artifact).await?;
    // The second run as a cluster with `spec.ssh.sudo` (the node's `sudo` runs the command as
    // the caller): the directory, the write, the checks and the rename all go through it.
    for (mode, sudo) in [("WhenSupported", false), ("WhenRequired", true)] {
        let staged = bed.staged_path()?;
        let mut request = bed.request(
            bed.s3_store(&s3, key, mode)?,
            &artifact.sha256_hex(),
            &staged,
        );
        request["ssh"]["sudo"] = sudo.into();
        let run = run_stage(&request, bed.dir.path()).await?;
        check_staged(&run, &artifact, &staged, &format!("{kind} {mode}"))?;
        ensure!(
            !run.everything().contains(s3.secret_key()),
            "{kind}: the S3 secret was printed"
        );
    }
    s3.stop()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_from_sftp() -> Result<()> {
    let bed = Bed::start()?;
    let artifact = bed.artifact((2 << 20) + 77, Fill::Random(12)).await?;
    let store_dir = open_dir(&bed.node().data_dir(), "store")?;
    let stored = store_dir.join("backup-1.tar");
    std::fs::copy(&artifact.path, &stored)?;
    let staged = bed.staged_path()?;
    let request = bed.request(bed.sftp_store(&stored), &artifact.sha256_hex(), &staged);
    let run = run_stage(&request, bed.dir.path()).await?;
    check_staged(&run, &artifact, &staged, "sftp")?;

    // The preflight's reader on the same store: the manifest and the sidecar's digest.
    std::fs::write(
        store_dir.join("backup-1.tar.sha256"),
        format!("{}  backup-1.tar\n", artifact.sha256_hex()),
    )?;
    let spec: SinkSpec = serde_json::from_value(bed.sftp_store(&stored))?;
    let access = bed.sftp_access()?;
    let head = read_head(&spec, &access, TIMEOUT).await?;
    ensure!(head.manifest == artifact.manifest, "{:?}", head.manifest);
    ensure!(head.stored.size == artifact.summary.bytes);
    ensure!(head.stored.sha256 == artifact.summary.sha256);

    let missing: SinkSpec = serde_json::from_value(bed.sftp_store(&store_dir.join("gone.tar")))?;
    let err = read_head(&missing, &access, TIMEOUT).await.unwrap_err();
    ensure!(err.reason == "ArtifactNotFound", "{err:?}");

    let junk = store_dir.join("junk.tar");
    let bytes: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&junk, &bytes)?;
    std::fs::write(
        store_dir.join("junk.tar.sha256"),
        format!(
            "{}  junk.tar\n",
            Sha256Digest(Sha256::digest(&bytes).into())
        ),
    )?;
    let junk_spec: SinkSpec = serde_json::from_value(bed.sftp_store(&junk))?;
    let err = read_head(&junk_spec, &access, TIMEOUT).await.unwrap_err();
    ensure!(err.reason == "ArtifactMalformed", "{err:?}");

    // A staging run from a missing file: refused before anything is written on the node.
    let staged = bed.staged_path()?;
    let request = bed.request(
        bed.sftp_store(&store_dir.join("gone.tar")),
        &artifact.sha256_hex(),
        &staged,
    );
    let run = run_stage(&request, bed.dir.path()).await?;
    check_failed(&run, &staged, MoverStep::Connect, &["ArtifactNotFound"])?;
    Ok(())
}

/// The preflight's reader: the manifest and stored digest of an artifact; a missing object,
/// an object that is not an artifact (or only its start), a newer format, a garbled manifest.
async fn read_head_from_s3(kind: S3Kind) -> Result<()> {
    let bed = Bed::start()?;
    let s3 = S3Server::start(kind).await?;
    s3.create_bucket(BUCKET).await?;
    let artifact = bed.artifact(300_000, Fill::Random(13)).await?;
    put_artifact(&s3, "esc/a.tar", &artifact).await?;
    let access = s3_access(&s3);
    let spec = |key: &str| -> Result<SinkSpec> {
        let mut v = bed.s3_store(&s3, key, "WhenSupported")?;
        v["s3"].as_object_mut().unwrap().remove("credentialsDir");
        Ok(serde_json::from_value(v)?)
    };
    let head = read_head(&spec("esc/a.tar")?, &access, TIMEOUT).await?;
    ensure!(
        head.manifest == artifact.manifest,
        "{kind}: {:?}",
        head.manifest
    );
    ensure!(head.stored.size == artifact.summary.bytes);
    ensure!(head.stored.sha256 == artifact.summary.sha256);

    let err = read_head(&spec("esc/gone.tar")?, &access, TIMEOUT)
        .await
        .unwrap_err();
    ensure!(err.reason == "ArtifactNotFound", "{kind}: {err:?}");

    let bytes = std::fs::read(&artifact.path)?;
    let junk: Vec<u8> = (0..50_000u32).map(|i| (i * 13 % 253) as u8).collect();
    let mut newer = bytes.clone();
    replace_once(
        &mut newer,
        br#""formatVersion": 1"#,
        br#""formatVersion":99"#,
    )?;
    let mut garbled = bytes.clone();
    garbled[512] ^= b'{' ^ b'[';
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("junk", junk, "ArtifactMalformed"),
        ("start-only", bytes[..700].to_vec(), "ArtifactMalformed"),
        ("newer", newer, "ArtifactFormatTooNew"),
        ("garbled", garbled, "ManifestUnreadable"),
    ];
    for (name, body, reason) in cases {
        let key = format!("esc/{name}.tar");
        put_bytes(&s3, &key, body).await?;
        let err = read_head(&spec(&key)?, &access, TIMEOUT).await.unwrap_err();
        ensure!(err.reason == reason, "{kind} {name}: {err:?}");
        ensure!(!err.message.contains(s3.secret_key()));
    }
    s3.stop()
}

fn replace_once(bytes: &mut [u8], from: &[u8], to: &[u8]) -> Result<()> {
    ensure!(from.len() == to.len());
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .context("pattern not found")?;
    bytes[at..at + to.len()].copy_from_slice(to);
    Ok(())
}

/// A staging run from `key` on `s3`, expecting the artifact digest `expected`.
async fn stage_key(bed: &Bed, s3: &S3Server, key: &str, expected: &str) -> Result<(Run, PathBuf)> {
    let staged = bed.staged_path()?;
    let request = bed.request(bed.s3_store(s3, key, "WhenSupported")?, expected, &staged);
    Ok((run_stage(&request, bed.dir.path()).await?, staged))
}

/// Wrong, corrupt, truncated and missing artifacts: each refused with its reason, nothing
/// staged. The database member is committed under its name before the end of the artifact is
/// read: a failure after it (the wrong expected digest, a cut at the end) removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_artifacts_leave_nothing_staged() -> Result<()> {
    let bed = Bed::start()?;
    let s3 = S3Server::start(S3Kind::Minio).await?;
    s3.create_bucket(BUCKET).await?;
    let artifact = bed.artifact((1 << 20) + 3, Fill::Random(14)).await?;
    put_artifact(&s3, "esc/good.tar", &artifact).await?;
    let bytes = std::fs::read(&artifact.path)?;
    let expected = artifact.sha256_hex();

    // The expected digest is not the artifact's.
    let wrong = "0123456789abcdef".repeat(4);
    let (run, staged) = stage_key(&bed, &s3, "esc/good.tar", &wrong).await?;
    let message = check_failed(&run, &staged, MoverStep::Verify, &["ChecksumMismatch"])?;
    ensure!(
        message.contains(&wrong) && message.contains(&expected),
        "{message}"
    );

    // One byte flipped inside the database member.
    let mut corrupt = bytes.clone();
    corrupt[artifact.db_offset()? as usize + 1000] ^= 0x20;
    put_bytes(&s3, "esc/corrupt.tar", corrupt).await?;
    let (run, staged) = stage_key(&bed, &s3, "esc/corrupt.tar", &expected).await?;
    check_failed(&run, &staged, MoverStep::Transfer, &["ChecksumMismatch"])?;

    // Cut inside the database member, and inside the end-of-archive marker (after the member
    // was committed).
    for (name, len) in [("half", bytes.len() / 2), ("end", bytes.len() - 700)] {
        let key = format!("esc/cut-{name}.tar");
        put_bytes(&s3, &key, bytes[..len].to_vec()).await?;
        let (run, staged) = stage_key(&bed, &s3, &key, &expected).await?;
        check_failed(&run, &staged, MoverStep::Transfer, &["ArtifactTruncated"])
            .with_context(|| format!("cut {name}"))?;
    }

    // No object at all.
    let (run, staged) = stage_key(&bed, &s3, "esc/gone.tar", &expected).await?;
    check_failed(&run, &staged, MoverStep::Connect, &["ArtifactNotFound"])?;
    ensure!(!run.everything().contains(s3.secret_key()));
    s3.stop()
}

/// SIGTERM (the Job deleted) while the member streams onto the node: the report says
/// Cancelled in the Transfer step, and neither the staged file nor its partial name is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_transfer_leaves_nothing_staged() -> Result<()> {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let bed = Bed::start()?;
    let s3 = S3Server::start(S3Kind::Minio).await?;
    s3.create_bucket(BUCKET).await?;
    // Sparse zeros: quick to make; the debug build takes seconds to stream them.
    let artifact = bed.artifact(1 << 30, Fill::Zeros).await?;
    put_artifact(&s3, "esc/big.tar", &artifact).await?;
    std::fs::remove_file(&artifact.path)?;
    let staged = bed.staged_path()?;
    let request = bed.request(
        bed.s3_store(&s3, "esc/big.tar", "WhenRequired")?,
        &artifact.sha256_hex(),
        &staged,
    );
    let log = bed.path("termination-log-sigterm");
    let mut child = mover_command(&request, &log).spawn()?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    // A progress line with bytes read: the member is streaming onto the node.
    while let Some(line) = lines.next_line().await? {
        let v: Value = serde_json::from_str(&line)?;
        if v["event"] == "progress" && v["bytes"].as_u64().unwrap_or(0) > 0 {
            break;
        }
    }
    let partial = staged.with_file_name(format!("{STAGED_NAME}.partial"));
    ensure!(partial.exists(), "the member is not being written");
    let pid = nix::unistd::Pid::from_raw(child.id().context("pid")? as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
    while lines.next_line().await?.is_some() {}
    let status = child.wait().await?;
    ensure!(status.code() == Some(1), "{status}");
    let (_, report) = read_report(&log)?;
    let MoverReport::Failed { step, reason, .. } = &report else {
        bail!("{report:?}")
    };
    ensure!(
        (*step, reason.as_str()) == (MoverStep::Transfer, "Cancelled"),
        "{report:?}"
    );
    // The node's `cat` may still be ending when the mover removes the names: give it a moment.
    let dir = staged.parent().context("parent")?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    ensure!(
        listing(dir)?.is_empty(),
        "left on the node: {:?}",
        listing(dir)?
    );
    s3.stop()
}

/// A ~256 MiB artifact from MinIO: staged and verified with memory flat in the artifact's size.
/// Prints the throughput and the mover's peak RSS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_256_mib_artifact_stages_in_flat_memory() -> Result<()> {
    let bed = Bed::start()?;
    let s3 = S3Server::start(S3Kind::Minio).await?;
    s3.create_bucket(BUCKET).await?;
    let artifact = bed.artifact(256 << 20, Fill::Random(15)).await?;
    put_artifact(&s3, "esc/256.tar", &artifact).await?;
    std::fs::remove_file(&artifact.path)?;
    let staged = bed.staged_path()?;
    let request = bed.request(
        bed.s3_store(&s3, "esc/256.tar", "WhenSupported")?,
        &artifact.sha256_hex(),
        &staged,
    );
    let started = Instant::now();
    let run = run_stage(&request, bed.dir.path()).await?;
    let wall = started.elapsed();
    check_staged(&run, &artifact, &staged, "256 MiB")?;
    let MoverReport::Staged {
        artifact_size,
        seconds,
        bytes_per_second,
        ..
    } = &run.report
    else {
        bail!("{:?}", run.report)
    };
    eprintln!(
        "staged {artifact_size} bytes from MinIO: transfer {seconds:.2} s, {:.1} MiB/s; process {:.2} s; peak RSS {} KiB",
        bytes_per_second / (1 << 20) as f64,
        wall.as_secs_f64(),
        run.peak_rss_kib
    );
    // The artifact is 256 MiB: a mover that held it (or its member) would be far above this.
    ensure!(run.peak_rss_kib > 0, "no RSS seen");
    ensure!(
        run.peak_rss_kib < 96 << 10,
        "peak RSS {} KiB for a 256 MiB artifact",
        run.peak_rss_kib
    );
    std::fs::remove_file(&staged)?;
    s3.stop()
}

/// A request the mover cannot read is reported as such, with exit status 1.
#[tokio::test]
async fn an_unreadable_request_is_reported() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("log");
    // A backup's request is not a staging request.
    let backup = json!({"version": 1, "manifest": {}, "sink": {}});
    for (request, reason) in [
        (json!({"version": 9}), "RequestVersionMismatch"),
        (backup, "RequestUnreadable"),
    ] {
        let out = mover_command(&request, &log).output().await?;
        ensure!(out.status.code() == Some(1));
        let (_, report) = read_report(&log)?;
        let MoverReport::Failed {
            step, reason: got, ..
        } = report
        else {
            bail!("{report:?}")
        };
        ensure!(step == MoverStep::ReadRequest && got == reason, "{got}");
    }
    Ok(())
}
