//! A real Kubernetes cluster for the tests: etcd, kube-apiserver, kube-controller-manager and
//! kube-scheduler on free loopback ports, and optionally a real node (containerd + kubelet, see
//! [`crate::node`]).
//!
//! The binaries come from `tools/cluster/build.sh` (built from Go modules once, cached by
//! version; instant afterwards). Everything a cluster writes lives in one temporary directory
//! `/tmp/esc-testbed-*`; everything it starts is stopped when the owned [`TestCluster`] drops,
//! and — through one [`ExitWatchdog`] per cluster — when the test process dies however it dies
//! (the shared cluster of a test binary is never dropped: the watchdog stops it at exit).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use esc_testbed::cluster::TestCluster;
//! let cluster = TestCluster::shared_control_plane();
//! let ns = cluster.namespace("my-test").await?;
//! let client = cluster.client();
//! # Ok(()) }
//! ```
//!
//! Clients: a `kube::Client` belongs to the tokio runtime it was built on (it spawns a worker
//! task there), and every `#[tokio::test]` has its own runtime. So the cluster hands out fresh
//! clients ([`TestCluster::client`]) instead of sharing one; call it inside the test's runtime.
//!
//! The parts, one module each: [`ClusterOptions`] (what to start), `control_plane` (the flags and
//! processes of etcd and the Kubernetes components), `audit` (the API server's audit log of
//! writes, read back as [`AuditEvent`]s; `request_log` logs reads too, on request), `kubeconfig` (the files the components and tests
//! authenticate with), `namespaces` (per-test namespaces and RBAC grants), `crds`
//! (installing CustomResourceDefinitions), `binaries` (where the binaries come from) and
//! `teardown` (stopping it all, also when the test process dies). This file holds the cluster
//! itself: starting it and what a test asks of it. May import the rest of the test bed;
//! nothing here knows the operator.

mod audit;
mod binaries;
mod control_plane;
mod crds;
mod kubeconfig;
mod namespaces;
mod options;
mod request_log;
mod teardown;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::certs::Pki;
use crate::node::{Node, NodeLock};
use crate::process::{ExitWatchdog, ProcessGroup, group_resident_bytes};

pub use audit::AuditEvent;
pub use binaries::{bin_dir, repo_root, run_tool};
pub(crate) use kubeconfig::write_kubeconfig;
pub use namespaces::TestNamespace;
pub use options::{ClusterOptions, StartTimings};
pub use request_log::{AuditEntry, AuditLog, AuditObject, AuditStatus, AuditUser};
pub(crate) use teardown::record_pgid;

/// A running cluster. Owned ones stop on drop; the shared ones at process exit.
pub struct TestCluster {
    options: ClusterOptions,
    bin_dir: PathBuf,
    dir: PathBuf,
    api_port: u16,
    admin_kubeconfig: PathBuf,
    ca_cert: PathBuf,
    config: kube::Config,
    control_plane: Vec<ProcessGroup>,
    node: Option<Node>,
    timings: StartTimings,
    /// Runs `teardown.sh` (kill what is left, clean the node's state, delete the directory)
    /// when this process dies; fired explicitly on drop. Holds the node lock until done.
    teardown: Option<ExitWatchdog>,
    node_lock: Option<NodeLock>,
    namespaces: AtomicU32,
}

static SHARED_WITH_NODE: OnceLock<std::result::Result<TestCluster, String>> = OnceLock::new();
static SHARED_CONTROL_PLANE: OnceLock<std::result::Result<TestCluster, String>> = OnceLock::new();

impl TestCluster {
    /// The test binary's shared cluster with a Ready node, started on first use and stopped
    /// when the process exits. Panics (in every test that asks) if it could not start.
    pub fn shared() -> &'static TestCluster {
        Self::shared_in(&SHARED_WITH_NODE, ClusterOptions::with_node())
    }

    /// The test binary's shared control plane without a node: no node lock, so test binaries
    /// using it run in parallel. Started on first use, stopped when the process exits.
    pub fn shared_control_plane() -> &'static TestCluster {
        Self::shared_in(&SHARED_CONTROL_PLANE, ClusterOptions::control_plane())
    }

    fn shared_in(
        cell: &'static OnceLock<std::result::Result<TestCluster, String>>,
        options: ClusterOptions,
    ) -> &'static TestCluster {
        let started = cell.get_or_init(|| Self::start(options).map_err(|e| format!("{e:#}")));
        match started {
            Ok(cluster) => cluster,
            Err(e) => panic!("the shared test cluster did not start: {e}"),
        }
    }

    /// Starts an owned cluster; dropping it stops everything and deletes its directory.
    ///
    /// Blocking; callable from sync code and from inside a tokio runtime (the start runs on a
    /// thread of its own with its own runtime).
    pub fn start(options: ClusterOptions) -> Result<TestCluster> {
        install_crypto_provider();
        std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("build a runtime for the cluster start")?;
                rt.block_on(Self::start_async(options))
            })
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("cluster start panicked")))
        })
    }

    async fn start_async(options: ClusterOptions) -> Result<TestCluster> {
        let bin_dir = bin_dir(options.with_node)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::start_once(&options, &bin_dir).await {
                Ok(cluster) => return Ok(cluster),
                // Free ports are found by binding port 0 and releasing it: another process may
                // take one before our server binds it. Such a start is retried with new ports.
                Err(e) if attempt < 3 && format!("{e:#}").contains("address already in use") => {
                    eprintln!("esc-testbed: port taken during start, retrying: {e:#}");
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn start_once(options: &ClusterOptions, bin_dir: &Path) -> Result<TestCluster> {
        let node_lock = if options.with_node {
            Some(NodeLock::acquire()?)
        } else {
            None
        };
        let tmp = tempfile::Builder::new()
            .prefix("esc-testbed-")
            .tempdir_in("/tmp")
            .context("create the cluster directory")?;
        let logs = tmp.path().join("logs");
        std::fs::create_dir_all(&logs)?;
        std::fs::write(tmp.path().join("pgids"), "")?;
        // From here on the directory is deleted by the teardown script (mounts first), not by
        // TempDir.
        let dir = tmp.keep();
        // The clock starts once the start may proceed: binaries resolved, node lock held.
        let started = Instant::now();
        let teardown = teardown::arm(&dir, options.with_node, node_lock.as_ref())?;

        let mut cluster = TestCluster {
            options: options.clone(),
            bin_dir: bin_dir.to_owned(),
            dir: dir.clone(),
            api_port: 0,
            admin_kubeconfig: dir.join("admin.kubeconfig"),
            ca_cert: dir.join("pki/ca.crt"),
            config: kube::Config::new("https://127.0.0.1".parse()?),
            control_plane: Vec::new(),
            node: None,
            timings: StartTimings {
                control_plane_ready: Duration::ZERO,
                node_ready: None,
            },
            teardown: Some(teardown),
            node_lock,
            namespaces: AtomicU32::new(0),
        };
        // From here on, an error drops `cluster`, which stops what was started.
        let pki = Pki::create(&dir.join("pki"))?;
        cluster.start_control_plane(&pki).await?;
        cluster.timings.control_plane_ready = started.elapsed();
        if options.with_node {
            let node = Node::start(
                &dir,
                bin_dir,
                &pki,
                &cluster.api_server_url(),
                &cluster.config,
            )
            .await?;
            cluster.node = Some(node);
            cluster.timings.node_ready = Some(started.elapsed());
        }
        Ok(cluster)
    }

    /// A new admin client (`system:masters`). Call it inside the tokio runtime that will use
    /// it: the client lives and dies with that runtime.
    pub fn client(&self) -> kube::Client {
        install_crypto_provider();
        kube::Client::try_from(self.config.clone())
            .expect("build a kube client (inside a tokio runtime?)")
    }

    /// The admin client configuration (for clients with other settings).
    pub fn config(&self) -> &kube::Config {
        &self.config
    }

    /// A client that impersonates the ServiceAccount `namespace/name` (the API server adds its
    /// groups `system:serviceaccounts` and `system:serviceaccounts:<namespace>`), for RBAC
    /// tests: it is allowed exactly what that ServiceAccount is allowed.
    pub fn impersonate_service_account(&self, namespace: &str, name: &str) -> Result<kube::Client> {
        self.impersonate_user(&format!("system:serviceaccount:{namespace}:{name}"))
    }

    /// A client that impersonates an arbitrary user name.
    pub fn impersonate_user(&self, user: &str) -> Result<kube::Client> {
        install_crypto_provider();
        let mut config = self.config.clone();
        config.auth_info.impersonate = Some(user.to_owned());
        Ok(kube::Client::try_from(config)?)
    }

    /// The admin kubeconfig (client certificate of `system:masters`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// `https://127.0.0.1:<port>`.
    pub fn api_server_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.api_port)
    }

    /// The API server's port: `KUBERNETES_SERVICE_PORT` for hostNetwork pods (with
    /// `KUBERNETES_SERVICE_HOST=127.0.0.1`).
    pub fn api_server_port(&self) -> u16 {
        self.api_port
    }

    /// The environment a hostNetwork pod needs for in-cluster access without Service routing:
    /// `KUBERNETES_SERVICE_HOST=127.0.0.1` and `KUBERNETES_SERVICE_PORT=<api server port>`
    /// (they override the kubelet's `kubernetes` Service variables, whose ClusterIP routes
    /// nowhere here).
    pub fn in_cluster_env(&self) -> Vec<k8s_openapi::api::core::v1::EnvVar> {
        [
            ("KUBERNETES_SERVICE_HOST", "127.0.0.1".to_owned()),
            ("KUBERNETES_SERVICE_PORT", self.api_port.to_string()),
        ]
        .into_iter()
        .map(|(name, value)| k8s_openapi::api::core::v1::EnvVar {
            name: name.into(),
            value: Some(value),
            ..Default::default()
        })
        .collect()
    }

    /// The cluster CA certificate (PEM file).
    pub fn ca_cert_path(&self) -> &Path {
        &self.ca_cert
    }

    /// The directory holding the cluster's state, certificates and `logs/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory of the Kubernetes binaries in use.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// How long the start took.
    pub fn timings(&self) -> StartTimings {
        self.timings
    }

    /// Whether this cluster has a node.
    pub fn has_node(&self) -> bool {
        self.node.is_some()
    }

    /// The node, if started.
    pub fn node(&self) -> Option<&Node> {
        self.node.as_ref()
    }

    /// `kubectl` with `--kubeconfig` set to the admin kubeconfig.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(self.bin_dir.join("kubectl"));
        cmd.env("KUBECONFIG", &self.admin_kubeconfig)
            .arg(format!("--kubeconfig={}", self.admin_kubeconfig.display()));
        cmd
    }

    /// Imports an OCI archive (e.g. from `buildah push … oci-archive:FILE:NAME`) into the
    /// node's containerd, so pods can use it with `imagePullPolicy: Never`. Needs a node.
    pub fn import_image(&self, oci_archive: &Path) -> Result<()> {
        self.node
            .as_ref()
            .context("this cluster has no node to import images into")?
            .import_image(oci_archive)
    }

    /// Resident memory (bytes) per component: each process group (children included) and,
    /// with a node, the containerd shims and the containers they run.
    pub fn resident_memory(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self
            .control_plane
            .iter()
            .map(|p| (p.name().to_owned(), group_resident_bytes(p.pid())))
            .collect();
        if let Some(node) = &self.node {
            out.extend(node.resident_memory());
        }
        out
    }

    /// Process ids of every process group leader this cluster started (control plane and node).
    pub fn process_ids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.control_plane.iter().map(|p| p.pid()).collect();
        if let Some(node) = &self.node {
            pids.extend(node.process_ids());
        }
        pids
    }
}

/// Installs the rustls aws-lc-rs provider for this process (once; later calls are no-ops).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
