//! S3 servers on loopback for the tests, the benchmarks and the demo (issue 19).
//!
//! ```no_run
//! use esc_testbed::s3::{S3Kind, S3Server};
//! # async fn f() -> anyhow::Result<()> {
//! let s3 = S3Server::start(S3Kind::Minio).await?;  // or S3Kind::Versity
//! s3.create_bucket("backups").await?;
//! // hand s3.endpoint(), s3.access_key(), s3.secret_key() to the code under test, then:
//! assert!(s3.list_multipart_uploads("backups").await?.is_empty());
//! let bytes = s3.get_object("backups", "esc-a/db.tar").await?;
//! s3.stop()?; // or drop it
//! # Ok(()) }
//! ```
//!
//! Two real servers, because S3-compatible stores differ exactly where backup tools break
//! (checksum headers, aws-chunked uploads, multipart listing): MinIO, what most on-prem users run,
//! and the Versity S3 Gateway over a plain directory. `tools/s3/build.sh` builds both from Go
//! modules at pinned versions, once per machine (cached by version).
//!
//! Each server: 127.0.0.1 and a free port, a temp directory of its own (data, log), and a random
//! access key and secret made for it alone. The keys reach the server through its environment,
//! never its arguments, and the [`Debug`] of a server shows neither. It runs under
//! [`ProcessGroup`]; dropping the server (or [`S3Server::stop`]) ends it and removes the
//! directory, and if the test process dies without destructors a watchdog does both
//! (`ESC_TESTBED_KEEP=1` keeps the directory for debugging).
//!
//! The client is `aws-sdk-s3`, the SDK the operator's mover uses: path-style addressing, region
//! `us-east-1`, static credentials, and nothing from the environment (no `AWS_*` variables, no
//! profile), so a developer's own AWS setup never reaches a test. May import the rest of the
//! test bed; nothing of the operator.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use host_procs::free_port;

use crate::cluster::repo_root;
use crate::process::{ExitWatchdog, ProcessGroup, log_tail};

/// The SDK, for tests that need its types (checksum modes, errors) without a dependency of
/// their own.
pub use aws_sdk_s3;

/// The region every server and client here uses; the servers accept any, SigV4 needs one.
pub const REGION: &str = "us-east-1";

/// Which S3 implementation to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Kind {
    /// MinIO (single drive), `minio server`.
    Minio,
    /// The Versity S3 Gateway, `versitygw posix DIR`.
    Versity,
}

impl S3Kind {
    pub const ALL: [S3Kind; 2] = [S3Kind::Minio, S3Kind::Versity];

    pub fn name(self) -> &'static str {
        match self {
            S3Kind::Minio => "minio",
            S3Kind::Versity => "versitygw",
        }
    }
}

impl fmt::Display for S3Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One multipart upload in progress, as `ListMultipartUploads` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartUpload {
    pub key: String,
    pub upload_id: String,
}

/// A running S3 server; dropping it stops the server and removes its directory.
pub struct S3Server {
    kind: S3Kind,
    addr: SocketAddr,
    /// With TLS: the PEM of the CA that signed the server's certificate (127.0.0.1).
    tls_ca_pem: Option<String>,
    access_key: String,
    secret_key: String,
    client: Client,
    /// None once stopped (or between attempts to start).
    process: Option<ProcessGroup>,
    /// None when `ESC_TESTBED_KEEP` keeps the directory.
    dir: Option<tempfile::TempDir>,
    dir_path: PathBuf,
    /// Kills the process group and removes the directory if this process dies with the server
    /// running; disarmed by a normal stop.
    watchdog: Option<ExitWatchdog>,
}

impl fmt::Debug for S3Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Server")
            .field("kind", &self.kind)
            .field("endpoint", &self.endpoint())
            .field("dir", &self.dir_path)
            .field("credentials", &"<redacted>")
            .finish()
    }
}

impl S3Server {
    /// Starts a server of `kind` and returns once it answers a signed request (`ListBuckets`)
    /// with its credentials. Builds the servers first if this machine has none (minutes, once).
    pub async fn start(kind: S3Kind) -> Result<S3Server> {
        Self::start_with(kind, false).await
    }

    /// MinIO serving HTTPS only, with a certificate for 127.0.0.1 from a fresh CA
    /// ([`S3Server::ca_pem`]): what a private S3 endpoint with an in-house CA looks like.
    pub async fn start_tls() -> Result<S3Server> {
        Self::start_with(S3Kind::Minio, true).await
    }

    /// The CA that signed the server's certificate (TLS servers only).
    pub fn ca_pem(&self) -> Option<&str> {
        self.tls_ca_pem.as_deref()
    }

    async fn start_with(kind: S3Kind, tls: bool) -> Result<S3Server> {
        let bin = bin_dir()?.join(kind.name());
        let tmp = tempfile::Builder::new()
            .prefix(&format!("esc-s3-{kind}-"))
            .tempdir()
            .context("create the S3 server's directory")?;
        let (dir, dir_path) = if std::env::var_os("ESC_TESTBED_KEEP").is_some() {
            (None, tmp.keep())
        } else {
            let path = tmp.path().to_path_buf();
            (Some(tmp), path)
        };
        for sub in ["data", "iam"] {
            std::fs::create_dir(dir_path.join(sub))?;
        }
        let (access_key, secret_key) = (random_key(20)?, random_key(40)?);
        let tls_ca_pem = if tls {
            // MinIO reads `public.crt` and `private.key` from its certs directory.
            let pki = crate::certs::Pki::create(&dir_path.join("pki"))?;
            let files = pki.issue_server("s3", "esc-testbed-s3", &[])?;
            let certs = dir_path.join("certs");
            std::fs::create_dir_all(&certs)?;
            std::fs::copy(&files.cert, certs.join("public.crt"))?;
            std::fs::copy(&files.key, certs.join("private.key"))?;
            Some(pki.ca_cert_pem().to_owned())
        } else {
            None
        };
        let addr = loopback_free_port()?;
        let client = Client::from_conf(
            config_builder(addr, &access_key, &secret_key, tls_ca_pem.as_deref()).build(),
        );
        let mut server = S3Server {
            kind,
            addr,
            tls_ca_pem,
            access_key,
            secret_key,
            client,
            process: None,
            dir,
            dir_path,
            watchdog: None,
        };
        let mut last_err = None;
        for attempt in 0..5 {
            if attempt > 0 {
                server.addr = loopback_free_port()?;
                server.client = Client::from_conf(server.config_builder().build());
            }
            let log = server.log_path();
            let _ = std::fs::remove_file(&log);
            let pg = ProcessGroup::spawn(kind.name(), server.command(&bin), &log)?;
            // If this process dies without dropping the server: SIGKILL is enough, the data goes
            // too. (The process group's own watchdog fires as well; killing twice is harmless.)
            if server.dir.is_some() {
                server.watchdog = Some(ExitWatchdog::arm(&format!(
                    "kill -KILL -{} 2>/dev/null; rm -rf {}",
                    pg.pid(),
                    shell_quote(&server.dir_path)
                ))?);
            }
            server.process = Some(pg);
            let Err(e) = server.wait_ready(Duration::from_secs(60)).await else {
                return Ok(server);
            };
            server.stop_process();
            if let Some(watchdog) = server.watchdog.take() {
                watchdog.disarm();
            }
            let tail = log_tail(&log, 20);
            // Another process took the port between free_port and the bind: take another.
            if !tail.to_ascii_lowercase().contains("in use") {
                bail!("{kind} did not start: {e:#}; log:\n{tail}");
            }
            last_err = Some(anyhow!("{e:#}; log: {tail}"));
        }
        Err(last_err.unwrap_or_else(|| anyhow!("{kind} did not start")))
    }

    pub fn kind(&self) -> S3Kind {
        self.kind
    }

    /// `http://127.0.0.1:PORT` (`https://` with TLS), for path-style clients.
    pub fn endpoint(&self) -> String {
        endpoint(self.addr, self.tls_ca_pem.is_some())
    }

    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// The server's directory (its data under `data/`, its log `server.log`, versitygw's IAM
    /// under `iam/`); gone after stop.
    pub fn dir(&self) -> &Path {
        &self.dir_path
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir_path.join("server.log")
    }

    /// The server's process (the leader of its process group); None once stopped.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ProcessGroup::pid)
    }

    /// A client with this server's credentials and the SDK's defaults otherwise.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The configuration behind [`S3Server::client`], to change before building a client (say
    /// `request_checksum_calculation`): `Client::from_conf(s3.config_builder().….build())`.
    pub fn config_builder(&self) -> aws_sdk_s3::config::Builder {
        config_builder(
            self.addr,
            &self.access_key,
            &self.secret_key,
            self.tls_ca_pem.as_deref(),
        )
    }

    /// A client that signs with other credentials, to prove the server refuses them.
    pub fn client_with_credentials(&self, access_key: &str, secret_key: &str) -> Client {
        Client::from_conf(
            config_builder(
                self.addr,
                access_key,
                secret_key,
                self.tls_ca_pem.as_deref(),
            )
            .build(),
        )
    }

    pub async fn create_bucket(&self, name: &str) -> Result<()> {
        self.client
            .create_bucket()
            .bucket(name)
            .send()
            .await
            .with_context(|| format!("{}: create bucket {name}", self.kind))?;
        Ok(())
    }

    /// Every multipart upload in progress in `bucket` (all pages).
    pub async fn list_multipart_uploads(&self, bucket: &str) -> Result<Vec<MultipartUpload>> {
        let mut uploads = Vec::new();
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(bucket)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .with_context(|| format!("{}: list multipart uploads in {bucket}", self.kind))?;
            for u in page.uploads() {
                uploads.push(MultipartUpload {
                    key: u.key().unwrap_or_default().to_owned(),
                    upload_id: u.upload_id().unwrap_or_default().to_owned(),
                });
            }
            if page.is_truncated() != Some(true) {
                return Ok(uploads);
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            id_marker = page.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() && id_marker.is_none() {
                bail!("{}: truncated multipart listing without markers", self.kind);
            }
        }
    }

    /// The object's metadata (size, ETag, checksums if asked for with `checksum_mode` by the
    /// caller's own request); None when there is no such object.
    pub async fn head_object(&self, bucket: &str, key: &str) -> Result<Option<HeadObjectOutput>> {
        match self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(head) => Ok(Some(head)),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Err(e) => {
                Err(anyhow::Error::new(e)
                    .context(format!("{}: head object {bucket}/{key}", self.kind)))
            }
        }
    }

    /// The whole object, in memory: for tests with objects of a few MiB.
    pub async fn get_object(&self, bucket: &str, key: &str) -> Result<Vec<u8>> {
        let what = || format!("{}: get object {bucket}/{key}", self.kind);
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .with_context(what)?;
        let body = out.body.collect().await.with_context(what)?;
        Ok(body.into_bytes().to_vec())
    }

    /// Stops the server and removes its directory, then checks that neither its processes nor
    /// the directory are left (`ESC_TESTBED_KEEP=1`: the directory stays, by request).
    pub fn stop(mut self) -> Result<()> {
        let pgid = self.pid();
        let removes_dir = self.dir.is_some();
        self.shutdown();
        if let Some(pgid) = pgid {
            let left: Vec<u32> = host_procs::processes()?
                .into_iter()
                .filter(|p| p.pgid == pgid && p.is_alive())
                .map(|p| p.pid)
                .collect();
            if !left.is_empty() {
                bail!("{}: processes left after stop: {left:?}", self.kind);
            }
        }
        if removes_dir && self.dir_path.exists() {
            bail!("{}: {} left after stop", self.kind, self.dir_path.display());
        }
        Ok(())
    }

    fn command(&self, bin: &Path) -> Command {
        let data = self.dir_path.join("data");
        let mut cmd = Command::new(bin);
        // A clean environment: no MINIO_* or VGW_* of the developer's shell changes the server.
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &self.dir_path)
            .current_dir(&self.dir_path);
        match self.kind {
            S3Kind::Minio => {
                cmd.env("MINIO_ROOT_USER", &self.access_key)
                    .env("MINIO_ROOT_PASSWORD", &self.secret_key)
                    // No web console (it would listen on a second port) and no update checks.
                    .env("MINIO_BROWSER", "off")
                    .env("MINIO_UPDATE", "off")
                    // A built-in KMS key, so SSE-S3 (`AES256`) requests work as on AWS. A test
                    // key, not a secret: it protects nothing outside this throwaway server.
                    .env(
                        "MINIO_KMS_SECRET_KEY",
                        "esc-test-key:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
                    )
                    .arg("server")
                    .arg("--quiet")
                    .arg("--address")
                    .arg(self.addr.to_string())
                    // Its default is ~/.minio/certs, which it creates.
                    .arg("--certs-dir")
                    .arg(self.dir_path.join("certs"))
                    .arg(&data);
            }
            S3Kind::Versity => {
                cmd.env("ROOT_ACCESS_KEY_ID", &self.access_key)
                    .env("ROOT_SECRET_ACCESS_KEY", &self.secret_key)
                    .arg("--port")
                    .arg(self.addr.to_string())
                    .arg("--region")
                    .arg(REGION)
                    // With an IAM service, as a multi-user gateway runs: in its single-account
                    // mode an unknown access key gets 404 XAdminUserNotFound instead of S3's
                    // 403 InvalidAccessKeyId (auth/iam_single.go in v1.8.0).
                    .arg("--iam-dir")
                    .arg(self.dir_path.join("iam"))
                    .arg("posix")
                    .arg(&data);
            }
        }
        cmd
    }

    /// Polls with a signed `ListBuckets` until it succeeds: the listener is up and the server
    /// knows our credentials. Fails at once when the process has exited.
    async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        // No retries and short timeouts: this loop is the retry.
        let probe = Client::from_conf(
            self.config_builder()
                .retry_config(RetryConfig::disabled())
                .timeout_config(
                    TimeoutConfig::builder()
                        .connect_timeout(Duration::from_secs(1))
                        .operation_attempt_timeout(Duration::from_secs(5))
                        .build(),
                )
                .build(),
        );
        let deadline = Instant::now() + timeout;
        loop {
            let exited = self
                .process
                .as_mut()
                .and_then(ProcessGroup::try_exit_status);
            if let Some(status) = exited {
                bail!("{} exited ({status})", self.kind);
            }
            let err = match probe.list_buckets().send().await {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() > deadline {
                bail!(
                    "{} on {} not ready after {timeout:?}: {}",
                    self.kind,
                    self.addr,
                    aws_sdk_s3::error::DisplayErrorContext(&err)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn stop_process(&mut self) {
        if let Some(mut pg) = self.process.take() {
            pg.stop(Duration::from_secs(5));
        }
    }

    /// Process first, then the directory, then the watchdog (its work is done).
    fn shutdown(&mut self) {
        self.stop_process();
        if let Some(dir) = self.dir.take()
            && let Err(e) = dir.close()
        {
            eprintln!("esc-testbed: remove {}: {e}", self.dir_path.display());
        }
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.disarm();
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The directory with `minio` and `versitygw`, built by `tools/s3/build.sh` on first use on a
/// machine (about 9 min on 2 cores, most of it MinIO) and cached by version; later calls
/// return at once.
pub fn bin_dir() -> Result<PathBuf> {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    if let Some(dir) = DIR.get() {
        return Ok(dir.clone());
    }
    let dir = run_build_script("s3/build.sh")?;
    Ok(DIR.get_or_init(|| dir).clone())
}

/// A key of `len` characters from [A-Z0-9] out of the kernel's random source: the servers accept
/// these in both roles, and nothing in them needs quoting anywhere.
fn random_key(len: usize) -> Result<String> {
    use std::io::Read;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut bytes = vec![0u8; len];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("read /dev/urandom")?;
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect())
}

fn loopback_free_port() -> Result<SocketAddr> {
    let port = free_port(Ipv4Addr::LOCALHOST)?;
    Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}

/// Path-style addressing (the servers have no DNS names), static credentials, and nothing from
/// the environment or a profile.
fn endpoint(addr: SocketAddr, tls: bool) -> String {
    format!("{}://{addr}", if tls { "https" } else { "http" })
}

fn config_builder(
    addr: SocketAddr,
    access_key: &str,
    secret_key: &str,
    ca_pem: Option<&str>,
) -> aws_sdk_s3::config::Builder {
    let mut builder = aws_sdk_s3::config::Builder::new();
    if let Some(pem) = ca_pem {
        use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
        let context = TlsContext::builder()
            .with_trust_store(TrustStore::empty().with_pem_certificate(pem.as_bytes()))
            .build()
            .expect("the test CA is valid PEM");
        builder = builder.http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(tls::Provider::Rustls(
                    tls::rustls_provider::CryptoMode::AwsLc,
                ))
                .tls_context(context)
                .build_https(),
        );
    }
    builder
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint(addr, ca_pem.is_some()))
        .force_path_style(true)
        .credentials_provider(Credentials::new(
            access_key,
            secret_key,
            None,
            None,
            "esc-testbed",
        ))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .build(),
        )
}

/// Runs the build script `tools/<script>` and returns the last line of its stdout as a path.
fn run_build_script(script: &str) -> Result<PathBuf> {
    let path = repo_root().join("tools").join(script);
    let out = Command::new("bash")
        .arg(&path)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("run {}", path.display()))?;
    if !out.status.success() {
        bail!("{} failed ({})", path.display(), out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout
        .lines()
        .last()
        .with_context(|| format!("{} printed nothing", path.display()))?;
    Ok(PathBuf::from(last.trim()))
}

fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}
