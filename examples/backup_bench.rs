//! Benchmark (issue 19): back up 1 GiB and 4 GiB databases from a simulated ESC node (real
//! OpenSSH sshd on loopback) to MinIO with `esc-operator mover backup`, and print beside it, in
//! one run: the raw legs (the SSH read alone, the S3 upload alone), the pipeline an admin would
//! script (`ssh node cat FILE | aws s3 cp - s3://...`), the mover's peak RSS, and one row for
//! the Versity S3 Gateway.
//!
//! ```text
//! cargo build --release --bin esc-operator
//! cargo run --release --example backup_bench [-- --sizes-mib 1024,4096 --versity-mib 1024
//!                                               --part-mib 5 --concurrency 4]
//! ```
//!
//! Rows, per size:
//! - `ssh read`: [`SshSession::read_file`] (what the mover reads through) into a sink;
//! - `s3 upload`: the mover's [`S3Upload`] fed from the file on local disk (no SSH, no hashing),
//!   completed with the digest metadata and the sidecar as the mover does;
//! - `mover`: the release binary as the Job runs it, wall time from start to exit (so it
//!   includes hashing the file on the node before the transfer: `openssl dgst`, or `sha256sum`
//!   where the node has no openssl), and its transfer phase alone; peak RSS is `VmHWM` of
//!   `/proc/PID/status`, read until it exits;
//! - `ssh | aws s3 cp`: OpenSSH's `ssh ... cat FILE` piped into awscli (`pip install awscli`;
//!   the row says so when `aws` is missing). Its keys reach awscli in a credentials file.
//!
//! Goals (issue 19): mover ≥ 0.9× the slower raw leg, ≥ 1.3× the scripted pipeline, peak RSS
//! ≤ 64 MiB and flat from 1 to 4 GiB. Disk: each size needs the file on the node plus one
//! stored copy at a time (objects are deleted after each row), so 4 GiB needs about 8 GiB free.
//! Needs `tools/sshd/setup.sh` (run once, as root) and the S3 servers (built on first use).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use esc_operator::esc::{
    KnownHosts, RemotePath, SessionOptions, Sha256Digest, SshCredentials, SshSession, SshTarget,
};
use esc_operator::mover::request::S3Sink;
use esc_operator::mover::sink::s3::{self, S3Access, S3Credentials, S3Upload};
use esc_operator::mover::{MoverReport, REQUEST_ENV};
use esc_testbed::host_procs;
use esc_testbed::s3::{S3Kind, S3Server};
use esc_testbed::sshd::{Fill, SimEsc, SimNode, SimSpec};
use serde_json::json;
use tokio::io::AsyncWriteExt;

const BUCKET: &str = "bench";

struct Args {
    sizes_mib: Vec<u64>,
    versity_mib: u64,
    part_mib: u64,
    concurrency: u32,
}

fn args() -> Result<Args> {
    let mut a = Args {
        sizes_mib: vec![1024, 4096],
        versity_mib: 1024,
        part_mib: 5,
        concurrency: 4,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--sizes-mib" => {
                a.sizes_mib = value()?
                    .split(',')
                    .map(|s| s.trim().parse())
                    .collect::<Result<_, _>>()?
            }
            "--versity-mib" => a.versity_mib = value()?.parse()?,
            "--part-mib" => a.part_mib = value()?.parse()?,
            "--concurrency" => a.concurrency = value()?.parse()?,
            other => bail!(
                "unknown argument {other} (use --sizes-mib A,B --versity-mib N --part-mib N --concurrency N)"
            ),
        }
    }
    Ok(a)
}

/// The mover binary built next to this example (`target/release/esc-operator`).
fn mover_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the example's directory")?;
    let bin = dir.join("esc-operator");
    ensure!(
        bin.exists(),
        "{} is missing: run `cargo build --release --bin esc-operator` first",
        bin.display()
    );
    Ok(bin)
}

struct Bench {
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    mover: PathBuf,
    part: u64,
    concurrency: u32,
}

/// One measured row.
struct Row {
    what: String,
    bytes: u64,
    seconds: f64,
    note: String,
}

impl Row {
    fn mbps(&self) -> f64 {
        self.bytes as f64 / self.seconds / 1e6
    }
}

impl Bench {
    fn sink(&self, s3: &S3Server, key: &str) -> Result<S3Sink> {
        Ok(serde_json::from_value(json!({
            "bucket": BUCKET, "key": key, "endpoint": s3.endpoint(), "forcePathStyle": true,
            "checksumMode": "WhenSupported", "partSizeBytes": self.part, "concurrency": self.concurrency,
            "credentialsDir": self.s3_creds(s3)?,
        }))?)
    }

    fn s3_creds(&self, s3: &S3Server) -> Result<PathBuf> {
        let dir = self.dir.path().join(format!("s3-{}", s3.kind()));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("AWS_ACCESS_KEY_ID"), s3.access_key())?;
        std::fs::write(dir.join("AWS_SECRET_ACCESS_KEY"), s3.secret_key())?;
        Ok(dir)
    }

    fn ssh_read(&self, node: &SimNode, file: &Path, size: u64) -> Result<Row> {
        let remote = RemotePath::new(file.display().to_string())?;
        let n = self.rt.block_on(async {
            let session = SshSession::connect(
                SshTarget::new(node.address().to_string(), node.port(), node.key_user()),
                &SshCredentials::private_key(node.private_key_pem()?.into_bytes(), None),
                &KnownHosts::parse(&node.known_hosts_line()),
                SessionOptions::default(),
            )
            .await?;
            let t = Instant::now();
            let mut r = session.read_file(&remote).await?;
            let n = tokio::io::copy(&mut r, &mut tokio::io::sink()).await?;
            let el = t.elapsed().as_secs_f64();
            session.close().await;
            anyhow::Ok((n, el))
        })?;
        ensure!(n.0 == size, "ssh read {} of {size} bytes", n.0);
        Ok(Row {
            what: "ssh read".into(),
            bytes: size,
            seconds: n.1,
            note: String::new(),
        })
    }

    fn s3_upload(&self, s3: &S3Server, file: &Path, size: u64) -> Result<Row> {
        let key = "raw/upload.tar";
        let spec = self.sink(s3, key)?;
        let seconds = self.rt.block_on(async {
            let access = S3Access {
                credentials: S3Credentials::from_keys(s3.access_key(), s3.secret_key(), None),
                ca_bundle_pem: None,
            };
            let client = s3::client(&spec, &access).await?;
            let t = Instant::now();
            let mut upload = S3Upload::start(client, &spec).await?;
            let mut f = tokio::fs::File::open(file).await?;
            let copied = tokio::io::copy(&mut f, &mut upload).await;
            let n = match copied {
                Ok(n) => n,
                Err(e) => {
                    upload.abort().await;
                    return Err(e.into());
                }
            };
            upload.flush().await?;
            upload.finish(&Sha256Digest([0; 32])).await?;
            ensure!(n == size, "uploaded {n} of {size} bytes");
            anyhow::Ok(t.elapsed().as_secs_f64())
        })?;
        self.delete(s3, key)?;
        Ok(Row {
            what: "s3 upload".into(),
            bytes: size,
            seconds,
            note: format!(
                "{} MiB parts, {} in flight",
                self.part >> 20,
                self.concurrency
            ),
        })
    }

    /// The release mover, as the Job runs it; the row's note holds its peak RSS.
    fn mover(
        &self,
        s3: &S3Server,
        node: &SimNode,
        file: &Path,
        size: u64,
    ) -> Result<(Row, Row, u64)> {
        let key = "mover/backup.tar";
        let ssh = self.dir.path().join("ssh");
        std::fs::create_dir_all(&ssh)?;
        std::fs::write(ssh.join("ssh-privatekey"), node.private_key_pem()?)?;
        let known = self.dir.path().join("known_hosts");
        std::fs::write(&known, format!("{}\n", node.known_hosts_line()))?;
        let request = json!({
            "version": 1,
            "manifest": {
                "formatVersion": 1, "cluster": {"namespace": "esc", "name": "bench"},
                "nodes": [{"name": node.name(), "role": "STANDALONE"}],
                "escVersion": "5.10.0.86",
                "createdAt": "2026-11-29T10:00:00Z", "finishedAt": "2026-11-29T10:00:00Z",
                "members": []
            },
            "ssh": {"user": node.key_user(), "credentialsDir": ssh, "knownHostsFile": known},
            "members": [{"kind": "Database", "node": node.name(), "host": node.address().to_string(),
                         "port": node.port(), "path": file.display().to_string()}],
            "sink": {"s3": self.sink(s3, key)?},
            "progressIntervalSeconds": 5
        });
        let log = self.dir.path().join("termination-log");
        let t = Instant::now();
        let mut child = Command::new(&self.mover)
            .args(["mover", "backup", "--termination-log"])
            .arg(&log)
            .env(REQUEST_ENV, request.to_string())
            .env("ESC_MOVER_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        let pid = child.id();
        let mut peak = 0;
        let status = loop {
            if let Some(hwm) = host_procs::status_number(pid, "VmHWM") {
                peak = peak.max(hwm * 1024);
            }
            if let Some(status) = child.try_wait()? {
                break status;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let wall = t.elapsed().as_secs_f64();
        let report: MoverReport = serde_json::from_str(&std::fs::read_to_string(&log)?)?;
        ensure!(status.success(), "the mover failed: {report:?}");
        let MoverReport::Succeeded {
            seconds,
            size: stored,
            ..
        } = report
        else {
            bail!("{report:?}")
        };
        self.delete(s3, key)?;
        let note = format!("peak RSS {:.1} MiB", peak as f64 / (1 << 20) as f64);
        Ok((
            Row {
                what: format!("mover ({})", s3.kind()),
                bytes: size,
                seconds: wall,
                note: format!("start to exit, incl. hashing on the node; {note}"),
            },
            Row {
                what: format!("mover transfer ({})", s3.kind()),
                bytes: stored,
                seconds,
                note: "the Transfer step alone (stream, complete, metadata, sidecar)".into(),
            },
            peak,
        ))
    }

    fn pipeline(&self, s3: &S3Server, node: &SimNode, file: &Path, size: u64) -> Result<Row> {
        if Command::new("aws").arg("--version").output().is_err() {
            return Ok(Row {
                what: "ssh | aws s3 cp".into(),
                bytes: size,
                seconds: f64::NAN,
                note: "awscli missing: pip install awscli".into(),
            });
        }
        let key = "admin/backup.tar";
        let script = format!(
            "set -o pipefail; ssh -F /dev/null -p {port} -i {keyfile} -o UserKnownHostsFile={kh} \
             -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o BatchMode=yes \
             {user}@{host} cat {file} | aws s3 cp --only-show-errors --endpoint-url {ep} - s3://{BUCKET}/{key}",
            port = node.port(),
            keyfile = node.private_key_path().display(),
            kh = node.known_hosts_file().display(),
            user = node.key_user(),
            host = node.address(),
            file = file.display(),
            ep = s3.endpoint(),
        );
        // The keys go to awscli in a credentials file of its own (0600), never in an argument
        // or an environment value.
        let creds = self.dir.path().join("aws-credentials");
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&creds)?;
            write!(
                f,
                "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
                s3.access_key(),
                s3.secret_key()
            )?;
        }
        let t = Instant::now();
        let out = Command::new("bash")
            .arg("-c")
            .arg(&script)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", &creds)
            .output()?;
        let seconds = t.elapsed().as_secs_f64();
        ensure!(
            out.status.success(),
            "the pipeline failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stored = self
            .rt
            .block_on(s3.head_object(BUCKET, key))?
            .and_then(|h| h.content_length())
            .unwrap_or(-1);
        ensure!(
            stored == size as i64,
            "the pipeline stored {stored} of {size} bytes"
        );
        self.delete(s3, key)?;
        Ok(Row {
            what: "ssh | aws s3 cp".into(),
            bytes: size,
            seconds,
            note: "OpenSSH default cipher, awscli defaults (8 MiB parts, 10 threads)".into(),
        })
    }

    fn delete(&self, s3: &S3Server, key: &str) -> Result<()> {
        self.rt.block_on(async {
            for k in [key.to_owned(), format!("{key}.sha256")] {
                s3.client()
                    .delete_object()
                    .bucket(BUCKET)
                    .key(&k)
                    .send()
                    .await?;
            }
            anyhow::Ok(())
        })
    }
}

fn main() -> Result<()> {
    let args = args()?;
    let bench = Bench {
        rt: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?,
        dir: tempfile::tempdir()?,
        mover: mover_binary()?,
        part: args.part_mib << 20,
        concurrency: args.concurrency,
    };
    let sim = SimEsc::start(SimSpec::standalone())?;
    let node = sim.node("esc");
    let minio = bench.rt.block_on(S3Server::start(S3Kind::Minio))?;
    bench.rt.block_on(minio.create_bucket(BUCKET))?;

    let mut table: Vec<(u64, Vec<Row>)> = Vec::new();
    let mut peaks = Vec::new();
    let mut summary = Vec::new();
    for &mib in &args.sizes_mib {
        let size = mib << 20;
        eprintln!(
            "creating a {mib} MiB incompressible file on node {}...",
            node.name()
        );
        let file = node.create_file(&format!("db-{mib}.bin"), size, Fill::Random(mib))?;
        eprintln!("measuring {mib} MiB...");
        let ssh = bench.ssh_read(node, &file, size)?;
        let up = bench.s3_upload(&minio, &file, size)?;
        let (mover, transfer, peak) = bench.mover(&minio, node, &file, size)?;
        let pipe = bench.pipeline(&minio, node, &file, size)?;
        let slower_leg = ssh.mbps().min(up.mbps());
        summary.push(format!(
            "{mib} MiB: mover / slower raw leg {:.2}x (goal >= 0.9x; transfer step {:.2}x), mover / pipeline {:.2}x (goal >= 1.3x), peak RSS {:.1} MiB (goal <= 64)",
            mover.mbps() / slower_leg,
            transfer.mbps() / slower_leg,
            mover.mbps() / pipe.mbps(),
            peak as f64 / (1 << 20) as f64,
        ));
        peaks.push((mib, peak));
        table.push((mib, vec![ssh, up, mover, transfer, pipe]));
        std::fs::remove_file(&file)?;
    }
    minio.stop()?;

    let versity = bench.rt.block_on(S3Server::start(S3Kind::Versity))?;
    bench.rt.block_on(versity.create_bucket(BUCKET))?;
    let size = args.versity_mib << 20;
    let file = node.create_file("db-versity.bin", size, Fill::Random(3))?;
    let (vm, vt, vpeak) = bench.mover(&versity, node, &file, size)?;
    table.push((args.versity_mib, vec![vm, vt]));
    std::fs::remove_file(&file)?;
    versity.stop()?;

    println!(
        "{:>6}  {:<24} {:>9} {:>8}  note",
        "MiB", "row", "seconds", "MB/s"
    );
    for (mib, rows) in &table {
        for r in rows {
            println!(
                "{mib:>6}  {:<24} {:>9.2} {:>8.0}  {}",
                r.what,
                r.seconds,
                r.mbps(),
                r.note
            );
        }
    }
    println!();
    for line in &summary {
        println!("{line}");
    }
    println!(
        "versitygw {} MiB: mover peak RSS {:.1} MiB",
        args.versity_mib,
        vpeak as f64 / (1 << 20) as f64
    );
    if let (Some(first), Some(last)) = (peaks.first(), peaks.last())
        && first.0 != last.0
    {
        println!(
            "peak RSS {} MiB → {} MiB: {:.1} → {:.1} MiB ({:+.1} MiB)",
            first.0,
            last.0,
            first.1 as f64 / (1 << 20) as f64,
            last.1 as f64 / (1 << 20) as f64,
            (last.1 as f64 - first.1 as f64) / (1 << 20) as f64
        );
    }
    Ok(())
}
