//! `esc-operator mover backup`, the real binary, as the backup Job runs it: files that real
//! `escadm backup` / `escadm log collect` runs left on simulated ESC nodes (behind real sshd),
//! streamed into MinIO and the Versity S3 Gateway (every S3 case on both) or onto an SFTP host
//! (a node's sshd). What is stored is read back: the archive and its manifest verify, the
//! members are the nodes' files byte for byte, the sidecar and the metadata hold the digest.
//! Every failure ends with exit status 1 and a report naming the step and a stable reason, no
//! multipart upload left, no temporary file on the SFTP host, and no secret in any output.
//!
//! Needs `tools/sshd/setup.sh` (run once, as root) and the S3 servers (`tools/s3/build.sh`,
//! built on first use).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use esc_operator::esc::parse::parse_log_collect;
use esc_operator::esc::{KnownHosts, Sha256Digest, SshCredentials};
use esc_operator::mover::SinkSpec;
use esc_operator::mover::sink::s3::{S3Access, S3Credentials};
use esc_operator::mover::sink::sftp::SshAccess;
use esc_operator::mover::sink::{StoreAccess, delete_stored, remove_leftovers, verify_stored};
use esc_operator::mover::{ArchiveReader, MoverReport, MoverRequest, MoverStep, REQUEST_ENV};
use esc_testbed::s3::{S3Kind, S3Server};
use esc_testbed::sshd::{Fill, Role, SimEsc, SimNode, SimSpec};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const BUCKET: &str = "backups";
const TIMEOUT: Duration = Duration::from_secs(10);

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

on_both_servers!(
    standalone_to_s3_when_supported,
    ha_to_s3_when_required,
    large_database_in_parts,
    metadata_by_multipart_copy,
    sigterm_mid_transfer_aborts_the_upload,
    sigkill_mid_transfer_leaves_an_upload_the_sweep_aborts,
    a_member_that_changes_aborts_the_upload,
    wrong_s3_credentials,
    missing_bucket,
    s3_down,
    missing_member_aborts_the_upload,
);

/// Simulated nodes with backup files on them, and the mover's mounted files.
struct Bed {
    sim: SimEsc,
    dir: tempfile::TempDir,
    /// The request's `members`, in archive order.
    members: Vec<Value>,
    nodes: Vec<Value>,
    /// Local paths of the members that exist, by member name.
    files: Vec<(String, PathBuf)>,
}

fn ok(out: esc_testbed::sshd::SshOutput, what: &str) -> Result<String> {
    ensure!(
        out.exit == 0,
        "{what}: exit {}: {}{}",
        out.exit,
        out.stdout,
        out.stderr
    );
    Ok(out.stdout)
}

fn member(kind: &str, node: &SimNode, path: &Path, optional: bool) -> Value {
    json!({"kind": kind, "node": node.name(), "host": node.address().to_string(), "port": node.port(),
           "path": path.display().to_string(), "optional": optional})
}

impl Bed {
    /// Standalone (`esc`) or HA (`esc-a` MASTER, `esc-b` BACKUP): the database backup taken on
    /// the master in maintenance, every node's logs, and the dynamic mapping file (present only
    /// with `mapping`; the member is optional).
    fn start(spec: SimSpec, mapping: bool) -> Result<Bed> {
        let sim = SimEsc::start(spec)?;
        sim.share_first_client_key()?;
        let dir = tempfile::tempdir()?;
        let master = &sim.nodes()[0];
        let db = master.data_dir().join("esc-db-backup.tar.bz2");
        ok(
            master.escadm("op_mode set --mode=maintenance")?,
            "maintenance",
        )?;
        ok(
            master.escadm(&format!("backup --file {}", db.display()))?,
            "backup",
        )?;
        ok(master.escadm("op_mode set --mode=operation")?, "operation")?;
        let mut members = vec![member("Database", master, &db, false)];
        let mut files = vec![("database".to_owned(), db)];
        let mut nodes = Vec::new();
        for node in sim.nodes() {
            let out = ok(node.escadm("log collect")?, "log collect")?;
            let logs = PathBuf::from(parse_log_collect(out.as_bytes())?.path);
            members.push(member("Logs", node, &logs, false));
            files.push((format!("logs-{}", node.name()), logs));
            let role = match node.state()?.role {
                Role::Master => "MASTER",
                Role::Backup => "BACKUP",
                _ => "STANDALONE",
            };
            nodes.push(json!({"name": node.name(), "role": role}));
        }
        let mapping_path = if mapping {
            let p = master.set_dynamic_mapping("<mappings><m id=\"1\"/></mappings>\n")?;
            files.push(("dynamic-mapping".to_owned(), p.clone()));
            p
        } else {
            master.dynamic_mapping_path()
        };
        members.push(member("DynamicMapping", master, &mapping_path, true));

        let ssh = dir.path().join("ssh");
        std::fs::create_dir(&ssh)?;
        std::fs::write(ssh.join("ssh-privatekey"), master.private_key_pem()?)?;
        let known: String = sim
            .nodes()
            .iter()
            .map(|n| format!("{}\n", n.known_hosts_line()))
            .collect();
        std::fs::write(dir.path().join("known_hosts"), known)?;
        Ok(Bed {
            sim,
            dir,
            members,
            nodes,
            files,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn request(&self, sink: Value) -> Value {
        json!({
            "version": 1,
            "manifest": {
                "formatVersion": 1,
                "cluster": {"namespace": "esc", "name": "prod"},
                "nodes": self.nodes,
                "escVersion": "5.10.0.86",
                "createdAt": "2026-11-29T10:00:00Z",
                "finishedAt": "2026-11-29T10:00:00Z",
                "members": []
            },
            "ssh": {
                "user": self.sim.nodes()[0].key_user(),
                "credentialsDir": self.path("ssh"),
                "knownHostsFile": self.path("known_hosts"),
                "connectTimeoutSeconds": 10
            },
            "members": self.members,
            "sink": sink,
            "progressIntervalSeconds": 1
        })
    }

    /// An S3 sink on `s3` with these credentials (written as the Secret's files).
    fn s3_sink(&self, s3: &S3Server, key: &str, mode: &str, secret: &str) -> Result<Value> {
        let creds = self.path("s3");
        std::fs::create_dir_all(&creds)?;
        std::fs::write(creds.join("AWS_ACCESS_KEY_ID"), s3.access_key())?;
        std::fs::write(creds.join("AWS_SECRET_ACCESS_KEY"), format!("{secret}\n"))?;
        Ok(json!({"s3": {
            "bucket": BUCKET, "key": key, "endpoint": s3.endpoint(), "forcePathStyle": true,
            "checksumMode": mode, "partSizeBytes": 5 << 20, "concurrency": 2,
            "credentialsDir": creds
        }}))
    }
}

/// What one mover run gave.
struct Run {
    status: i32,
    stdout: String,
    stderr: String,
    report_text: String,
    report: MoverReport,
}

impl Run {
    /// Fails unless the mover exited 0, with its report and stderr (`what` says which run).
    fn exited_ok(&self, what: &str) -> Result<()> {
        ensure!(
            self.status == 0,
            "{what}: exit {}: {}\n{}",
            self.status,
            self.report_text,
            self.stderr
        );
        Ok(())
    }

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

async fn run_mover(request: &Value, dir: &Path) -> Result<Run> {
    // The request must be one the controller could write.
    let text = request.to_string();
    MoverRequest::parse(&text).context("the test's request is invalid")?;
    let log = dir.join(format!("termination-log-{}", rand_suffix()));
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_esc-operator"))
        .args(["mover", "backup", "--termination-log"])
        .arg(&log)
        .env(REQUEST_ENV, text)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .stdin(Stdio::null())
        .output()
        .await?;
    let report_text = std::fs::read_to_string(&log).context("no report written")?;
    ensure!(
        report_text.len() <= 4096,
        "report of {} bytes",
        report_text.len()
    );
    let report: MoverReport =
        serde_json::from_str(&report_text).with_context(|| format!("report: {report_text}"))?;
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
    })
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn digest(bytes: &[u8]) -> Sha256Digest {
    Sha256Digest(Sha256::digest(bytes).into())
}

/// The stored archive is the one reported, its manifest and members verify, and each member
/// is the node's file byte for byte.
async fn check_artifact(bytes: &[u8], report: &MoverReport, bed: &Bed) -> Result<()> {
    let MoverReport::Succeeded {
        size,
        sha256,
        members,
        ..
    } = report
    else {
        bail!("not a success: {report:?}");
    };
    ensure!(
        *size == bytes.len() as u64,
        "size {size} vs {}",
        bytes.len()
    );
    ensure!(*sha256 == digest(bytes), "the digest differs");
    let reader = ArchiveReader::open(bytes).await?;
    ensure!(
        &reader.manifest().members == members,
        "manifest members differ from the report"
    );
    ensure!(reader.manifest().cluster.name == "prod");
    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    let expected: Vec<&str> = bed.files.iter().map(|(n, _)| n.as_str()).collect();
    ensure!(
        names == expected,
        "members {names:?}, expected {expected:?}"
    );
    ensure!(reader.verify().await? == members.len());
    for (name, path) in &bed.files {
        let mut out = Vec::new();
        ArchiveReader::open(bytes)
            .await?
            .extract_to(name, &mut out)
            .await?;
        ensure!(
            out == std::fs::read(path)?,
            "member {name} differs from the node's file"
        );
    }
    Ok(())
}

async fn s3_success(kind: S3Kind, spec: SimSpec, mapping: bool, mode: &str) -> Result<()> {
    let bed = Bed::start(spec, mapping)?;
    let s3 = S3Server::start(kind).await?;
    s3.create_bucket(BUCKET).await?;
    backup_and_check(kind, &bed, &s3, "esc/prod/backup-1.tar", mode).await?;
    s3.stop()
}

/// Runs the mover into `key` and checks everything that was stored.
async fn backup_and_check(
    kind: S3Kind,
    bed: &Bed,
    s3: &S3Server,
    key: &str,
    mode: &str,
) -> Result<()> {
    let secret = s3.secret_key().to_owned();
    let run = run_mover(
        &bed.request(bed.s3_sink(s3, key, mode, &secret)?),
        bed.dir.path(),
    )
    .await?;
    run.exited_ok(&kind.to_string())?;
    let MoverReport::Succeeded { uri, sha256, .. } = &run.report else {
        bail!("{kind}: {:?}", run.report);
    };
    ensure!(uri == &format!("s3://{BUCKET}/{key}"));
    ensure!(
        run.steps() == ["ReadRequest", "Connect", "Inspect", "Transfer", "Verify"],
        "{kind}: steps {:?}",
        run.steps()
    );
    ensure!(run.stdout.contains(r#""event":"progress""#));

    let bytes = s3.get_object(BUCKET, key).await?;
    check_artifact(&bytes, &run.report, bed).await?;
    let head = s3.head_object(BUCKET, key).await?.context("no object")?;
    ensure!(head.content_length() == Some(bytes.len() as i64));
    let meta = head.metadata().and_then(|m| m.get("sha256")).cloned();
    ensure!(
        meta == Some(sha256.to_string()),
        "{kind}: metadata {meta:?}"
    );
    let base = key.rsplit('/').next().unwrap_or(key);
    let sidecar = s3.get_object(BUCKET, &format!("{key}.sha256")).await?;
    ensure!(
        sidecar == format!("{sha256}  {base}\n").into_bytes(),
        "{kind}: sidecar {:?}",
        String::from_utf8_lossy(&sidecar)
    );
    ensure!(s3.list_multipart_uploads(BUCKET).await?.is_empty());
    ensure!(
        !run.everything().contains(&secret),
        "{kind}: the S3 secret was printed"
    );

    // What the controller does with credentials in memory: verify, then delete.
    let spec: SinkSpec = serde_json::from_value(bed.s3_sink(s3, key, mode, &secret)?)?;
    let access = StoreAccess::S3(S3Access {
        credentials: S3Credentials::from_keys(s3.access_key(), secret.clone(), None),
        ca_bundle_pem: None,
    });
    let stored = verify_stored(&spec, &access, TIMEOUT).await?;
    ensure!(stored.size == bytes.len() as u64 && stored.sha256 == *sha256);
    delete_stored(&spec, &access, TIMEOUT).await?;
    ensure!(s3.head_object(BUCKET, key).await?.is_none());
    ensure!(
        s3.head_object(BUCKET, &format!("{key}.sha256"))
            .await?
            .is_none()
    );
    let gone = verify_stored(&spec, &access, TIMEOUT).await.unwrap_err();
    ensure!(gone.reason == "ArtifactMissing", "{kind}: {gone:?}");
    delete_stored(&spec, &access, TIMEOUT).await?;
    Ok(())
}

/// Server-side encryption (SSE-S3, `AES256`) and a storage class, end to end on MinIO: the
/// artifact (several parts) and its sidecar are stored encrypted, the digest metadata set
/// afterwards by a copy keeps the encryption, and the artifact reads back whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_with_a_storage_class_on_minio() -> Result<()> {
    let mut bed = Bed::start(SimSpec::standalone(), false)?;
    let node = &bed.sim.nodes()[0];
    let big = node.create_file("big-db.tar.bz2", (11 << 20) + 99, Fill::Random(3))?;
    bed.members[0]["path"] = big.display().to_string().into();
    bed.files[0].1 = big;
    let s3 = S3Server::start(S3Kind::Minio).await?;
    s3.create_bucket(BUCKET).await?;
    let key = "sse/backup.tar";
    let secret = s3.secret_key().to_owned();
    let mut sink = bed.s3_sink(&s3, key, "WhenSupported", &secret)?;
    sink["s3"]["sse"] = json!({ "algorithm": "AES256" });
    sink["s3"]["storageClass"] = json!("STANDARD");
    let run = run_mover(&bed.request(sink), bed.dir.path()).await?;
    run.exited_ok("mover")?;
    for object in [key.to_owned(), format!("{key}.sha256")] {
        let head = s3
            .head_object(BUCKET, &object)
            .await?
            .context("no object")?;
        ensure!(
            head.server_side_encryption().map(|e| e.as_str()) == Some("AES256"),
            "{object}: {:?}",
            head.server_side_encryption()
        );
    }
    let head = s3.head_object(BUCKET, key).await?.context("no object")?;
    ensure!(head.metadata().and_then(|m| m.get("sha256")).is_some());
    let bytes = s3.get_object(BUCKET, key).await?;
    check_artifact(&bytes, &run.report, &bed).await?;
    s3.stop()
}

/// An S3 endpoint on HTTPS with a certificate from a private CA (MinIO with its own TLS): with
/// the CA bundle the mover stores and verifies the artifact; without it the mover refuses the
/// endpoint's certificate, stores nothing, and says what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_is_trusted_through_the_ca_bundle() -> Result<()> {
    let bed = Bed::start(SimSpec::standalone(), false)?;
    let s3 = S3Server::start_tls().await?;
    ensure!(s3.endpoint().starts_with("https://"));
    s3.create_bucket(BUCKET).await?;
    let secret = s3.secret_key().to_owned();
    let ca = bed.path("ca.pem");
    std::fs::write(&ca, s3.ca_pem().context("no CA")?)?;

    let mut sink = bed.s3_sink(&s3, "tls/backup.tar", "WhenSupported", &secret)?;
    sink["s3"]["caBundleFile"] = json!(ca);
    let run = run_mover(&bed.request(sink), bed.dir.path()).await?;
    run.exited_ok("mover")?;
    let bytes = s3.get_object(BUCKET, "tls/backup.tar").await?;
    check_artifact(&bytes, &run.report, &bed).await?;

    // The system's roots do not know the private CA: refused before anything is stored.
    let sink = bed.s3_sink(&s3, "tls/untrusted.tar", "WhenSupported", &secret)?;
    let run = run_mover(&bed.request(sink), bed.dir.path()).await?;
    let MoverReport::Failed {
        reason, message, ..
    } = &run.report
    else {
        bail!("an untrusted endpoint was accepted: {:?}", run.report);
    };
    ensure!(run.status != 0);
    ensure!(
        reason == "S3CertificateNotTrusted"
            && message.contains("UnknownIssuer")
            && message.contains("caBundleSecretRef"),
        "{reason}: {message}"
    );
    ensure!(s3.head_object(BUCKET, "tls/untrusted.tar").await?.is_none());
    ensure!(s3.list_multipart_uploads(BUCKET).await?.is_empty());
    s3.stop()
}

/// A database of several parts (5 MiB parts, 2 in flight), in both checksum modes: the parts
/// arrive in order and each part's checksum (WhenSupported) is repeated on completion.
async fn large_database_in_parts(kind: S3Kind) -> Result<()> {
    let mut bed = Bed::start(SimSpec::standalone(), false)?;
    let node = &bed.sim.nodes()[0];
    let big = node.create_file("big-db.tar.bz2", (17 << 20) + 4321, Fill::Random(7))?;
    bed.members[0]["path"] = big.display().to_string().into();
    bed.files[0].1 = big;
    let s3 = S3Server::start(kind).await?;
    s3.create_bucket(BUCKET).await?;
    backup_and_check(kind, &bed, &s3, "parts/when-supported.tar", "WhenSupported").await?;
    backup_and_check(kind, &bed, &s3, "parts/when-required.tar", "WhenRequired").await?;
    s3.stop()
}

async fn standalone_to_s3_when_supported(kind: S3Kind) -> Result<()> {
    s3_success(kind, SimSpec::standalone(), false, "WhenSupported").await
}

async fn ha_to_s3_when_required(kind: S3Kind) -> Result<()> {
    s3_success(kind, SimSpec::ha(), true, "WhenRequired").await
}

async fn s3_failure(
    kind: S3Kind,
    setup: impl AsyncFnOnce(&Bed, &S3Server) -> Result<(Value, Option<String>)>,
    step: MoverStep,
    reason: &str,
    stop_first: bool,
) -> Result<()> {
    let bed = Bed::start(SimSpec::standalone(), false)?;
    let s3 = S3Server::start(kind).await?;
    s3.create_bucket(BUCKET).await?;
    let (request, secret) = setup(&bed, &s3).await?;
    let s3 = if stop_first {
        s3.stop()?;
        None
    } else {
        Some(s3)
    };
    let run = run_mover(&request, bed.dir.path()).await?;
    ensure!(
        run.status == 1,
        "{kind}: exit {}: {}",
        run.status,
        run.report_text
    );
    let (got_step, got_reason, message) = run.failed();
    ensure!(
        (got_step, got_reason.as_str()) == (step, reason),
        "{kind}: {got_step:?} {got_reason}: {message}"
    );
    ensure!(!message.is_empty());
    if let Some(secret) = secret {
        ensure!(
            !run.everything().contains(&secret),
            "{kind}: a secret was printed"
        );
    }
    if let Some(s3) = s3 {
        ensure!(
            s3.list_multipart_uploads(BUCKET).await?.is_empty(),
            "{kind}: a multipart upload was left"
        );
        ensure!(s3.head_object(BUCKET, "esc/prod/b.tar").await?.is_none());
        s3.stop()?;
    }
    Ok(())
}

async fn wrong_s3_credentials(kind: S3Kind) -> Result<()> {
    s3_failure(
        kind,
        async |bed, s3| {
            let wrong = "wrong-secret-3f9a7c21e0b8d4f6a5c3e1d9b7f5a3c1e9d7b5f3";
            let sink = bed.s3_sink(s3, "esc/prod/b.tar", "WhenSupported", wrong)?;
            Ok((bed.request(sink), Some(wrong.to_owned())))
        },
        MoverStep::Connect,
        "S3AccessDenied",
        false,
    )
    .await
}

async fn missing_bucket(kind: S3Kind) -> Result<()> {
    s3_failure(
        kind,
        async |bed, s3| {
            let mut sink = bed.s3_sink(s3, "esc/prod/b.tar", "WhenRequired", s3.secret_key())?;
            sink["s3"]["bucket"] = "no-such-bucket".into();
            Ok((bed.request(sink), Some(s3.secret_key().to_owned())))
        },
        MoverStep::Connect,
        "NoSuchBucket",
        false,
    )
    .await
}

async fn s3_down(kind: S3Kind) -> Result<()> {
    s3_failure(
        kind,
        async |bed, s3| {
            let sink = bed.s3_sink(s3, "esc/prod/b.tar", "WhenSupported", s3.secret_key())?;
            Ok((bed.request(sink), Some(s3.secret_key().to_owned())))
        },
        MoverStep::Connect,
        "S3Unreachable",
        true,
    )
    .await
}

/// The upload is created before the members are inspected: a missing file aborts it.
async fn missing_member_aborts_the_upload(kind: S3Kind) -> Result<()> {
    s3_failure(
        kind,
        async |bed, s3| {
            let sink = bed.s3_sink(s3, "esc/prod/b.tar", "WhenSupported", s3.secret_key())?;
            let mut request = bed.request(sink);
            request["members"][1]["path"] = "/var/tmp/esc_log-gone.tar.bz2".into();
            Ok((request, Some(s3.secret_key().to_owned())))
        },
        MoverStep::Inspect,
        "MemberMissing",
        false,
    )
    .await
}

/// An SFTP sink on `host` (its key user and key), the artifact in `out`.
fn sftp_sink(
    bed: &Bed,
    host: &SimNode,
    out: &Path,
    known_hosts: &str,
    password: Option<&str>,
) -> Result<Value> {
    let creds = bed.path(&format!("sftp-{}", rand_suffix()));
    std::fs::create_dir(&creds)?;
    let user = match password {
        Some(p) => {
            std::fs::write(creds.join("password"), p)?;
            host.password_user().to_owned()
        }
        None => {
            std::fs::write(creds.join("ssh-privatekey"), host.private_key_pem()?)?;
            host.key_user().to_owned()
        }
    };
    let kh = bed.path(&format!("sftp-known-hosts-{}", rand_suffix()));
    std::fs::write(&kh, known_hosts)?;
    Ok(json!({"sftp": {
        "host": host.address().to_string(), "port": host.port(), "user": user,
        "path": out.join("backup-1.tar").display().to_string(),
        "credentialsDir": creds, "knownHostsFile": kh
    }}))
}

fn out_dir(node: &SimNode) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let out = node.data_dir().join(format!("artifacts-{}", rand_suffix()));
    std::fs::create_dir(&out)?;
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777))?;
    Ok(out)
}

fn listing(dir: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_>>()?;
    names.sort();
    Ok(names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_to_sftp() -> Result<()> {
    let bed = Bed::start(SimSpec::ha(), true)?;
    let host = bed.sim.node("esc-b");
    let out = out_dir(host)?;
    let sink = sftp_sink(&bed, host, &out, &host.known_hosts_line(), None)?;
    let sink_value = sink.clone();
    let run = run_mover(&bed.request(sink), bed.dir.path()).await?;
    run.exited_ok("mover")?;
    let MoverReport::Succeeded { uri, sha256, .. } = &run.report else {
        bail!("{:?}", run.report);
    };
    let path = out.join("backup-1.tar");
    ensure!(
        uri == &format!(
            "sftp://{}@{}:{}{}",
            host.key_user(),
            host.address(),
            host.port(),
            path.display()
        ),
        "{uri}"
    );
    // The final names only: no temporary file left.
    ensure!(
        listing(&out)? == ["backup-1.tar", "backup-1.tar.sha256"],
        "{:?}",
        listing(&out)?
    );
    let bytes = std::fs::read(&path)?;
    check_artifact(&bytes, &run.report, &bed).await?;
    ensure!(
        std::fs::read_to_string(out.join("backup-1.tar.sha256"))?
            == format!("{sha256}  backup-1.tar\n")
    );
    // What the controller does with credentials in memory: verify, then delete.
    let spec: SinkSpec = serde_json::from_value(sink_value)?;
    let access = StoreAccess::Sftp(SshAccess {
        credentials: SshCredentials::private_key(host.private_key_pem()?.into_bytes(), None),
        known_hosts: KnownHosts::parse(&host.known_hosts_line()),
    });
    let stored = verify_stored(&spec, &access, TIMEOUT).await?;
    ensure!(stored.size == bytes.len() as u64 && stored.sha256 == *sha256);
    // sha256sum itself agrees with the sidecar.
    let check = std::process::Command::new("sha256sum")
        .arg("-c")
        .arg("backup-1.tar.sha256")
        .current_dir(&out)
        .output()?;
    ensure!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    delete_stored(&spec, &access, TIMEOUT).await?;
    ensure!(listing(&out)?.is_empty(), "{:?}", listing(&out)?);
    let gone = verify_stored(&spec, &access, TIMEOUT).await.unwrap_err();
    ensure!(gone.reason == "ArtifactMissing", "{gone:?}");
    Ok(())
}

/// SIGKILL while the archive streams to an SFTP host: the temporary file stays, and the
/// operator's sweep removes it and nothing else beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sftp_sigkill_mid_transfer_leaves_a_temp_file_the_sweep_removes() -> Result<()> {
    let mut bed = Bed::start(SimSpec::standalone(), false)?;
    let host = &bed.sim.nodes()[0];
    let out = out_dir(host)?;
    let decoys = [
        "backup-1.tar.part-not-hex-digits",
        "other.tar.part-0123456789abcdef",
    ];
    for d in decoys {
        std::fs::write(out.join(d), b"not this run's")?;
    }
    let sink = sftp_sink(&bed, host, &out, &host.known_hosts_line(), None)?;
    let access = StoreAccess::Sftp(SshAccess {
        credentials: SshCredentials::private_key(host.private_key_pem()?.into_bytes(), None),
        known_hosts: KnownHosts::parse(&host.known_hosts_line()),
    });
    let cutoff = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64
        - 300;
    let (status, report) =
        signal_mid_transfer(&mut bed, sink.clone(), nix::sys::signal::Signal::SIGKILL).await?;
    ensure!(
        status.code().is_none() && report.is_none(),
        "{status} {report:?}"
    );
    let left = listing(&out)?;
    ensure!(
        left.len() == 3
            && left
                .iter()
                .any(|n| n.starts_with("backup-1.tar.part-") && n.len() == 34),
        "{left:?}"
    );
    let spec: SinkSpec = serde_json::from_value(sink)?;
    ensure!(remove_leftovers(&spec, &access, TIMEOUT, cutoff).await? == 1);
    ensure!(listing(&out)? == decoys, "{:?}", listing(&out)?);
    // A directory that is gone holds no temporary file: nothing to remove, no error.
    let SinkSpec::Sftp(mut gone) = spec else {
        bail!("not an SFTP sink")
    };
    gone.path = out.join("no-such-dir/backup-1.tar").display().to_string();
    ensure!(remove_leftovers(&SinkSpec::Sftp(gone), &access, TIMEOUT, cutoff).await? == 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sftp_auth_failure_leaves_no_file() -> Result<()> {
    let bed = Bed::start(SimSpec::standalone(), false)?;
    let host = bed.sim.node("esc");
    let out = out_dir(host)?;
    let wrong = "not-the-password-7c1e9d";
    let sink = sftp_sink(&bed, host, &out, &host.known_hosts_line(), Some(wrong))?;
    let run = run_mover(&bed.request(sink), bed.dir.path()).await?;
    ensure!(run.status == 1, "exit {}: {}", run.status, run.report_text);
    let (step, reason, message) = run.failed();
    ensure!(
        (step, reason.as_str()) == (MoverStep::Connect, "AuthRejected"),
        "{step:?} {reason}: {message}"
    );
    ensure!(listing(&out)?.is_empty(), "{:?}", listing(&out)?);
    ensure!(
        !run.everything().contains(wrong),
        "the password was printed"
    );
    ensure!(!run.everything().contains(host.password()));
    Ok(())
}

/// The SFTP file is created before the members are inspected: a missing member removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sftp_missing_member_leaves_no_file() -> Result<()> {
    let bed = Bed::start(SimSpec::standalone(), false)?;
    let host = bed.sim.node("esc");
    let out = out_dir(host)?;
    let sink = sftp_sink(&bed, host, &out, &host.known_hosts_line(), None)?;
    let mut request = bed.request(sink);
    request["members"][0]["path"] = "/var/tmp/esc-db-gone.tar.bz2".into();
    let run = run_mover(&request, bed.dir.path()).await?;
    ensure!(run.status == 1, "exit {}: {}", run.status, run.report_text);
    let (step, reason, message) = run.failed();
    ensure!(
        (step, reason.as_str()) == (MoverStep::Inspect, "MemberMissing"),
        "{step:?} {reason}: {message}"
    );
    ensure!(
        message.contains("/var/tmp/esc-db-gone.tar.bz2"),
        "{message}"
    );
    ensure!(listing(&out)?.is_empty(), "{:?}", listing(&out)?);
    Ok(())
}

/// A node whose host key is not the one known_hosts records is refused, for the ESC nodes and
/// for the SFTP host alike; nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_key_mismatch_is_refused() -> Result<()> {
    let bed = Bed::start(SimSpec::ha(), false)?;
    let (a, b) = (bed.sim.node("esc-a"), bed.sim.node("esc-b"));
    // esc-a's address with esc-b's key.
    let forged = format!("[{}]:{} {}\n", a.address(), a.port(), b.host_public_key());

    let out = out_dir(b)?;
    let sink = sftp_sink(&bed, b, &out, &b.known_hosts_line(), None)?;
    let mut request = bed.request(sink);
    let kh = bed.path("forged_known_hosts");
    std::fs::write(&kh, format!("{forged}{}\n", b.known_hosts_line()))?;
    request["ssh"]["knownHostsFile"] = kh.display().to_string().into();
    let run = run_mover(&request, bed.dir.path()).await?;
    ensure!(run.status == 1);
    let (step, reason, message) = run.failed();
    ensure!(
        (step, reason.as_str()) == (MoverStep::Connect, "HostKeyMismatch"),
        "nodes: {step:?} {reason}: {message}"
    );
    ensure!(message.contains(&a.address().to_string()), "{message}");

    let sink = sftp_sink(&bed, a, &out, &forged, None)?;
    let run = run_mover(&bed.request(sink), bed.dir.path()).await?;
    ensure!(run.status == 1);
    let (step, reason, message) = run.failed();
    ensure!(
        (step, reason.as_str()) == (MoverStep::Connect, "HostKeyMismatch"),
        "sftp: {step:?} {reason}: {message}"
    );
    ensure!(listing(&out)?.is_empty(), "{:?}", listing(&out)?);
    Ok(())
}

/// A request the mover cannot read is reported as such, with exit status 1.
#[tokio::test]
async fn an_unreadable_request_is_reported() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("log");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_esc-operator"))
        .args(["mover", "backup", "--termination-log"])
        .arg(&log)
        .env(REQUEST_ENV, r#"{"version": 9}"#)
        .output()
        .await?;
    ensure!(out.status.code() == Some(1));
    let report: MoverReport = serde_json::from_str(&std::fs::read_to_string(&log)?)?;
    let MoverReport::Failed { step, reason, .. } = report else {
        bail!("{report:?}")
    };
    ensure!(step == MoverStep::ReadRequest && reason == "RequestVersionMismatch");
    Ok(())
}

/// A member that changes between its inspection and its transfer (a file still being written)
/// fails the transfer after parts were uploaded: the multipart upload is aborted.
async fn a_member_that_changes_aborts_the_upload(kind: S3Kind) -> Result<()> {
    use std::io::Write;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let mut bed = Bed::start(SimSpec::standalone(), false)?;
    let node = &bed.sim.nodes()[0];
    let growing = node.create_file("growing-db.tar.bz2", 12 << 20, Fill::Random(3))?;
    bed.members[0]["path"] = growing.display().to_string().into();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, path) = (stop.clone(), growing.clone());
        std::thread::spawn(move || -> Result<()> {
            let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
            while !stop.load(Ordering::Relaxed) {
                f.write_all(&[7; 512])?;
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            Ok(())
        })
    };
    let s3 = S3Server::start(kind).await?;
    s3.create_bucket(BUCKET).await?;
    let sink = bed.s3_sink(&s3, "esc/prod/b.tar", "WhenSupported", s3.secret_key())?;
    let run = run_mover(&bed.request(sink), bed.dir.path()).await;
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("the writer thread")?;
    let run = run?;
    ensure!(
        run.status == 1,
        "{kind}: exit {}: {}",
        run.status,
        run.report_text
    );
    let (step, reason, message) = run.failed();
    // Which check sees the change first depends on timing: the SSH stream delivering more bytes
    // than `stat` said (TransferSizeMismatch), the archive writer counting them
    // (MemberSizeMismatch), or the digest at the member's end (ChecksumMismatch).
    ensure!(
        step == MoverStep::Transfer
            && [
                "TransferSizeMismatch",
                "MemberSizeMismatch",
                "ChecksumMismatch"
            ]
            .contains(&reason.as_str()),
        "{kind}: {step:?} {reason}: {message}"
    );
    ensure!(
        s3.list_multipart_uploads(BUCKET).await?.is_empty(),
        "{kind}: a multipart upload was left"
    );
    ensure!(s3.head_object(BUCKET, "esc/prod/b.tar").await?.is_none());
    s3.stop()
}

/// Objects over CopyObject's limit get their digest metadata by a multipart copy in ranges
/// (exercised here with a limit of 0 and 5 MiB ranges): content kept, metadata set, no upload
/// left.
async fn metadata_by_multipart_copy(kind: S3Kind) -> Result<()> {
    use esc_operator::mover::request::S3Sink;
    use esc_operator::mover::sink::s3::{S3Access, S3Credentials, client, set_digest_metadata};
    use esc_testbed::s3::aws_sdk_s3::primitives::ByteStream;

    let s3 = S3Server::start(kind).await?;
    s3.create_bucket(BUCKET).await?;
    let body: Vec<u8> = (0..(12u32 << 20) + 7).map(|i| (i % 251) as u8).collect();
    let key = "copy/big.tar";
    s3.client()
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .body(ByteStream::from(body.clone()))
        .send()
        .await?;
    let spec: S3Sink = serde_json::from_value(json!({
        "bucket": BUCKET, "key": key, "endpoint": s3.endpoint(), "forcePathStyle": true,
        "checksumMode": "WhenRequired"
    }))?;
    let access = S3Access {
        credentials: S3Credentials::from_keys(s3.access_key(), s3.secret_key(), None),
        ca_bundle_pem: None,
    };
    let c = client(&spec, &access).await?;
    let sha = digest(&body);
    set_digest_metadata(&c, &spec, body.len() as u64, &sha, 0, 5 << 20).await?;
    let head = s3.head_object(BUCKET, key).await?.context("no object")?;
    let meta = head.metadata().and_then(|m| m.get("sha256")).cloned();
    ensure!(meta == Some(sha.to_string()), "{kind}: metadata {meta:?}");
    ensure!(
        s3.get_object(BUCKET, key).await? == body,
        "{kind}: content changed"
    );
    ensure!(s3.list_multipart_uploads(BUCKET).await?.is_empty());
    s3.stop()
}

/// Starts the mover on a 2 GiB database (sparse zeros: instant to make, seconds to stream
/// through a debug build) into `sink`, waits for its first progress line (parts are being
/// uploaded) and sends it `signal`. Returns its exit status and its report, if it wrote one.
async fn signal_mid_transfer(
    bed: &mut Bed,
    sink: Value,
    signal: nix::sys::signal::Signal,
) -> Result<(std::process::ExitStatus, Option<MoverReport>)> {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let big = bed.sim.nodes()[0].create_file("huge-db.tar.bz2", 2 << 30, Fill::Zeros)?;
    bed.members[0]["path"] = big.display().to_string().into();
    let log = bed.path(&format!("termination-log-{}", rand_suffix()));
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_esc-operator"))
        .args(["mover", "backup", "--termination-log"])
        .arg(&log)
        .env(REQUEST_ENV, bed.request(sink).to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    while let Some(line) = lines.next_line().await? {
        if line.contains(r#""event":"progress""#) {
            break;
        }
    }
    let pid = nix::unistd::Pid::from_raw(child.id().context("pid")? as i32);
    nix::sys::signal::kill(pid, signal)?;
    while lines.next_line().await?.is_some() {}
    let status = child.wait().await?;
    let report = match std::fs::read_to_string(&log) {
        Ok(text) => Some(serde_json::from_str(&text)?),
        Err(_) => None,
    };
    Ok((status, report))
}

/// SIGTERM (the Job deleted) while the archive streams: the report says Cancelled in the
/// Transfer step, and the multipart upload is aborted.
async fn sigterm_mid_transfer_aborts_the_upload(kind: S3Kind) -> Result<()> {
    let mut bed = Bed::start(SimSpec::standalone(), false)?;
    let s3 = S3Server::start(kind).await?;
    s3.create_bucket(BUCKET).await?;
    let sink = bed.s3_sink(&s3, "esc/prod/b.tar", "WhenRequired", s3.secret_key())?;
    let (status, report) =
        signal_mid_transfer(&mut bed, sink, nix::sys::signal::Signal::SIGTERM).await?;
    ensure!(status.code() == Some(1), "{kind}: {status}");
    let Some(MoverReport::Failed { step, reason, .. }) = &report else {
        bail!("{kind}: {report:?}")
    };
    ensure!(
        (*step, reason.as_str()) == (MoverStep::Transfer, "Cancelled"),
        "{kind}: {report:?}"
    );
    ensure!(
        s3.list_multipart_uploads(BUCKET).await?.is_empty(),
        "{kind}: a multipart upload was left"
    );
    s3.stop()
}

/// SIGKILL (an OOM kill, a lost node) while the archive streams: the mover cannot abort its
/// upload, and the operator's sweep (`remove_leftovers`, in the run's cleanup) aborts exactly
/// that one: not an incomplete upload of a longer key under the same prefix, not one begun
/// before the cutoff.
async fn sigkill_mid_transfer_leaves_an_upload_the_sweep_aborts(kind: S3Kind) -> Result<()> {
    let mut bed = Bed::start(SimSpec::standalone(), false)?;
    let s3 = S3Server::start(kind).await?;
    s3.create_bucket(BUCKET).await?;
    let key = "esc/prod/b.tar";
    let decoy = s3
        .client()
        .create_multipart_upload()
        .bucket(BUCKET)
        .key(format!("{key}.other"))
        .send()
        .await?;
    let cutoff = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64
        - 300;
    let sink = bed.s3_sink(&s3, key, "WhenRequired", s3.secret_key())?;
    let (status, report) =
        signal_mid_transfer(&mut bed, sink.clone(), nix::sys::signal::Signal::SIGKILL).await?;
    ensure!(status.code().is_none(), "{kind}: {status}");
    ensure!(report.is_none(), "{kind}: {report:?}");
    let keys = |uploads: Vec<esc_testbed::s3::MultipartUpload>| {
        let mut k: Vec<String> = uploads.into_iter().map(|u| u.key).collect();
        k.sort();
        k
    };
    let left = keys(s3.list_multipart_uploads(BUCKET).await?);
    ensure!(
        left == [key.to_owned(), format!("{key}.other")],
        "{kind}: {left:?}"
    );
    let spec: SinkSpec = serde_json::from_value(sink)?;
    let access = StoreAccess::S3(S3Access {
        credentials: S3Credentials::from_keys(s3.access_key(), s3.secret_key().to_owned(), None),
        ca_bundle_pem: None,
    });
    // A cutoff after the kill: nothing is this run's.
    let later = cutoff + 3600;
    ensure!(remove_leftovers(&spec, &access, TIMEOUT, later).await? == 0);
    ensure!(remove_leftovers(&spec, &access, TIMEOUT, cutoff).await? == 1);
    let left = keys(s3.list_multipart_uploads(BUCKET).await?);
    ensure!(left == [format!("{key}.other")], "{kind}: {left:?}");
    // Swept already: nothing more, no error.
    ensure!(remove_leftovers(&spec, &access, TIMEOUT, cutoff).await? == 0);
    s3.client()
        .abort_multipart_upload()
        .bucket(BUCKET)
        .key(format!("{key}.other"))
        .upload_id(decoy.upload_id().context("upload id")?)
        .send()
        .await?;
    // A bucket that is gone holds no upload: nothing to remove, and no error to report.
    s3.client().delete_bucket().bucket(BUCKET).send().await?;
    ensure!(remove_leftovers(&spec, &access, TIMEOUT, cutoff).await? == 0);
    s3.stop()
}
