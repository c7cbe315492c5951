//! Measures the test bed's real cluster and prints a table:
//! cold and warm time to a Ready control plane and node, pod start latency (create → Running,
//! median and worst of 10, on the isolated bridge and with hostNetwork), and resident memory.
//!
//!     cargo run --example cluster_bench [-- --warm-runs N] [--no-drop-caches]
//!
//! "Cold" drops the kernel's page cache first (`/proc/sys/vm/drop_caches`, root), so the
//! binaries are read from disk as on a first run after boot; the one-time build of the binaries
//! (`tools/cluster/build.sh`, 10–15 min on 2 cores) is not part of it. "Warm" starts again
//! right after. Not a timed assertion: numbers for the docs and for regressions seen by eye.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use esc_testbed::cluster::{ClusterOptions, TestCluster};
use esc_testbed::node::pause_pod;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::runtime::wait::{await_condition, conditions::is_pod_running};

const PODS: usize = 10;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let warm_runs: usize = args
        .iter()
        .position(|a| a == "--warm-runs")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(3);
    let drop_caches = !args.iter().any(|a| a == "--no-drop-caches");
    esc_testbed::cluster::install_crypto_provider();
    // Resolve (or build, on a fresh machine) the binaries before any clock runs.
    esc_testbed::cluster::bin_dir(true)?;
    esc_testbed::cluster::run_tool("pause-image.sh", &[])?;

    let mut rows: Vec<(String, String)> = Vec::new();

    // Cold: page cache dropped, then control plane + node.
    // Wait for another run's node to finish first: it would fill the page cache again.
    let free = std::process::Command::new("flock")
        .args([esc_testbed::node::NODE_LOCK_PATH, "true"])
        .status()?;
    anyhow::ensure!(free.success(), "wait for the node lock");
    let cold_label = if drop_caches {
        sync_and_drop_caches()?;
        "cold (page cache dropped)"
    } else {
        "first start (page cache kept)"
    };
    let cluster = TestCluster::start(ClusterOptions::with_node())?;
    let t = cluster.timings();
    rows.push((
        format!("control plane Ready, {cold_label}"),
        secs(t.control_plane_ready),
    ));
    rows.push((
        format!("node Ready, {cold_label}"),
        secs(t.node_ready.context("no node")?),
    ));

    let idle_memory: u64 = cluster.resident_memory().iter().map(|(_, b)| b).sum();
    let rt = tokio::runtime::Runtime::new()?;
    let (bridged, host) = rt.block_on(pod_latencies(&cluster))?;
    rows.push((
        format!("pod start (create → Running), bridge network: median / worst of {PODS}"),
        format!("{} / {}", secs(median(&bridged)), secs(worst(&bridged))),
    ));
    rows.push((
        format!("pod start (create → Running), hostNetwork: median / worst of {PODS}"),
        format!("{} / {}", secs(median(&host)), secs(worst(&host))),
    ));
    let memory = cluster.resident_memory();
    drop(rt);
    cluster.stop()?;

    // Warm: the same again, binaries in the page cache.
    let mut cp = Vec::new();
    let mut node = Vec::new();
    let mut cp_only = Vec::new();
    for _ in 0..warm_runs {
        let c = TestCluster::start(ClusterOptions::with_node())?;
        cp.push(c.timings().control_plane_ready);
        node.push(c.timings().node_ready.context("no node")?);
        c.stop()?;
        let c = TestCluster::start(ClusterOptions::control_plane())?;
        cp_only.push(c.timings().control_plane_ready);
        c.stop()?;
    }
    if warm_runs > 0 {
        rows.push((
            format!("control plane Ready, warm (median of {warm_runs})"),
            secs(median(&cp_only)),
        ));
        rows.push((
            format!("node Ready incl. control plane, warm (median of {warm_runs})"),
            secs(median(&node)),
        ));
    }

    let total: u64 = memory.iter().map(|(_, b)| b).sum();
    for (name, bytes) in &memory {
        rows.push((format!("resident memory: {name}"), mib(*bytes)));
    }
    rows.push((
        format!(
            "resident memory: whole cluster with {} pods running",
            2 * PODS
        ),
        mib(total),
    ));
    rows.push((
        "resident memory: whole cluster idle (before the pods)".into(),
        mib(idle_memory),
    ));

    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(10);
    println!("| {:<width$} | value |", "measure");
    println!("|{}|-------|", "-".repeat(width + 2));
    for (k, v) in &rows {
        println!("| {k:<width$} | {v} |");
    }
    Ok(())
}

/// Creates `PODS` pods on the bridge and `PODS` with hostNetwork, one at a time, and returns
/// how long each took from the create call until the watch saw it Running. Pods are kept
/// running, so the memory figure includes them.
async fn pod_latencies(cluster: &TestCluster) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let ns = cluster.namespace("bench").await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client(), ns.name());
    let mut bridged = Vec::new();
    let mut host = Vec::new();
    for i in 0..2 * PODS {
        let host_network = i >= PODS;
        let name = format!("bench-{i}");
        let pod = pause_pod(&name, host_network);
        let (api, n) = (pods.clone(), name.clone());
        let watch = tokio::spawn(async move { await_condition(api, &n, is_pod_running()).await });
        let started = Instant::now();
        pods.create(&PostParams::default(), &pod).await?;
        tokio::time::timeout(Duration::from_secs(60), watch)
            .await
            .with_context(|| format!("pod {name} not Running within 60 s"))???;
        let took = started.elapsed();
        if host_network {
            host.push(took);
        } else {
            bridged.push(took);
        }
    }
    ns.keep();
    Ok((bridged, host))
}

fn sync_and_drop_caches() -> Result<()> {
    let status = std::process::Command::new("sync").status()?;
    anyhow::ensure!(status.success(), "sync failed");
    std::fs::write("/proc/sys/vm/drop_caches", "3\n")
        .context("drop the page cache (needs root; or pass --no-drop-caches)")
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    if v.is_empty() {
        return Duration::ZERO;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

fn worst(v: &[Duration]) -> Duration {
    v.iter().copied().max().unwrap_or_default()
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}
