//! How `esc-operator run` scales with the number of EscClusters (issue 18). Prints a table, one
//! column per scale (0 clusters — the baseline — then each of `--clusters`):
//!
//!     cargo build --release -p esc-operator -p esc-sim --bin esc-operator --bin esc-sim
//!     cargo run --release --example operator_scale_bench [-- --clusters 100,500 --idle-seconds 90]
//!
//! (Without `target/release/esc-sim` the test bed builds a debug simulator of its own.) A
//! 100,500 run takes about 5½ minutes.
//!
//! What runs: the test bed's own control plane (etcd, kube-apiserver with an audit log,
//! kube-controller-manager), `--pairs` simulated ESC HA pairs (esc-sim behind real OpenSSH
//! sshd, one sshd per node), and for each scale a fresh namespace with N EscClusters, each with
//! its own two Secrets, HA, pointing at pair `i % pairs`. The operator (`target/release/
//! esc-operator`, a child process with a ServiceAccount token bound to the real RBAC rules)
//! starts after the objects exist; it is measured, then stopped with SIGTERM.
//!
//! Why shared pairs: the operator keys its SSH pool by cluster and node, so N clusters on P
//! pairs hold 2·N connections exactly as N clusters on 2·N machines would, and every probe runs
//! the real `escadm` commands over its own channel. What sharing changes is the far side only:
//! each sshd serves 2·N/(2·P) connections, and the clusters of a pair see the same ESC state.
//!
//! Measured per scale: the operator's resident memory (VmRSS at the end of the idle window, the
//! highest sample in it, and VmHWM), time to `/readyz` and until every EscCluster is Ready=True
//! with `observedGeneration` equal to its generation (from the operator's spawn), what it writes
//! and reads during an idle window that starts at convergence — from watches (new
//! resourceVersions of EscClusters, Events and Leases) and from the API server's audit log
//! (every request, also writes that change nothing) — SSH connections (`/metrics` and `ss`),
//! handshakes, reconciles, CPU time, file descriptors, and the simulator's sshd side.
//! Not a timed assertion: numbers for the docs and for regressions seen by eye, with the
//! goals of issue 18 checked at the end.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use clap::Parser;
use esc_operator::api::{
    EscCluster, EscClusterSpec, EscNodeSpec, LocalObjectRef, MaintenanceSpec, SshSpec, Topology,
};
use esc_testbed::cluster::{AuditEntry, AuditLog, ClusterOptions, TestCluster, repo_root};
use esc_testbed::host_procs;
use esc_testbed::operator::{Operator, operator_identity};
use esc_testbed::sshd::{SimEsc, SimSpec};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, ObjectMeta, PostParams, WatchEvent, WatchParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

const MIB: f64 = 1024.0 * 1024.0;

#[derive(Parser)]
#[command(about = "Operator RSS, idle API writes, convergence and SSH connections at scale")]
struct Args {
    /// EscCluster counts to measure, after the 0-cluster baseline.
    #[arg(long, value_delimiter = ',', default_value = "100,500")]
    clusters: Vec<usize>,
    /// Length of the idle window after convergence (at least 60 s is meaningful).
    #[arg(long, default_value_t = 90)]
    idle_seconds: u64,
    /// Simulated ESC HA pairs the clusters share (two sshd each).
    #[arg(long, default_value_t = 10)]
    pairs: usize,
    /// `spec.probeInterval` of every EscCluster.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    probe_interval: Duration,
    /// Passed to the operator.
    #[arg(long, default_value_t = 16)]
    max_concurrent_connects: usize,
    /// Passed to the operator.
    #[arg(long, default_value = "5m")]
    ssh_idle_timeout: String,
    /// The operator binary (default: target/release/esc-operator, which must be newer than
    /// every source file).
    #[arg(long)]
    operator: Option<PathBuf>,
    /// Copy each operator's log and the API server's audit log into this directory.
    #[arg(long)]
    keep_logs: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let operator = match &args.operator {
        Some(p) => p.clone(),
        None => fresh_release_binary()?,
    }
    .canonicalize()?;
    let started = Instant::now();
    esc_testbed::cluster::install_crypto_provider();
    let cluster = TestCluster::start(ClusterOptions {
        with_scheduler: false,
        audit_log: true,
        ..ClusterOptions::control_plane()
    })?;
    let mut pairs = Vec::new();
    for _ in 0..args.pairs.max(1) {
        let sim = SimEsc::start(SimSpec::ha())?;
        sim.share_first_client_key()?;
        pairs.push(sim);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let work = tempfile::Builder::new()
        .prefix("esc-operator-scale-bench-")
        .tempdir()?;
    let setup = started.elapsed();
    let mut scales = vec![0];
    scales.extend(args.clusters.iter().copied().filter(|&n| n > 0));
    let mut results = Vec::new();
    for n in scales {
        eprintln!(
            "[{:>5.0} s] measuring {n} EscClusters",
            started.elapsed().as_secs_f64()
        );
        let r = rt.block_on(measure(&cluster, &pairs, &operator, &args, n, work.path()))?;
        results.push(r);
    }
    print_report(&args, &operator, &pairs, setup, &results)?;
    if let (Some(keep), Some(audit)) = (&args.keep_logs, cluster.audit_log()) {
        std::fs::copy(audit.path(), keep.join("audit.log"))?;
        eprintln!("logs kept in {}", keep.display());
    }
    eprintln!(
        "[{:>5.0} s] done; stopping the simulator and the control plane",
        started.elapsed().as_secs_f64()
    );
    drop(rt);
    drop(pairs);
    drop(cluster);
    eprintln!("total {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// `target/release/esc-operator`, refusing one older than the sources it is built from.
fn fresh_release_binary() -> Result<PathBuf> {
    let root = repo_root();
    let bin = root.join("target/release/esc-operator");
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .with_context(|| {
            format!(
                "{} missing: run `cargo build --release --bin esc-operator` first",
                bin.display()
            )
        })?;
    let mut newest = std::fs::metadata(root.join("Cargo.lock"))?.modified()?;
    let mut dirs = vec![root.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                dirs.push(entry.path());
            } else {
                newest = newest.max(meta.modified()?);
            }
        }
    }
    if built < newest {
        bail!(
            "{} is older than the sources: run `cargo build --release --bin esc-operator` first",
            bin.display()
        );
    }
    Ok(bin)
}

// ---- one scale ----

/// What one scale showed.
struct Scale {
    clusters: usize,
    ready_after: Duration,
    /// From the operator's spawn until every EscCluster converged; `None`: not within the limit.
    converged_after: Option<Duration>,
    converged_count: usize,
    /// Per cluster, from the spawn until it first converged (sorted).
    per_cluster: Vec<Duration>,
    /// Requests of the operator from its spawn until convergence (audit log).
    startup_requests: Vec<AuditEntry>,
    idle: Duration,
    /// Requests of the operator in the idle window (audit log).
    idle_requests: Vec<AuditEntry>,
    /// New resourceVersions seen by the watches in the idle window: (kind, what) → count.
    idle_changes: BTreeMap<(&'static str, &'static str), usize>,
    /// EscClusters not converged at the end of the idle window.
    unconverged_at_end: usize,
    rss_end: u64,
    rss_max_idle: u64,
    rss_hwm: u64,
    threads: u64,
    fds: usize,
    cpu_idle: Duration,
    metrics_converged: Metrics,
    metrics_end: Metrics,
    ss_established: usize,
    /// The operator's TCP connections to kube-apiserver (`ss`).
    api_connections: usize,
    sshd_processes: usize,
    sshd_pss: u64,
    shutdown: Option<Duration>,
    /// Up to a few status changes in the idle window: (cluster, what differed).
    idle_status_diffs: Vec<(String, String)>,
    /// New status versions seen from the spawn until convergence (watch).
    startup_status_versions: usize,
    /// Clusters whose status changed more than once until convergence.
    startup_repeats: usize,
    /// Up to a few of those later changes: (cluster, what differed).
    startup_repeat_diffs: Vec<(String, String)>,
    /// The 1-minute load average of the machine when the operator started and at window end.
    load: (f64, f64),
}

#[derive(Clone, Default)]
struct Metrics {
    connections: f64,
    connects: f64,
    reconciles: f64,
    reconcile_errors: BTreeMap<String, f64>,
}

async fn measure(
    cluster: &TestCluster,
    pairs: &[SimEsc],
    operator_bin: &Path,
    args: &Args,
    n: usize,
    work: &Path,
) -> Result<Scale> {
    let client = cluster.client();
    cluster.install_crds(&esc_operator::api::crds()).await?;
    // Kept: deleting a namespace whose EscClusters hold the operator's finalizer would leave
    // the namespace controller retrying during the next scale. The teardown removes it all.
    let ns = cluster.namespace(&format!("scale-{n}")).await?.keep();
    let dir = work.join(&ns);
    std::fs::create_dir_all(&dir)?;
    let kubeconfig = operator_identity(cluster, &ns, "esc-operator", &[&ns], &dir).await?;
    create_clusters(&client, &ns, pairs, n, args.probe_interval).await?;

    let tracker = Arc::new(Mutex::new(Tracker::default()));
    let mut watches = vec![
        spawn_recorder::<EscCluster>(&client, &ns, "EscCluster", &tracker, classify_cluster)
            .await?,
        spawn_recorder::<Event>(&client, &ns, "Event", &tracker, |old, _| {
            (
                if old.is_some() {
                    "series updated"
                } else {
                    "created"
                },
                None,
            )
        })
        .await?,
        spawn_recorder::<Lease>(&client, &ns, "Lease", &tracker, |old, _| {
            (if old.is_some() { "renewed" } else { "created" }, None)
        })
        .await?,
    ];

    let audit = cluster
        .audit_log()
        .context("the cluster has no audit log")?;
    let user = format!("system:serviceaccount:{ns}:esc-operator");
    let before_start = audit.position()?;
    let load_at_spawn = load_average()?;
    let spawned = Instant::now();
    let mut operator = Operator::start(
        operator_bin,
        &kubeconfig,
        &format!("op-{n}"),
        &[
            &format!("--namespaces={ns}"),
            &format!("--lease-namespace={ns}"),
            &format!("--max-concurrent-connects={}", args.max_concurrent_connects),
            &format!("--ssh-idle-timeout={}", args.ssh_idle_timeout),
            "--log-level=info",
        ],
        &dir,
    )?;
    let pid = operator.pid();
    operator.wait_ready(Duration::from_secs(120)).await?;
    let ready_after = spawned.elapsed();

    let limit = args.probe_interval * 5 + Duration::from_secs(120);
    let converged_after = loop {
        let count = tracker.lock().expect("tracker").converged_now();
        if count == n {
            break Some(spawned.elapsed());
        }
        if spawned.elapsed() > limit {
            eprintln!("  only {count}/{n} converged within {limit:?}");
            break None;
        }
        if let Some(status) = operator.exit_status() {
            bail!(
                "the operator exited ({status}):\n{}",
                tail(&operator.log(), 30)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let window_start = Instant::now();
    let at_convergence = audit.position()?;
    let metrics_converged = scrape(&operator).await?;
    let (converged_count, per_cluster) = {
        let t = tracker.lock().expect("tracker");
        let mut times: Vec<Duration> = t
            .first_converged
            .values()
            .map(|at| at.saturating_duration_since(spawned))
            .collect();
        times.sort();
        (t.first_converged.len(), times)
    };
    eprintln!(
        "  ready after {:.1} s, {converged_count}/{n} converged after {:.1} s; idle window {} s",
        ready_after.as_secs_f64(),
        spawned.elapsed().as_secs_f64(),
        args.idle_seconds
    );

    // The idle window: nothing changes on the nodes or in the objects; the operator probes.
    let cpu_start = cpu_time(pid)?;
    let mut rss_max_idle = 0;
    let idle = Duration::from_secs(args.idle_seconds);
    while window_start.elapsed() < idle {
        rss_max_idle = rss_max_idle.max(proc_status(pid, "VmRSS")? * 1024);
        tokio::time::sleep(Duration::from_secs(5).min(idle.saturating_sub(window_start.elapsed())))
            .await;
    }
    let window_end = Instant::now();
    let at_end = audit.position()?;
    let cpu_idle = cpu_time(pid)?.saturating_sub(cpu_start);
    let rss_end = proc_status(pid, "VmRSS")? * 1024;
    let rss_hwm = proc_status(pid, "VmHWM")? * 1024;
    let threads = proc_status(pid, "Threads")?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count();
    let metrics_end = scrape(&operator).await?;
    let targets: HashSet<SocketAddr> = pairs
        .iter()
        .flat_map(|p| p.nodes().iter().map(|n| n.socket_addr()))
        .collect();
    let ss_established = ss_established_to(pid, &targets)?;
    let api_server: HashSet<SocketAddr> = HashSet::from([SocketAddr::from((
        [127, 0, 0, 1],
        cluster.api_server_port(),
    ))]);
    let api_connections = ss_established_to(pid, &api_server)?;
    let (sshd_processes, sshd_pss) = sshd_side(pairs);

    let load_at_end = load_average()?;
    let (startup, idle_phase, unconverged_at_end) = {
        let t = tracker.lock().expect("tracker");
        (
            t.phase(spawned, window_start),
            t.phase(window_start, window_end),
            n - t.converged_now(),
        )
    };
    if let Some(failed) = tracker.lock().expect("tracker").failed.clone() {
        bail!("{failed}");
    }
    let stopping = Instant::now();
    let shutdown = operator
        .terminate(Duration::from_secs(30))
        .map(|_| stopping.elapsed());
    for w in watches.drain(..) {
        w.abort();
    }
    if let Some(keep) = &args.keep_logs {
        std::fs::create_dir_all(keep)?;
        std::fs::write(keep.join(format!("operator-{n}.log")), operator.log())?;
    }
    let of_operator = |entries: Vec<AuditEntry>| -> Vec<AuditEntry> {
        entries
            .into_iter()
            .filter(|e| e.user.username == user)
            .collect()
    };
    Ok(Scale {
        clusters: n,
        ready_after,
        converged_after,
        converged_count,
        per_cluster,
        startup_requests: of_operator(audit_between(&audit, before_start, at_convergence)?),
        idle: window_end - window_start,
        idle_requests: of_operator(audit_between(&audit, at_convergence, at_end)?),
        idle_changes: idle_phase.changes,
        unconverged_at_end,
        rss_end,
        rss_max_idle,
        rss_hwm,
        threads,
        fds,
        cpu_idle,
        metrics_converged,
        metrics_end,
        ss_established,
        api_connections,
        sshd_processes,
        sshd_pss,
        shutdown,
        idle_status_diffs: idle_phase.diffs,
        startup_status_versions: startup
            .changes
            .get(&("EscCluster", "status"))
            .copied()
            .unwrap_or(0),
        startup_repeats: startup.repeated,
        startup_repeat_diffs: startup.repeat_diffs,
        load: (load_at_spawn, load_at_end),
    })
}

fn load_average() -> Result<f64> {
    Ok(std::fs::read_to_string("/proc/loadavg")?
        .split_whitespace()
        .next()
        .context("empty /proc/loadavg")?
        .parse()?)
}

fn audit_between(audit: &AuditLog, from: u64, to: u64) -> Result<Vec<AuditEntry>> {
    audit
        .between(from, to)
        .with_context(|| format!("read {}", audit.path().display()))
}

/// N EscClusters `esc-0000…`, HA, on pair `i % pairs`, each with its own two Secrets (as
/// each real ESC deployment has its own credentials).
async fn create_clusters(
    client: &kube::Client,
    ns: &str,
    pairs: &[SimEsc],
    n: usize,
    probe_interval: Duration,
) -> Result<()> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let clusters: Api<EscCluster> = Api::namespaced(client.clone(), ns);
    let mut material = Vec::new();
    for sim in pairs {
        let key = sim.nodes()[0].private_key_pem()?;
        let hosts: String = sim
            .nodes()
            .iter()
            .map(|n| n.known_hosts_line() + "\n")
            .collect();
        material.push((key, hosts));
    }
    futures::stream::iter(0..n)
        .map(|i| {
            let (secrets, clusters) = (secrets.clone(), clusters.clone());
            let sim = &pairs[i % pairs.len()];
            let (key, hosts) = &material[i % pairs.len()];
            async move {
                let pp = PostParams::default();
                secrets
                    .create(&pp, &secret(&format!("ssh-{i}"), "ssh-privatekey", key))
                    .await?;
                secrets
                    .create(&pp, &secret(&format!("hosts-{i}"), "known_hosts", hosts))
                    .await?;
                let spec = cluster_spec(sim, i, probe_interval);
                clusters
                    .create(&pp, &EscCluster::new(&format!("esc-{i:04}"), spec))
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

fn secret(name: &str, key: &str, value: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            key.to_owned(),
            ByteString(value.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}

fn cluster_spec(sim: &SimEsc, i: usize, probe_interval: Duration) -> EscClusterSpec {
    let nodes = sim.nodes();
    EscClusterSpec {
        topology: Topology::Ha,
        nodes: nodes
            .iter()
            .map(|n| EscNodeSpec {
                name: n.name().into(),
                host: n.address().to_string(),
                port: n.port(),
            })
            .collect(),
        ssh: SshSpec {
            user: nodes[0].key_user().into(),
            credentials_secret_ref: LocalObjectRef {
                name: format!("ssh-{i}"),
            },
            known_hosts_secret_ref: LocalObjectRef {
                name: format!("hosts-{i}"),
            },
            sudo: false,
            connect_timeout: Duration::from_secs(10).into(),
        },
        maintenance: MaintenanceSpec::default(),
        probe_interval: probe_interval.into(),
    }
}

// ---- watching what changes ----

/// One new resourceVersion seen by a watch.
struct Seen {
    at: Instant,
    kind: &'static str,
    name: String,
    what: &'static str,
    /// For a status change: the fields that differ.
    detail: Option<String>,
}

#[derive(Default)]
struct Tracker {
    seen: Vec<Seen>,
    /// EscCluster name → when the watch first saw it converged.
    first_converged: HashMap<String, Instant>,
    /// EscCluster name → converged in its latest version.
    converged: HashMap<String, bool>,
    /// A watch that failed so that versions may have been missed: the counts are void.
    failed: Option<String>,
}

impl Tracker {
    fn converged_now(&self) -> usize {
        self.converged.values().filter(|c| **c).count()
    }

    /// What the watches saw in `[from, to)`.
    fn phase(&self, from: Instant, to: Instant) -> Phase {
        let mut phase = Phase::default();
        let mut status_versions: HashMap<&str, usize> = HashMap::new();
        for seen in self.seen.iter().filter(|s| s.at >= from && s.at < to) {
            *phase.changes.entry((seen.kind, seen.what)).or_default() += 1;
            let Some(diff) = &seen.detail else { continue };
            if phase.diffs.len() < 5 {
                phase.diffs.push((seen.name.clone(), diff.clone()));
            }
            let versions = status_versions.entry(&seen.name).or_default();
            *versions += 1;
            if *versions == 2 {
                phase.repeated += 1;
                if phase.repeat_diffs.len() < 3 {
                    phase.repeat_diffs.push((seen.name.clone(), diff.clone()));
                }
            }
        }
        phase
    }
}

#[derive(Default)]
struct Phase {
    /// (kind, what) → new resourceVersions.
    changes: BTreeMap<(&'static str, &'static str), usize>,
    /// The first few status changes: (cluster, what differed).
    diffs: Vec<(String, String)>,
    /// Clusters whose status changed more than once.
    repeated: usize,
    /// The first few second changes of a cluster's status.
    repeat_diffs: Vec<(String, String)>,
}

fn is_converged(c: &EscCluster) -> bool {
    let Some(status) = &c.status else {
        return false;
    };
    status.observed_generation.is_some()
        && status.observed_generation == c.metadata.generation
        && status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// What changed between two versions of an EscCluster (the operator writes the status and
/// the finalizer; nothing else writes during a run), with the status fields that differ.
fn classify_cluster(old: Option<&EscCluster>, new: &EscCluster) -> Change {
    match old {
        None => ("created", None),
        Some(old) if old.status != new.status => {
            let mut diffs = Vec::new();
            json_diff(
                "status",
                &serde_json::to_value(&old.status).unwrap_or_default(),
                &serde_json::to_value(&new.status).unwrap_or_default(),
                &mut diffs,
            );
            ("status", Some(diffs.join("; ")))
        }
        Some(old) if old.metadata.finalizers != new.metadata.finalizers => ("finalizers", None),
        Some(_) => ("other", None),
    }
}

/// What a watch saw: its class, and details worth printing.
type Change = (&'static str, Option<String>);

/// `path: old → new` for every leaf that differs (arrays by index), values shortened.
fn json_diff(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let (l, r) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                json_diff(&format!("{path}.{k}"), l, r, out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (l, r)) in x.iter().zip(y).enumerate() {
                json_diff(&format!("{path}[{i}]"), l, r, out);
            }
        }
        _ if a != b => {
            let short = |v: &Value| -> String {
                let s = v.to_string();
                if s.chars().count() > 70 {
                    format!("{}…", s.chars().take(70).collect::<String>())
                } else {
                    s
                }
            };
            out.push(format!("{path}: {} → {}", short(a), short(b)));
        }
        _ => {}
    }
}

trait Tracked {
    fn track(&self, _tracker: &mut Tracker, _at: Instant) {}
}
impl Tracked for Event {}
impl Tracked for Lease {}
impl Tracked for EscCluster {
    fn track(&self, tracker: &mut Tracker, at: Instant) {
        let name = self.name_any();
        let converged = is_converged(self);
        if converged {
            tracker.first_converged.entry(name.clone()).or_insert(at);
        }
        tracker.converged.insert(name, converged);
    }
}

/// Lists `K` in `ns` (so what exists is not counted), then records every later change until
/// aborted. Returns once the list is done: whatever happens after that is seen.
async fn spawn_recorder<K>(
    client: &kube::Client,
    ns: &str,
    kind: &'static str,
    tracker: &Arc<Mutex<Tracker>>,
    classify: fn(Option<&K>, &K) -> Change,
) -> Result<tokio::task::JoinHandle<()>>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
    K: Tracked + Clone + DeserializeOwned + std::fmt::Debug,
    K: Send + Sync + 'static,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let list = api.list(&ListParams::default()).await?;
    let mut version = list
        .metadata
        .resource_version
        .context("a list without resourceVersion")?;
    let mut latest: HashMap<String, K> = HashMap::new();
    {
        let mut t = tracker.lock().expect("tracker");
        for obj in list.items {
            obj.track(&mut t, Instant::now());
            latest.insert(obj.name_any(), obj);
        }
    }
    let tracker = tracker.clone();
    Ok(tokio::spawn(async move {
        loop {
            let stream = match api
                .watch(&WatchParams::default().timeout(290), &version)
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("  watch {kind}: {e}; again in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                let (obj, deleted) = match event {
                    Ok(WatchEvent::Added(o) | WatchEvent::Modified(o)) => (o, false),
                    Ok(WatchEvent::Deleted(o)) => (o, true),
                    Ok(WatchEvent::Bookmark(b)) => {
                        version = b.metadata.resource_version;
                        continue;
                    }
                    Ok(WatchEvent::Error(e)) => {
                        // A 410 means versions were missed: the counts could not be trusted.
                        tracker.lock().expect("tracker").failed =
                            Some(format!("watch {kind}: {} ({})", e.message, e.code));
                        return;
                    }
                    Err(e) => {
                        eprintln!("  watch {kind}: {e}");
                        break;
                    }
                };
                let at = Instant::now();
                let name = obj.name_any();
                if let Some(v) = obj.resource_version() {
                    version = v;
                }
                let (what, detail) = if deleted {
                    ("deleted", None)
                } else {
                    classify(latest.get(&name), &obj)
                };
                let mut t = tracker.lock().expect("tracker");
                t.seen.push(Seen {
                    at,
                    kind,
                    name: name.clone(),
                    what,
                    detail,
                });
                obj.track(&mut t, at);
                drop(t);
                latest.insert(name, obj);
            }
        }
    }))
}

// ---- the operator's process, metrics and sockets ----

async fn scrape(operator: &Operator) -> Result<Metrics> {
    let (code, body) = operator.get("/metrics").await?;
    if code != 200 {
        bail!("/metrics answered {code}");
    }
    Ok(Metrics {
        connections: metric_sum(&body, "esc_operator_ssh_connections"),
        connects: metric_sum(&body, "esc_operator_ssh_connects_total"),
        reconciles: metric_sum(&body, "esc_operator_reconcile_total"),
        reconcile_errors: by_label(&body, "esc_operator_reconcile_errors_total", "reason"),
    })
}

/// The series of the metric `name`, by the value of `label`.
fn by_label(body: &str, name: &str, label: &str) -> BTreeMap<String, f64> {
    let key = format!("{label}=\"");
    let mut out = BTreeMap::new();
    for l in body.lines().filter(|l| l.starts_with(&format!("{name}{{"))) {
        let Some(value) = l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        let Some(at) = l.find(&key) else { continue };
        let rest = &l[at + key.len()..];
        let which = rest[..rest.find('"').unwrap_or(rest.len())].to_owned();
        *out.entry(which).or_default() += value;
    }
    out
}

/// The sum of every series of the metric `name` (any labels).
fn metric_sum(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        // From +0: an empty f64 sum is -0, printed "-0".
        .fold(0.0, |a, b| a + b)
}

/// The number of a `/proc/<pid>/status` field (KiB for memory fields).
fn proc_status(pid: u32, field: &str) -> Result<u64> {
    host_procs::status_number(pid, field)
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// User + system CPU time of `pid` (`/proc/<pid>/stat` fields 14 and 15, in USER_HZ = 100).
fn cpu_time(pid: u32) -> Result<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_comm = &text[text.rfind(')').context("no comm in stat")? + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(Duration::from_millis(ticks * 10))
}

/// TCP connections of `pid` in ESTABLISHED whose peer is one of `targets`, as `ss` lists them.
fn ss_established_to(pid: u32, targets: &HashSet<SocketAddr>) -> Result<usize> {
    let out = std::process::Command::new("ss")
        .args(["-tnHp", "state", "established"])
        .output()
        .context("run ss (iproute2)")?;
    if !out.status.success() {
        bail!("ss: {}", String::from_utf8_lossy(&out.stderr));
    }
    let owner = format!("pid={pid},");
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&owner))
        .filter(|l| {
            l.split_whitespace()
                .nth(3)
                .and_then(|peer| peer.parse::<SocketAddr>().ok())
                .is_some_and(|peer| targets.contains(&peer))
        })
        .count())
}

/// The simulator's far side: every sshd process (listeners and per-connection sessions) and
/// their proportional memory (PSS: shared pages split among the processes sharing them).
fn sshd_side(pairs: &[SimEsc]) -> (usize, u64) {
    let mut pids = Vec::new();
    for node in pairs.iter().flat_map(|p| p.nodes()) {
        if let Some(pid) = node.sshd_pid() {
            pids.push(pid);
            for level in esc_testbed::host_procs::descendants(pid).unwrap_or_default() {
                pids.extend(level);
            }
        }
    }
    let pss = pids
        .iter()
        .filter_map(|&pid| host_procs::proportional_bytes(pid))
        .sum();
    (pids.len(), pss)
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---- the report ----

fn print_report(
    args: &Args,
    operator: &Path,
    pairs: &[SimEsc],
    setup: Duration,
    results: &[Scale],
) -> Result<()> {
    let ssh_version = std::process::Command::new("ssh")
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
        .unwrap_or_default();
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(repo_root())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let built = std::fs::metadata(operator)?.modified()?;
    let built_ago = SystemTime::now()
        .duration_since(built)
        .unwrap_or_default()
        .as_secs();
    println!("# esc-operator at scale (issue 18)");
    println!();
    println!(
        "- operator: {} (commit {commit}, built {built_ago} s ago), flags --max-concurrent-connects={} --ssh-idle-timeout={}, leader election on (lease 10 s)",
        operator.display(),
        args.max_concurrent_connects,
        args.ssh_idle_timeout
    );
    println!(
        "- nodes: {} simulated ESC HA pairs (esc-sim behind {ssh_version} sshd, one sshd per node, MaxStartups 200, MaxSessions 100) shared by all clusters: cluster i uses pair i % {}; every cluster has its own connections (the pool is keyed by cluster and node) and its own two Secrets",
        pairs.len(),
        pairs.len()
    );
    println!(
        "- simulator: {}",
        esc_testbed::sshd::esc_sim_binary()?.display()
    );
    println!(
        "- each EscCluster: HA, probeInterval {}, connectTimeout 10s; created before the operator starts; one namespace per scale, the operator watches only it",
        humantime::format_duration(args.probe_interval)
    );
    println!(
        "- idle window: starts when every status has converged, {} s long; writes counted from watches (new resourceVersions) and from the API server's audit log (every request of the operator's ServiceAccount)",
        args.idle_seconds
    );
    println!(
        "- machine: {} cores, {:.0} GiB; test bed set up in {:.0} s",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        proc_meminfo_total().unwrap_or(0) as f64 / MIB / 1024.0,
        setup.as_secs_f64()
    );
    println!();

    let baseline = results.first().map(|r| r.rss_end).unwrap_or(0);
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut row = |name: &str, f: &dyn Fn(&Scale) -> String| {
        rows.push((name.to_owned(), results.iter().map(f).collect()));
    };
    row("SSH nodes (2 per cluster)", &|r| {
        (2 * r.clusters).to_string()
    });
    row("operator RSS at idle (end of window)", &|r| {
        format!("{:.1} MiB", r.rss_end as f64 / MIB)
    });
    row("operator RSS, highest 5 s sample in window", &|r| {
        format!("{:.1} MiB", r.rss_max_idle as f64 / MIB)
    });
    row("operator peak RSS since start (VmHWM)", &|r| {
        format!("{:.1} MiB", r.rss_hwm as f64 / MIB)
    });
    row("RSS per cluster over the 0-cluster row", &|r| {
        if r.clusters == 0 {
            "baseline".into()
        } else {
            format!(
                "{:.1} KiB",
                (r.rss_end as f64 - baseline as f64) / 1024.0 / r.clusters as f64
            )
        }
    });
    row("spawn → /readyz", &|r| secs(r.ready_after));
    row(
        "spawn → every status converged",
        &|r| match r.converged_after {
            Some(d) if r.clusters == 0 => format!("{} (nothing to do)", secs(d)),
            Some(d) => secs(d),
            None => format!("NOT ({}/{})", r.converged_count, r.clusters),
        },
    );
    row("  per cluster: median / 90th pct", &|r| {
        if r.per_cluster.is_empty() {
            "-".into()
        } else {
            format!(
                "{} / {}",
                secs(percentile(&r.per_cluster, 0.5)),
                secs(percentile(&r.per_cluster, 0.9))
            )
        }
    });
    row("reconciles to converge (metric)", &|r| {
        format!("{:.0}", r.metrics_converged.reconciles)
    });
    row("status versions to converge (watch)", &|r| {
        format!(
            "{} ({} clusters changed more than once)",
            r.startup_status_versions, r.startup_repeats
        )
    });
    row("API writes to converge (audit, all verbs)", &|r| {
        by_verb_resource(r.startup_requests.iter().filter(|e| e.is_write()), None)
    });
    row("idle window measured", &|r| secs(r.idle));
    let per_min = |r: &Scale, count: usize| count as f64 * 60.0 / r.idle.as_secs_f64();
    row("idle: EscCluster writes/min (watch)", &|r| {
        let n: usize = changes(r, "EscCluster");
        format!(
            "{:.1}{}",
            per_min(r, n),
            detail(r, "EscCluster").unwrap_or_default()
        )
    });
    row("idle: Event writes/min (watch)", &|r| {
        let n = changes(r, "Event");
        format!(
            "{:.1}{}",
            per_min(r, n),
            detail(r, "Event").unwrap_or_default()
        )
    });
    row("idle: lease renewals/min (watch)", &|r| {
        format!("{:.1}", per_min(r, changes(r, "Lease")))
    });
    row("idle: operator write requests/min (audit)", &|r| {
        by_verb_resource(
            r.idle_requests.iter().filter(|e| e.is_write()),
            Some(r.idle),
        )
    });
    row("idle: operator read requests/min (audit)", &|r| {
        by_verb_resource(
            r.idle_requests.iter().filter(|e| !e.is_write()),
            Some(r.idle),
        )
    });
    row("idle: failed requests (audit, code ≥ 400)", &|r| {
        r.idle_requests
            .iter()
            .filter(|e| e.code().is_some_and(|c| c >= 400))
            .count()
            .to_string()
    });
    row("idle: reconciles/min (metric)", &|r| {
        format!(
            "{:.1}",
            (r.metrics_end.reconciles - r.metrics_converged.reconciles) * 60.0
                / r.idle.as_secs_f64()
        )
    });
    row("reconcile errors since start, by reason (metric)", &|r| {
        let e = &r.metrics_end.reconcile_errors;
        if e.is_empty() {
            "0".into()
        } else {
            e.iter()
                .map(|(reason, n)| format!("{reason} {n:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    });
    row("clusters not converged at window end", &|r| {
        r.unconverged_at_end.to_string()
    });
    row("SSH connections open: metric / ss ESTAB", &|r| {
        format!("{:.0} / {}", r.metrics_end.connections, r.ss_established)
    });
    row("SSH handshakes: to converge / in idle window", &|r| {
        format!(
            "{:.0} / {:.0}",
            r.metrics_converged.connects,
            r.metrics_end.connects - r.metrics_converged.connects
        )
    });
    row("operator CPU at idle (% of one core)", &|r| {
        format!(
            "{:.1} %",
            100.0 * r.cpu_idle.as_secs_f64() / r.idle.as_secs_f64()
        )
    });
    row("operator TCP connections to kube-apiserver (ss)", &|r| {
        r.api_connections.to_string()
    });
    row("operator threads / open fds", &|r| {
        format!("{} / {}", r.threads, r.fds)
    });
    row("far side: sshd processes / PSS", &|r| {
        format!("{} / {:.0} MiB", r.sshd_processes, r.sshd_pss as f64 / MIB)
    });
    row("SIGTERM → exit", &|r| {
        r.shutdown.map_or("no exit in 30 s".into(), secs)
    });
    row("machine load (1 min) at spawn / window end", &|r| {
        format!("{:.1} / {:.1}", r.load.0, r.load.1)
    });

    let headers: Vec<String> = results
        .iter()
        .map(|r| format!("{} clusters", r.clusters))
        .collect();
    let first = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let widths: Vec<usize> = (0..results.len())
        .map(|i| {
            rows.iter()
                .map(|(_, v)| v[i].chars().count())
                .chain([headers[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |k: &str, vs: &[String]| {
        let mut s = format!("| {k:<first$} |");
        for (v, w) in vs.iter().zip(&widths) {
            let _ = write!(s, " {v:<w$} |");
        }
        s
    };
    println!("{}", line("measure", &headers));
    let mut sep = format!("|{}|", "-".repeat(first + 2));
    for w in &widths {
        let _ = write!(sep, "{}|", "-".repeat(w + 2));
    }
    println!("{sep}");
    for (k, vs) in &rows {
        println!("{}", line(k, vs));
    }

    for r in results
        .iter()
        .filter(|r| !r.startup_repeat_diffs.is_empty())
    {
        println!();
        println!(
            "Second status changes before convergence at {} clusters (first {}):",
            r.clusters,
            r.startup_repeat_diffs.len()
        );
        for (name, diff) in &r.startup_repeat_diffs {
            println!("- {name}: {diff}");
        }
    }
    for r in results.iter().filter(|r| !r.idle_status_diffs.is_empty()) {
        println!();
        println!(
            "Status changes in the idle window at {} clusters (first {}):",
            r.clusters,
            r.idle_status_diffs.len()
        );
        for (name, diff) in &r.idle_status_diffs {
            println!("- {name}: {diff}");
        }
    }
    println!();
    println!("Goals (issue 18):");
    if let Some(r) = results.iter().find(|r| r.clusters == 500) {
        let mib = r.rss_end as f64 / MIB;
        println!(
            "- RSS ≤ 64 MiB at 500 clusters: {:.1} MiB at idle, {:.1} MiB peak → {}",
            mib,
            r.rss_hwm as f64 / MIB,
            verdict(mib <= 64.0)
        );
    } else {
        println!("- RSS ≤ 64 MiB at 500 clusters: not measured (no 500 in --clusters)");
    }
    for r in results.iter().filter(|r| r.clusters > 0) {
        let writes = changes(r, "EscCluster") + changes(r, "Event");
        let audited = r
            .idle_requests
            .iter()
            .filter(|e| e.is_write() && !e.resource().starts_with("leases"))
            .count();
        println!(
            "- {} clusters: idle status/event writes {writes} by watch, {audited} write requests by audit (leases aside) → {}; converged in {} vs probeInterval {} → {}",
            r.clusters,
            verdict(writes == 0 && audited == 0),
            r.converged_after.map_or("never".into(), secs),
            humantime::format_duration(args.probe_interval),
            verdict(r.converged_after.is_some_and(|d| d <= args.probe_interval))
        );
    }
    Ok(())
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

fn changes(r: &Scale, kind: &str) -> usize {
    r.idle_changes
        .iter()
        .filter(|((k, _), _)| *k == kind)
        .map(|(_, n)| n)
        .sum()
}

/// ` (status 3, finalizers 1)` when there were any.
fn detail(r: &Scale, kind: &str) -> Option<String> {
    let parts: Vec<String> = r
        .idle_changes
        .iter()
        .filter(|((k, _), _)| *k == kind)
        .map(|((_, what), n)| format!("{what} {n}"))
        .collect();
    (!parts.is_empty()).then(|| format!(" ({})", parts.join(", ")))
}

/// `patch escclusters/status 500, create events 12`: counts, or per minute over `window`.
fn by_verb_resource<'a>(
    entries: impl Iterator<Item = &'a AuditEntry>,
    window: Option<Duration>,
) -> String {
    let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
    for e in entries {
        *counts.entry((e.verb.clone(), e.resource())).or_default() += 1;
    }
    if counts.is_empty() {
        return "0".into();
    }
    let mut sorted: Vec<_> = counts.into_iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    sorted
        .iter()
        .map(|((verb, resource), n)| match window {
            Some(w) => format!(
                "{verb} {resource} {:.1}",
                *n as f64 * 60.0 / w.as_secs_f64()
            ),
            None => format!("{verb} {resource} {n}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn proc_meminfo_total() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}
