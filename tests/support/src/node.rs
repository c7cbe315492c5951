//! A real node for the test cluster: containerd (with runc and the CNI `bridge` plugin) and a
//! kubelet named `localhost`, all state under the cluster's temporary directory.
//!
//! Rules it follows (see `shared/reference/test-cluster.md`):
//! - nothing leaves the machine: the CNI network is a bridge without a host address and without
//!   routes (`isGateway: false`, `ipMasq: false`); the API server reaches the kubelet through its
//!   `Hostname` address `localhost`; pods that must reach the API server use `hostNetwork` with
//!   `KUBERNETES_SERVICE_HOST=127.0.0.1` and `KUBERNETES_SERVICE_PORT=<port>`;
//! - images are imported, never pulled (the sandbox image `localhost/pause:3.10` is built by
//!   `tools/cluster/pause-image.sh` from the kubernetes module's own `pause.c`);
//! - one node per machine at a time ([`NodeLock`]): the kubelet's `kubepods` cgroups are shared
//!   by every kubelet on the machine;
//! - everything is cleaned up by [`cleanup_script`], also when the test process dies: the
//!   containers (by the `kubepods` cgroups), the containerd shims (their own sessions, matched by
//!   this run's containerd socket), their sockets, the mounts under the directory (network
//!   namespaces included), the bridge and the kubelet's `/var/log/containers` links.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use host_procs::{cmdline, free_port, resident_bytes};
use k8s_openapi::api::core::v1::{Node as NodeObject, Pod};
use kube::api::{Api, DeleteParams, ListParams};
use nix::fcntl::{Flock, FlockArg};

use crate::certs::Pki;
use crate::cluster::{record_pgid, run_tool};
use crate::process::{ProcessGroup, group_resident_bytes, log_tail};

/// The node's name; the API server reaches its kubelet through this `Hostname` address.
pub const NODE_NAME: &str = "localhost";
/// The sandbox image, built locally and imported at start.
pub const PAUSE_IMAGE: &str = "localhost/pause:3.10";
/// An image with only the test bed's static kubectl (entrypoint `/kubectl`, UID 65532), for
/// pods that prove in-cluster access; see [`kubectl_image_archive`].
pub const KUBECTL_IMAGE: &str = "localhost/esc-testbed-kubectl:v1.37.2";
/// The CNI bridge (no address, no routes); deleted at teardown.
pub const BRIDGE: &str = "esccni0";
/// The CNI network name.
pub const CNI_NETWORK: &str = "esc-testbed";
/// The machine-wide lock that keeps to one node at a time.
pub const NODE_LOCK_PATH: &str = "/tmp/esc-testbed-node.lock";
/// The pod subnet of the isolated bridge.
pub const POD_SUBNET: &str = "10.244.0.0/24";

/// A pod that runs the pause image as UID 65532 (imported, never pulled), on the isolated
/// bridge or with the host network: for tests and benchmarks that need pods, not a workload.
/// No grace period, so deleting it is quick.
pub fn pause_pod(name: &str, host_network: bool) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name },
        "spec": {
            "hostNetwork": host_network,
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "main",
                "image": PAUSE_IMAGE,
                "imagePullPolicy": "Never",
                "securityContext": { "runAsUser": 65532, "runAsNonRoot": true }
            }]
        }
    }))
    .expect("a fixed, valid Pod")
}

/// The OCI archive of [`KUBECTL_IMAGE`], built by `tools/cluster/kubectl-image.sh` (cached);
/// import it with [`crate::cluster::TestCluster::import_image`].
pub fn kubectl_image_archive() -> Result<PathBuf> {
    run_tool("kubectl-image.sh", &[])
}

static NODE_IN_PROCESS: AtomicBool = AtomicBool::new(false);

/// The machine-wide node lock (`flock` on [`NODE_LOCK_PATH`]). The cluster's teardown watchdog
/// holds it too, so the next node starts only after this one is cleaned up.
pub struct NodeLock {
    lock: Option<Flock<File>>,
}

impl NodeLock {
    /// Waits (up to 30 min, saying so on stderr) until no other node runs on this machine.
    pub fn acquire() -> Result<Self> {
        if NODE_IN_PROCESS.swap(true, Ordering::SeqCst) {
            bail!(
                "this process already runs a node (one node per machine): share it \
                 (TestCluster::shared) or use a control plane without a node"
            );
        }
        let result = Self::acquire_file();
        if result.is_err() {
            NODE_IN_PROCESS.store(false, Ordering::SeqCst);
        }
        result
    }

    fn acquire_file() -> Result<Self> {
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(NODE_LOCK_PATH)
                .with_context(|| format!("open {NODE_LOCK_PATH}"))
        };
        let started = Instant::now();
        let mut said = false;
        let mut file = open()?;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => {
                    use std::io::{Seek, Write};
                    let mut f: &File = &lock;
                    let _ = f.set_len(0);
                    let _ = f.seek(std::io::SeekFrom::Start(0));
                    let _ = writeln!(f, "{}", std::process::id());
                    return Ok(Self { lock: Some(lock) });
                }
                Err((f, nix::errno::Errno::EWOULDBLOCK)) => {
                    file = f;
                    if !said {
                        let holder = std::fs::read_to_string(NODE_LOCK_PATH).unwrap_or_default();
                        eprintln!(
                            "esc-testbed: waiting for the node lock {NODE_LOCK_PATH} (held by pid {})",
                            holder.trim()
                        );
                        said = true;
                    }
                    if started.elapsed() > Duration::from_secs(1800) {
                        bail!("the node lock {NODE_LOCK_PATH} was not free within 30 min");
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err((_, e)) => bail!("lock {NODE_LOCK_PATH}: {e}"),
            }
        }
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.lock.as_ref().expect("locked").as_fd()
    }
}

impl Drop for NodeLock {
    fn drop(&mut self) {
        self.lock.take();
        NODE_IN_PROCESS.store(false, Ordering::SeqCst);
    }
}

/// containerd + kubelet.
pub struct Node {
    dir: PathBuf,
    bin_dir: PathBuf,
    socket: PathBuf,
    kubelet_port: u16,
    containerd: Option<ProcessGroup>,
    kubelet: Option<ProcessGroup>,
}

impl Node {
    pub(crate) async fn start(
        cluster_dir: &Path,
        bin_dir: &Path,
        pki: &Pki,
        api_url: &str,
        admin: &kube::Config,
    ) -> Result<Node> {
        let dir = cluster_dir.join("node");
        let logs = cluster_dir.join("logs");
        for sub in [
            "cni",
            "cni-ipam",
            "containerd",
            "kubelet",
            "pod-logs",
            "runc",
        ] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        // We hold the node lock: a bridge of that name is a leftover of a run that died
        // without its cleanup. Remove it so the CNI plugin creates ours afresh.
        let _ = Command::new("ip")
            .args(["link", "delete", BRIDGE])
            .stderr(std::process::Stdio::null())
            .status();
        let pause_archive = run_tool("pause-image.sh", &[])?;

        let socket = dir.join("containerd.sock");
        let config = dir.join("containerd.toml");
        std::fs::write(&config, containerd_config(&dir, bin_dir))?;
        std::fs::write(dir.join("cni/10-esc-testbed.conflist"), cni_config(&dir))?;
        let mut containerd = Command::new(bin_dir.join("containerd"));
        containerd
            .arg(format!("--config={}", config.display()))
            .env("PATH", node_path(bin_dir));
        let containerd =
            ProcessGroup::spawn("containerd", containerd, &logs.join("containerd.log"))?;
        record_pgid(cluster_dir, containerd.pid())?;
        let mut node = Node {
            dir: dir.clone(),
            bin_dir: bin_dir.to_owned(),
            socket: socket.clone(),
            kubelet_port: 0,
            containerd: Some(containerd),
            kubelet: None,
        };
        node.wait_containerd(&logs, Duration::from_secs(30)).await?;
        node.import_image(&pause_archive)?;

        // kubelet
        let client = pki.issue_client(
            "kubelet-client",
            &format!("system:node:{NODE_NAME}"),
            &["system:nodes"],
        )?;
        let serving = pki.issue_server("kubelet-serving", NODE_NAME, &[])?;
        let kubeconfig = dir.join("kubelet.kubeconfig");
        crate::cluster::write_kubeconfig(
            &kubeconfig,
            api_url,
            pki.ca_cert_path(),
            &client.cert,
            &client.key,
        )?;
        let lo = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
        node.kubelet_port = free_port(lo)?;
        let healthz_port = free_port(lo)?;
        let kubelet_config = dir.join("kubelet.yaml");
        std::fs::write(
            &kubelet_config,
            kubelet_config_text(
                &dir,
                &socket,
                node.kubelet_port,
                healthz_port,
                pki.ca_cert_path(),
                &serving.cert,
                &serving.key,
            ),
        )?;
        let mut kubelet = Command::new(bin_dir.join("kubelet"));
        kubelet
            .args([
                format!("--config={}", kubelet_config.display()),
                format!("--kubeconfig={}", kubeconfig.display()),
                format!("--hostname-override={NODE_NAME}"),
                format!("--root-dir={}", dir.join("kubelet").display()),
                "--v=1".into(),
            ])
            .env("PATH", node_path(bin_dir));
        let kubelet = ProcessGroup::spawn("kubelet", kubelet, &logs.join("kubelet.log"))?;
        record_pgid(cluster_dir, kubelet.pid())?;
        node.kubelet = Some(kubelet);
        node.wait_ready(admin, &logs, Duration::from_secs(90))
            .await?;
        Ok(node)
    }

    /// The node's state directory (`<cluster dir>/node`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// containerd's socket.
    pub fn containerd_socket(&self) -> &Path {
        &self.socket
    }

    /// The kubelet's HTTPS port on 127.0.0.1.
    pub fn kubelet_port(&self) -> u16 {
        self.kubelet_port
    }

    /// `ctr` against this node's containerd, namespace `k8s.io` (the kubelet's).
    pub fn ctr(&self) -> Command {
        let mut cmd = Command::new(self.bin_dir.join("ctr"));
        cmd.arg(format!("--address={}", self.socket.display()))
            .arg("--namespace=k8s.io");
        cmd
    }

    /// Imports an OCI archive into containerd (unpacked for the `native` snapshotter the CRI
    /// uses), so pods can run it with `imagePullPolicy: Never`.
    pub fn import_image(&self, oci_archive: &Path) -> Result<()> {
        let out = self
            .ctr()
            .args(["images", "import", "--local", "--snapshotter=native"])
            .arg(oci_archive)
            .output()
            .context("run ctr images import")?;
        if !out.status.success() {
            bail!(
                "ctr images import {} failed ({}): {}{}",
                oci_archive.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Resident memory of kubelet, containerd, and the shims with their containers.
    pub(crate) fn resident_memory(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for p in [&self.containerd, &self.kubelet].into_iter().flatten() {
            out.push((p.name().to_owned(), group_resident_bytes(p.pid())));
        }
        let shims = self.shim_pids();
        let shim_rss: u64 = shims.iter().filter_map(|&p| resident_bytes(p)).sum();
        out.push(("containerd-shims".into(), shim_rss));
        let containers: u64 = kubepods_pids().into_iter().filter_map(resident_bytes).sum();
        out.push(("containers".into(), containers));
        out
    }

    pub(crate) fn process_ids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = [&self.containerd, &self.kubelet]
            .into_iter()
            .flatten()
            .map(|p| p.pid())
            .collect();
        pids.extend(self.shim_pids());
        pids
    }

    /// The containerd shims of this node (each in a session of its own): the shim programs
    /// started with `-address <this node's containerd socket>`.
    pub fn shim_pids(&self) -> Vec<u32> {
        let socket = self.socket.as_os_str();
        host_procs::processes()
            .unwrap_or_default()
            .into_iter()
            .filter(|p| {
                cmdline(p.pid).is_ok_and(|args| {
                    args.first().is_some_and(|program| {
                        program.as_bytes().starts_with(b"/")
                            && program.to_string_lossy().contains("containerd-shim")
                    }) && args
                        .windows(2)
                        .any(|w| w[0] == "-address" && w[1] == socket)
                })
            })
            .map(|p| p.pid)
            .collect()
    }

    /// Deletes every pod while kubelet and containerd still run (so the CNI plugin tears each
    /// pod network down), then stops kubelet and containerd. The rest is the teardown script.
    pub(crate) fn stop(&mut self, admin: &kube::Config) -> Result<()> {
        let drained = delete_all_pods(admin.clone());
        if let Some(mut kubelet) = self.kubelet.take() {
            kubelet.stop(Duration::from_secs(10));
        }
        if let Some(mut containerd) = self.containerd.take() {
            containerd.stop(Duration::from_secs(10));
        }
        drained
    }

    async fn wait_containerd(&mut self, logs: &Path, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive(logs)?;
            if self.socket.exists() {
                let ok = self
                    .ctr()
                    .arg("version")
                    .output()
                    .map(|o| o.status.success())
                    .unwrap_or(false);
                if ok {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "containerd did not answer within {timeout:?}:\n{}",
                    log_tail(&logs.join("containerd.log"), 25)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_ready(
        &mut self,
        admin: &kube::Config,
        logs: &Path,
        timeout: Duration,
    ) -> Result<()> {
        let client = kube::Client::try_from(admin.clone())?;
        let nodes: Api<NodeObject> = Api::all(client);
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive(logs)?;
            if let Some(node) = nodes.get_opt(NODE_NAME).await? {
                let ready = node
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                if ready {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "node {NODE_NAME} not Ready within {timeout:?}; kubelet log:\n{}",
                    log_tail(&logs.join("kubelet.log"), 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn check_alive(&mut self, logs: &Path) -> Result<()> {
        for p in [&mut self.containerd, &mut self.kubelet]
            .into_iter()
            .flatten()
        {
            if let Some(status) = p.try_exit_status() {
                let log = logs.join(format!("{}.log", p.name()));
                bail!(
                    "{} exited ({status}); last lines of {}:\n{}",
                    p.name(),
                    log.display(),
                    log_tail(&log, 30)
                );
            }
        }
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        for p in [&mut self.kubelet, &mut self.containerd] {
            if let Some(mut p) = p.take() {
                p.stop(Duration::from_secs(10));
            }
        }
    }
}

/// Deletes all pods in all namespaces and waits (up to 30 s) until the kubelet is done with
/// them, so their sandboxes and networks are torn down by containerd and the CNI plugin.
///
/// Graceful deletion (1 s), not 0: a grace period of 0 removes the object at once, before the
/// kubelet has stopped anything. The kubelet confirms the deletion once the pod is down; a pod
/// held by a finalizer (a Job's, with the controllers stopped) stays, in a terminal phase.
fn delete_all_pods(admin: kube::Config) -> Result<()> {
    std::thread::spawn(move || -> Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let client = kube::Client::try_from(admin)?;
            let pods: Api<Pod> = Api::all(client.clone());
            let list = pods.list(&ListParams::default()).await?;
            for pod in &list.items {
                let (Some(ns), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
                    continue;
                };
                let api: Api<Pod> = Api::namespaced(client.clone(), ns);
                let _ = api
                    .delete(name, &DeleteParams::default().grace_period(1))
                    .await;
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let left = pods.list(&ListParams::default()).await?;
                let busy: Vec<String> = left
                    .items
                    .iter()
                    // Pods not bound to the node have nothing to tear down.
                    .filter(|p| {
                        p.spec
                            .as_ref()
                            .and_then(|s| s.node_name.as_deref())
                            .is_some()
                    })
                    .filter(|p| {
                        let terminal = matches!(
                            p.status.as_ref().and_then(|s| s.phase.as_deref()),
                            Some("Succeeded" | "Failed")
                        );
                        !(terminal && p.metadata.deletion_timestamp.is_some())
                    })
                    .map(|p| {
                        format!(
                            "{}/{}",
                            p.metadata.namespace.as_deref().unwrap_or_default(),
                            p.metadata.name.as_deref().unwrap_or_default()
                        )
                    })
                    .collect();
                if busy.is_empty() {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    bail!("pods still on the node 30 s after deleting them: {busy:?}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    })
    .join()
    .unwrap_or_else(|_| Err(anyhow::anyhow!("pod drain panicked")))
}

fn node_path(bin_dir: &Path) -> String {
    format!(
        "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        bin_dir.display()
    )
}

/// Processes in the kubelet's `kubepods` cgroups (cgroup v1 and v2).
fn kubepods_pids() -> Vec<u32> {
    let mut pids = Vec::new();
    let mut stack: Vec<PathBuf> = Vec::new();
    stack.push(PathBuf::from("/sys/fs/cgroup/kubepods"));
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            stack.push(e.path().join("kubepods"));
        }
    }
    while let Some(dir) = stack.pop() {
        if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            pids.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    stack.push(e.path());
                }
            }
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

fn containerd_config(dir: &Path, bin_dir: &Path) -> String {
    let d = dir.display();
    let b = bin_dir.display();
    format!(
        r#"version = 3
root = "{d}/containerd/root"
state = "{d}/containerd/state"

[grpc]
  address = "{d}/containerd.sock"

[ttrpc]
  address = "{d}/containerd.sock.ttrpc"

# containerd's defaults outside our directory: /opt/containerd and the NRI socket in /run/nri.
[plugins.'io.containerd.internal.v1.opt']
  path = "{d}/containerd/opt"

[plugins.'io.containerd.nri.v1.nri']
  disable = true

[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'native'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = '{PAUSE_IMAGE}'

[plugins.'io.containerd.cri.v1.runtime']
  # No CAP_SYS_RESOURCE on these machines: the kubelet's -998 for the sandbox cannot be set.
  restrict_oom_score_adj = true
  # Network namespaces under our state dir, so the teardown finds (and unmounts) them.
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['/usr/lib/cni']
    conf_dir = '{d}/cni'
    max_conf_num = 1
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = '{b}/runc'
        Root = '{d}/runc'
        SystemdCgroup = false

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = '127.0.0.1'
  stream_server_port = '0'
"#
    )
}

fn cni_config(dir: &Path) -> String {
    format!(
        r#"{{
  "cniVersion": "1.0.0",
  "name": "{CNI_NETWORK}",
  "plugins": [
    {{
      "type": "bridge",
      "bridge": "{BRIDGE}",
      "isGateway": false,
      "isDefaultGateway": false,
      "ipMasq": false,
      "hairpinMode": false,
      "ipam": {{
        "type": "host-local",
        "ranges": [[{{ "subnet": "{POD_SUBNET}" }}]],
        "dataDir": "{}"
      }}
    }}
  ]
}}
"#,
        dir.join("cni-ipam").display()
    )
}

fn kubelet_config_text(
    dir: &Path,
    socket: &Path,
    port: u16,
    healthz_port: u16,
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> String {
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: {port}
healthzBindAddress: 127.0.0.1
healthzPort: {healthz_port}
readOnlyPort: 0
containerRuntimeEndpoint: unix://{socket}
tlsCertFile: {cert}
tlsPrivateKeyFile: {key}
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: {ca}
authorization:
  # The kubelet listens on loopback only; the API server is its only client.
  mode: AlwaysAllow
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
podLogsDir: {d}/pod-logs
volumePluginDir: {d}/kubelet-volume-plugins
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
# Images are imported, never pulled: never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
localStorageCapacityIsolation: false
serializeImagePulls: false
registerNode: true
"#,
        socket = socket.display(),
        cert = cert.display(),
        key = key.display(),
        ca = ca.display(),
        d = dir.display(),
    )
}

/// The part of the cluster's teardown script that cleans up after the node. Runs after the
/// process groups (kubelet, containerd, control plane) have been killed; idempotent.
pub fn cleanup_script(cluster_dir: &Path) -> String {
    let d = cluster_dir.display();
    format!(
        r#"
N={d}/node
SOCK=$N/containerd.sock
# Containers: every process in the kubelet's kubepods cgroups (ours: we hold the node lock).
kubepods_procs() {{
  for c in /sys/fs/cgroup/kubepods /sys/fs/cgroup/*/kubepods; do
    [ -d "$c" ] && find "$c" -name cgroup.procs -exec cat {{}} + 2>/dev/null
  done | sort -u
}}
shims() {{ pgrep -f -- "containerd-shim-runc-v2 .*-address $SOCK( |$)"; }}
mounts() {{ awk -v d="{d}" 'index($5, d"/") == 1 || $5 == d {{ print $5 }}' /proc/self/mountinfo; }}
echo "$(date +%T.%N) found: $(kubepods_procs | wc -l) container processes, $(shims | wc -l) shims, $(mounts | wc -l) mounts ($(mounts | grep -c /netns/) netns)"
i=0
while [ $i -lt 50 ]; do
  procs=$(kubepods_procs)
  [ -z "$procs" ] && break
  kill -KILL $procs 2>/dev/null
  sleep 0.1; i=$((i+1))
done
# containerd shims: their own sessions, found by this run's containerd socket.
for p in $(shims); do kill -KILL "$p" 2>/dev/null; done
# Their sockets live in /run/containerd/s/<sha256(socket/namespace/id)>.
for t in "$N"/containerd/state/io.containerd.runtime.v2.task/*/*; do
  [ -d "$t" ] || continue
  ns=$(basename "$(dirname "$t")"); id=$(basename "$t")
  h=$(printf '%s' "$SOCK/$ns/$id" | sha256sum | cut -d' ' -f1)
  rm -f "/run/containerd/s/$h"
done
rmdir /run/containerd/s /run/containerd 2>/dev/null
# Mounts under the directory (kubelet volumes, rootfs, shm, network namespaces), innermost first.
i=0
while [ $i -lt 5 ]; do
  m=$(mounts | sort -r)
  [ -z "$m" ] && break
  for p in $m; do umount -l "$p" 2>/dev/null; done
  i=$((i+1))
done
ip link delete {BRIDGE} 2>/dev/null
# Empty kubepods cgroups of this node.
for c in /sys/fs/cgroup/kubepods /sys/fs/cgroup/*/kubepods; do
  [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {{}} \; 2>/dev/null
done
# Fixed host paths: libcni's result cache (one file per sandbox and network), the kubelet's
# container log links and its device-plugin socket. Directories only if left empty.
for s in "$N"/containerd/root/io.containerd.grpc.v1.cri/sandboxes/*; do
  [ -d "$s" ] && rm -f /var/lib/cni/results/*-"$(basename "$s")"-* 2>/dev/null
done
rm -f /var/lib/cni/results/{CNI_NETWORK}-* 2>/dev/null
rmdir /var/lib/cni/results /var/lib/cni 2>/dev/null
for l in /var/log/containers/*; do
  [ -L "$l" ] && case "$(readlink "$l")" in "{d}"/*) rm -f "$l" ;; esac
done
rmdir /var/log/containers 2>/dev/null
rm -f /var/lib/kubelet/device-plugins/kubelet.sock
rmdir /var/lib/kubelet/device-plugins /var/lib/kubelet 2>/dev/null
# Report what is still there.
for p in $(pgrep -f -- "{d}/node/"); do echo "LEFTOVER process $p: $(tr '\0' ' ' < /proc/$p/cmdline 2>/dev/null)"; done
[ -n "$(kubepods_procs)" ] && echo "LEFTOVER processes in kubepods cgroups: $(kubepods_procs | tr '\n' ' ')"
awk -v d="{d}" 'index($5, d"/") == 1 {{ print "LEFTOVER mount " $5 }}' /proc/self/mountinfo
ip link show {BRIDGE} >/dev/null 2>&1 && echo "LEFTOVER bridge {BRIDGE}"
ls /var/lib/cni/results/ 2>/dev/null | grep -q . && echo "LEFTOVER CNI results: $(ls /var/lib/cni/results)"
[ -e /var/lib/kubelet/device-plugins/kubelet.sock ] && echo "LEFTOVER /var/lib/kubelet/device-plugins/kubelet.sock"
true
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::ExitWatchdog;

    fn try_lock(path: &Path) -> bool {
        let f = File::options().write(true).open(path).unwrap();
        Flock::lock(f, FlockArg::LockExclusiveNonblock).is_ok()
    }

    #[test]
    #[allow(deprecated)] // nix's plain flock(): closing the file must not unlock, as at death
    fn the_watchdog_holds_the_lock_until_its_script_has_run() {
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let marker = dir.path().join("cleaned");
        let file = File::create(&path).unwrap();
        nix::fcntl::flock(file.as_raw_fd(), FlockArg::LockExclusiveNonblock).unwrap();
        let watchdog = ExitWatchdog::arm_holding(
            &format!("sleep 0.3; touch {}", marker.display()),
            file.as_fd(),
        )
        .unwrap();
        // Our descriptor closes without an unlock, as when the test process dies.
        drop(file);
        assert!(!try_lock(&path), "the watchdog's shell must hold the lock");
        watchdog.fire();
        assert!(marker.exists());
        assert!(try_lock(&path), "free once the script has run");
    }
}
