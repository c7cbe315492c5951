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

use std::io::{BufRead, Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};

use crate::certs::Pki;
use crate::node::{Node, NodeLock};
use crate::process::{ExitWatchdog, ProcessGroup, free_port};

/// What to start.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Start a real node (containerd + kubelet, named `localhost`) and wait until it is Ready.
    /// Only one node runs on a machine at a time: starting one waits for a file lock.
    pub with_node: bool,
    /// Start kube-controller-manager (namespaces get their `default` ServiceAccount and
    /// `kube-root-ca.crt`, Jobs get Pods, namespaces are finalized).
    pub with_controller_manager: bool,
    /// Start kube-scheduler (Pods get bound to the node).
    pub with_scheduler: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            with_node: false,
            with_controller_manager: true,
            with_scheduler: true,
        }
    }
}

impl ClusterOptions {
    /// Control plane only (etcd, kube-apiserver, kube-controller-manager, kube-scheduler).
    pub fn control_plane() -> Self {
        Self::default()
    }

    /// Control plane and a Ready node.
    pub fn with_node() -> Self {
        Self {
            with_node: true,
            ..Self::default()
        }
    }
}

/// How long the start took.
#[derive(Clone, Copy, Debug)]
pub struct StartTimings {
    /// From the start (binaries resolved, node lock held) until `/readyz` answered `ok`.
    pub control_plane_ready: Duration,
    /// From the start until the node was Ready (includes the control plane).
    pub node_ready: Option<Duration>,
}

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
        let teardown_script = dir.join("teardown.sh");
        std::fs::write(
            &teardown_script,
            teardown_script_text(&dir, options.with_node),
        )?;
        let keep = std::env::var_os("ESC_TESTBED_KEEP").is_some();
        let watchdog_script = format!(
            "sh {} >>{} 2>&1; {}",
            teardown_script.display(),
            logs.join("teardown.log").display(),
            if keep {
                String::new()
            } else {
                // Never into a mount that the cleanup could not undo (e.g. a busy volume).
                format!("rm -rf --one-file-system {}", dir.display())
            }
        );
        let teardown = match &node_lock {
            Some(lock) => ExitWatchdog::arm_holding(&watchdog_script, lock.fd())?,
            None => ExitWatchdog::arm(&watchdog_script)?,
        };

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

    async fn start_control_plane(&mut self, pki: &Pki) -> Result<()> {
        let dir = self.dir.clone();
        let logs = dir.join("logs");
        let bin = &self.bin_dir.clone();
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);

        let serving = pki.issue_server(
            "apiserver",
            "kube-apiserver",
            &[
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
        )?;
        let admin = pki.issue_client("admin", "esc-testbed-admin", &["system:masters"])?;
        let kcm = pki.issue_client("controller-manager", "system:kube-controller-manager", &[])?;
        let scheduler = pki.issue_client("scheduler", "system:kube-scheduler", &[])?;
        let kubelet_client = pki.issue_client(
            "apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            &["system:masters"],
        )?;
        let (sa_key, sa_pub) = pki.service_account_key("service-account")?;
        let ca = pki.ca_cert_path().to_owned();

        // etcd
        let etcd_port = free_port(lo)?;
        let peer_port = free_port(lo)?;
        let mut etcd = Command::new(bin.join("etcd"));
        etcd.args([
            "--name=default",
            &format!("--data-dir={}", dir.join("etcd").display()),
            &format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
            &format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
            &format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
            &format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
            &format!("--initial-cluster=default=http://127.0.0.1:{peer_port}"),
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ]);
        self.spawn("etcd", etcd, &logs)?;
        self.wait_tcp("etcd", etcd_port, Duration::from_secs(20))
            .await?;

        // kube-apiserver
        self.api_port = free_port(lo)?;
        let mut apiserver = Command::new(bin.join("kube-apiserver"));
        apiserver.args([
            format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={}", self.api_port),
            format!("--tls-cert-file={}", serving.cert.display()),
            format!("--tls-private-key-file={}", serving.key.display()),
            format!("--client-ca-file={}", ca.display()),
            "--authorization-mode=Node,RBAC".into(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", sa_pub.display()),
            format!("--service-account-signing-key-file={}", sa_key.display()),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--endpoint-reconciler-type=none".into(),
            format!(
                "--kubelet-client-certificate={}",
                kubelet_client.cert.display()
            ),
            format!("--kubelet-client-key={}", kubelet_client.key.display()),
            format!("--kubelet-certificate-authority={}", ca.display()),
            // The node is named `localhost`: the API server reaches the kubelet on loopback,
            // never through the node's InternalIP.
            "--kubelet-preferred-address-types=Hostname".into(),
            "--profiling=false".into(),
        ]);
        self.spawn("kube-apiserver", apiserver, &logs)?;

        let server = self.api_server_url();
        write_kubeconfig(
            &self.admin_kubeconfig,
            &server,
            &ca,
            &admin.cert,
            &admin.key,
        )?;
        self.config = load_kubeconfig(&self.admin_kubeconfig).await?;
        self.wait_readyz(Duration::from_secs(90)).await?;

        if self.options.with_controller_manager {
            let kubeconfig = dir.join("controller-manager.kubeconfig");
            write_kubeconfig(&kubeconfig, &server, &ca, &kcm.cert, &kcm.key)?;
            let mut cmd = Command::new(bin.join("kube-controller-manager"));
            cmd.args([
                format!("--kubeconfig={}", kubeconfig.display()),
                "--leader-elect=false".into(),
                "--controllers=*".into(),
                "--bind-address=127.0.0.1".into(),
                "--secure-port=0".into(),
                format!("--root-ca-file={}", ca.display()),
                format!("--service-account-private-key-file={}", sa_key.display()),
                "--use-service-account-credentials=true".into(),
                "--kube-api-qps=1000".into(),
                "--kube-api-burst=2000".into(),
            ]);
            self.spawn("kube-controller-manager", cmd, &logs)?;
        }
        if self.options.with_scheduler {
            let kubeconfig = dir.join("scheduler.kubeconfig");
            write_kubeconfig(&kubeconfig, &server, &ca, &scheduler.cert, &scheduler.key)?;
            let mut cmd = Command::new(bin.join("kube-scheduler"));
            cmd.args([
                format!("--kubeconfig={}", kubeconfig.display()),
                "--leader-elect=false".into(),
                "--bind-address=127.0.0.1".into(),
                "--secure-port=0".into(),
            ]);
            self.spawn("kube-scheduler", cmd, &logs)?;
        }
        Ok(())
    }

    fn spawn(&mut self, name: &str, cmd: Command, logs: &Path) -> Result<()> {
        let group = ProcessGroup::spawn(name, cmd, &logs.join(format!("{name}.log")))?;
        record_pgid(&self.dir, group.pid())?;
        self.control_plane.push(group);
        Ok(())
    }

    /// Fails with the process's log tail if one of the processes has exited.
    pub(crate) fn check_alive(&mut self) -> Result<()> {
        let logs = self.dir.join("logs");
        for p in &mut self.control_plane {
            if let Some(status) = p.try_exit_status() {
                let log = logs.join(format!("{}.log", p.name()));
                bail!(
                    "{} exited ({status}); last lines of {}:\n{}",
                    p.name(),
                    log.display(),
                    log_tail(&log, 25)
                );
            }
        }
        Ok(())
    }

    async fn wait_tcp(&mut self, name: &str, port: u16, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{name} did not listen on 127.0.0.1:{port} within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_readyz(&mut self, timeout: Duration) -> Result<()> {
        let client = kube::Client::try_from(self.config.clone())?;
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            let req = http::Request::get("/readyz").body(Vec::new())?;
            let last = match client.request_text(req).await {
                Ok(body) if body.trim() == "ok" => return Ok(()),
                Ok(body) => body,
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                bail!("kube-apiserver /readyz not ok within {timeout:?}: {last}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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

    /// Creates a namespace `<prefix>-<unique>` for one test, and (with a controller-manager)
    /// waits until its `default` ServiceAccount exists, so Pods can be created at once.
    /// The namespace is deleted, best-effort, when the returned handle drops.
    pub async fn namespace(&self, prefix: &str) -> Result<TestNamespace> {
        self.namespace_with_labels(prefix, &[]).await
    }

    /// [`TestCluster::namespace`] with labels, e.g.
    /// `("pod-security.kubernetes.io/enforce", "restricted")`.
    pub async fn namespace_with_labels(
        &self,
        prefix: &str,
        labels: &[(&str, &str)],
    ) -> Result<TestNamespace> {
        let n = self.namespaces.fetch_add(1, Ordering::Relaxed);
        let mut clean: String = prefix
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(40)
            .collect();
        clean = clean.trim_matches('-').to_owned();
        if clean.is_empty() {
            clean = "test".into();
        }
        let name = format!("{clean}-{:x}-{n}", std::process::id() & 0xffff);
        let client = self.client();
        let api: Api<Namespace> = Api::all(client.clone());
        let mut label_map =
            std::collections::BTreeMap::from([("esc-testbed/test".to_owned(), clean.clone())]);
        for (k, v) in labels {
            label_map.insert((*k).to_owned(), (*v).to_owned());
        }
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(label_map),
                ..Default::default()
            },
            ..Default::default()
        };
        api.create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("create namespace {name}"))?;
        let handle = TestNamespace {
            name: name.clone(),
            config: self.config.clone(),
        };
        if self.options.with_controller_manager {
            let sas: Api<ServiceAccount> = Api::namespaced(client, &name);
            let deadline = Instant::now() + Duration::from_secs(30);
            while sas.get_opt("default").await?.is_none() {
                if Instant::now() > deadline {
                    bail!("namespace {name}: no `default` ServiceAccount after 30 s");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(handle)
    }

    /// Grants the ServiceAccount `service_account` of `namespace` the `rules`, through a Role and
    /// a RoleBinding both named `name`. The RBAC authorizer sees them through informers, so the
    /// grant takes effect a moment later: callers poll for it.
    pub async fn grant_role(
        &self,
        namespace: &str,
        service_account: &str,
        name: &str,
        rules: Vec<PolicyRule>,
    ) -> Result<()> {
        let client = self.client();
        let metadata = ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        };
        Api::<Role>::namespaced(client.clone(), namespace)
            .create(
                &PostParams::default(),
                &Role {
                    metadata: metadata.clone(),
                    rules: Some(rules),
                },
            )
            .await
            .with_context(|| format!("create Role {namespace}/{name}"))?;
        Api::<RoleBinding>::namespaced(client, namespace)
            .create(
                &PostParams::default(),
                &RoleBinding {
                    metadata,
                    role_ref: RoleRef {
                        api_group: Some("rbac.authorization.k8s.io".into()),
                        kind: "Role".into(),
                        name: name.to_owned(),
                    },
                    subjects: Some(vec![Subject {
                        kind: "ServiceAccount".into(),
                        name: service_account.to_owned(),
                        namespace: Some(namespace.to_owned()),
                        ..Subject::default()
                    }]),
                },
            )
            .await
            .with_context(|| format!("create RoleBinding {namespace}/{name}"))?;
        Ok(())
    }

    /// Installs (server-side apply) the CRDs and waits until each is Established.
    pub async fn install_crds(&self, crds: &[CustomResourceDefinition]) -> Result<()> {
        let api: Api<CustomResourceDefinition> = Api::all(self.client());
        let params = PatchParams::apply("esc-testbed").force();
        for crd in crds {
            let name = crd
                .metadata
                .name
                .as_deref()
                .context("a CRD without metadata.name")?;
            let mut crd = crd.clone();
            crd.metadata.managed_fields = None;
            crd.metadata.resource_version = None;
            api.patch(name, &params, &Patch::Apply(&crd))
                .await
                .with_context(|| format!("apply CRD {name}"))?;
        }
        for crd in crds {
            let name = crd.metadata.name.as_deref().unwrap_or_default();
            let established = kube::runtime::wait::await_condition(
                api.clone(),
                name,
                kube::runtime::wait::conditions::is_crd_established(),
            );
            tokio::time::timeout(Duration::from_secs(30), established)
                .await
                .with_context(|| format!("CRD {name} not Established within 30 s"))?
                .with_context(|| format!("watch CRD {name}"))?;
        }
        Ok(())
    }

    /// [`TestCluster::install_crds`] from YAML text (one or more `---` separated documents).
    pub async fn install_crd_yaml(&self, yaml: &str) -> Result<()> {
        let crds = parse_crds(yaml)?;
        self.install_crds(&crds).await
    }

    /// [`TestCluster::install_crds`] from YAML files.
    pub async fn install_crd_files(&self, paths: &[impl AsRef<Path>]) -> Result<()> {
        let mut crds = Vec::new();
        for path in paths {
            let path = path.as_ref();
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("read {}", path.display()))?;
            crds.extend(parse_crds(&text).with_context(|| format!("parse {}", path.display()))?);
        }
        self.install_crds(&crds).await
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
            .map(|p| (p.name().to_owned(), group_rss(p.pid())))
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

    /// Stops everything now (what drop does), reporting the teardown's failures.
    pub fn stop(mut self) -> Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<()> {
        let mut result = Ok(());
        if self.node.is_some() {
            // No controller may recreate the pods that the node's drain deletes.
            for p in &mut self.control_plane {
                if matches!(p.name(), "kube-controller-manager" | "kube-scheduler") {
                    p.stop(Duration::from_secs(5));
                }
            }
        }
        if let Some(mut node) = self.node.take() {
            // Pods first, while kubelet and containerd still run (CNI tears their networks
            // down), then kubelet and containerd, then what they leave behind.
            if let Err(e) = node.stop(&self.config) {
                result = Err(e);
            }
        }
        while let Some(mut p) = self.control_plane.pop() {
            p.stop(Duration::from_secs(5));
        }
        // Run the teardown script once here to see its report (the watchdog's run deletes the
        // directory with the log), then let the watchdog run it again and delete everything.
        let report = Command::new("sh")
            .arg(self.dir.join("teardown.sh"))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        if let Some(teardown) = self.teardown.take() {
            teardown.fire();
        }
        // The watchdog's shell held the node lock until the cleanup was done; release ours.
        self.node_lock.take();
        if result.is_ok() && report.contains("LEFTOVER") {
            result = Err(anyhow::anyhow!("teardown found leftovers:\n{report}"));
        }
        result
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if let Err(e) = self.stop_inner() {
            eprintln!("esc-testbed: cluster teardown: {e:#}");
        }
    }
}

/// A namespace owned by one test; deleted (best-effort, not waited for) on drop.
pub struct TestNamespace {
    name: String,
    config: kube::Config,
}

impl TestNamespace {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Leaves the namespace in place (for debugging a failed test).
    pub fn keep(self) -> String {
        let name = self.name.clone();
        std::mem::forget(self);
        name
    }
}

impl std::fmt::Display for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl AsRef<str> for TestNamespace {
    fn as_ref(&self) -> &str {
        &self.name
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Drop may run inside the test's runtime (which we must not block on) or during a
        // panic: delete from a thread with a runtime and a client of its own.
        let name = self.name.clone();
        let config = self.config.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async move {
                let client = kube::Client::try_from(config).ok()?;
                let api: Api<Namespace> = Api::all(client);
                api.delete(&name, &Default::default()).await.ok()
            })
        })
        .join();
    }
}

/// Installs the rustls aws-lc-rs provider for this process (once; later calls are no-ops).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The directory with the Kubernetes binaries, built by `tools/cluster/build.sh` on first use
/// on a machine (10–15 min) and cached by version; later calls return at once.
/// `with_node` also builds containerd, its shim, `ctr` and runc.
pub fn bin_dir(with_node: bool) -> Result<PathBuf> {
    static CONTROL_PLANE: OnceLock<PathBuf> = OnceLock::new();
    static ALL: OnceLock<PathBuf> = OnceLock::new();
    let (cell, what) = if with_node {
        (&ALL, "all")
    } else {
        (&CONTROL_PLANE, "control-plane")
    };
    if let Some(dir) = cell.get() {
        return Ok(dir.clone());
    }
    let dir = run_tool("build.sh", &[what])?;
    Ok(cell.get_or_init(|| dir).clone())
}

/// Runs `tools/cluster/<script>` and returns the last line of its stdout as a path.
pub fn run_tool(script: &str, args: &[&str]) -> Result<PathBuf> {
    let path = repo_root().join("tools/cluster").join(script);
    let out = Command::new("bash")
        .arg(&path)
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("run {}", path.display()))?;
    if !out.status.success() {
        bail!("{} {:?} failed ({})", path.display(), args, out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout
        .lines()
        .last()
        .with_context(|| format!("{} printed nothing", path.display()))?;
    Ok(PathBuf::from(last.trim()))
}

/// The repository root (the test bed lives in `tests/support`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn parse_crds(yaml: &str) -> Result<Vec<CustomResourceDefinition>> {
    use serde::Deserialize;
    let mut crds = Vec::new();
    for doc in serde_norway::Deserializer::from_str(yaml) {
        let value = serde_norway::Value::deserialize(doc)?;
        if value.is_null() {
            continue;
        }
        crds.push(serde_norway::from_value(value)?);
    }
    Ok(crds)
}

/// A kubeconfig that authenticates with a client certificate (admin, controllers, kubelet).
pub(crate) fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<()> {
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: esc-testbed
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: esc-testbed
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: esc-testbed
  context:
    cluster: esc-testbed
    user: esc-testbed
    namespace: default
current-context: esc-testbed
",
        ca = ca.display(),
        cert = cert.display(),
        key = key.display()
    );
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

async fn load_kubeconfig(path: &Path) -> Result<kube::Config> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)?;
    Ok(kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?)
}

/// Appends a process group id to `<dir>/pgids`, which the teardown script kills.
pub(crate) fn record_pgid(dir: &Path, pgid: u32) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("pgids"))?;
    writeln!(f, "{pgid}")?;
    Ok(())
}

/// The last `n` lines of a log file.
pub(crate) fn log_tail(path: &Path, n: usize) -> String {
    let Ok(f) = std::fs::File::open(path) else {
        return String::from("(no log)");
    };
    let lines: Vec<String> = std::io::BufReader::new(f)
        .lines()
        .map_while(|l| l.ok())
        .collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Resident memory (bytes) of a process.
pub(crate) fn rss_of(pid: u32) -> u64 {
    let mut text = String::new();
    if std::fs::File::open(format!("/proc/{pid}/status"))
        .and_then(|mut f| f.read_to_string(&mut text))
        .is_err()
    {
        return 0;
    }
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Resident memory (bytes) of every process in process group `pgid`.
pub(crate) fn group_rss(pgid: u32) -> u64 {
    all_pids()
        .into_iter()
        .filter(|&pid| pgid_of(pid) == Some(pgid))
        .map(rss_of)
        .sum()
}

pub(crate) fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn pgid_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(2)?.parse().ok()
}

/// The teardown script: kills every recorded process group, cleans up after the node (see
/// [`crate::node::cleanup_script`]) and reports anything still there as `LEFTOVER`.
fn teardown_script_text(dir: &Path, with_node: bool) -> String {
    let d = dir.display();
    let mut s = format!(
        r#"# Generated by esc-testbed: stops everything of the cluster in {d}. Idempotent.
set -u
D={d}
for g in $(cat "$D/pgids" 2>/dev/null); do kill -TERM -"$g" 2>/dev/null; done
i=0
while [ $i -lt 100 ]; do
  alive=0
  for g in $(cat "$D/pgids" 2>/dev/null); do kill -0 -"$g" 2>/dev/null && alive=1; done
  [ $alive = 0 ] && break
  sleep 0.1; i=$((i+1))
done
for g in $(cat "$D/pgids" 2>/dev/null); do kill -KILL -"$g" 2>/dev/null; done
"#
    );
    if with_node {
        s.push_str(&crate::node::cleanup_script(dir));
    }
    s
}
