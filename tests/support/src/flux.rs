//! Flux's controllers (source, kustomize, helm) as host processes against a test cluster: the
//! real GitOps engine users run, built from Go modules by `tools/flux/build.sh` (cached by
//! version; a warm call runs no `go`). Each controller runs in a process group of its own with
//! the cluster's admin kubeconfig, its HTTP ports on loopback, and a log under its directory;
//! dropping [`Flux`] stops them and removes the directory.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cluster::{TestCluster, repo_root};
use crate::process::ProcessGroup;

const CONTROLLERS: [&str; 3] = [
    "source-controller",
    "kustomize-controller",
    "helm-controller",
];

/// The running controllers.
pub struct Flux {
    processes: Vec<ProcessGroup>,
    dir: tempfile::TempDir,
}

/// The cache directory of `tools/flux/build.sh` (`bin/<controller>`, `crds/<controller>/`).
pub fn build() -> Result<PathBuf> {
    let script = repo_root().join("tools/flux/build.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("run {}", script.display()))?;
    if !out.status.success() {
        bail!("{} failed ({})", script.display(), out.status);
    }
    Ok(PathBuf::from(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .context("tools/flux/build.sh printed nothing")?
            .trim(),
    ))
}

impl Flux {
    /// Installs Flux's CRDs into `cluster` and starts the three controllers; returns once each
    /// answers `/readyz`.
    pub async fn start(cluster: &TestCluster) -> Result<Flux> {
        let cache = build()?;
        let mut crds = Vec::new();
        for controller in CONTROLLERS {
            for entry in std::fs::read_dir(cache.join("crds").join(controller))? {
                crds.push(entry?.path());
            }
        }
        crds.sort();
        cluster.install_crd_files(&crds).await?;
        let dir = tempfile::Builder::new()
            .prefix("esc-testbed-flux-")
            .tempdir()?;
        let storage = dir.path().join("storage");
        std::fs::create_dir(&storage)?;
        let port = || crate::host_procs::free_port(Ipv4Addr::LOCALHOST);
        let storage_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port()?));
        let mut flux = Flux {
            processes: Vec::new(),
            dir,
        };
        let mut health = Vec::new();
        for controller in CONTROLLERS {
            let health_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port()?));
            let metrics_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port()?));
            let mut cmd = Command::new(cache.join("bin").join(controller));
            cmd.env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("HOME", flux.dir.path())
                .env("KUBECONFIG", cluster.kubeconfig_path())
                .arg(format!("--health-addr={health_addr}"))
                .arg(format!("--metrics-addr={metrics_addr}"))
                // No notification-controller: events stay in the API server.
                .arg("--events-addr=")
                .arg("--log-level=info");
            if controller == "source-controller" {
                cmd.arg(format!("--storage-path={}", storage.display()))
                    .arg(format!("--storage-addr={storage_addr}"))
                    .arg(format!("--storage-adv-addr={storage_addr}"));
            }
            let log = flux.log_path(controller);
            flux.processes
                .push(ProcessGroup::spawn(controller, cmd, &log)?);
            health.push((controller, health_addr));
        }
        for (controller, addr) in health {
            wait_ready(addr, Duration::from_secs(60))
                .await
                .with_context(|| format!("{controller}: {}", flux.log_tail(controller, 20)))?;
        }
        Ok(flux)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self, controller: &str) -> PathBuf {
        self.dir.path().join(format!("{controller}.log"))
    }

    /// The last `lines` lines of a controller's log.
    pub fn log_tail(&self, controller: &str, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path(controller)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Stops every controller.
    pub fn stop(&mut self) {
        for p in &mut self.processes {
            p.stop(Duration::from_secs(5));
        }
    }
}

impl Drop for Flux {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until `GET /readyz` at `addr` answers 200.
async fn wait_ready(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await {
            let request =
                format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            if stream.write_all(request.as_bytes()).await.is_ok() {
                let mut response = String::new();
                let _ = stream.read_to_string(&mut response).await;
                if response.starts_with("HTTP/1.1 200") {
                    return Ok(());
                }
            }
        }
        if Instant::now() > deadline {
            bail!("/readyz at {addr} not 200 within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
