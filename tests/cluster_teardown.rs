//! The test bed leaves nothing behind: a cluster with a node, started and stopped twice, and one
//! whose test process aborts, leave no processes (containerd shims and containers included), no
//! mounts, no bridge, no network namespaces and no runtime state on the host.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use esc_testbed::cluster::{ClusterOptions, TestCluster};
use esc_testbed::host_procs;
use esc_testbed::node::{BRIDGE, NODE_LOCK_PATH, PAUSE_IMAGE, pause_pod};
use esc_testbed::process::abort_probe;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};

/// The two tests compare the host before and after: never run them at the same time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Waits until no node runs on this machine (another test binary's node, or its teardown), so
/// the "before" picture of the host has nothing of theirs in it.
fn wait_until_no_node() {
    let free = std::process::Command::new("flock")
        .args(["--timeout", "600", NODE_LOCK_PATH, "true"])
        .status()
        .expect("run flock");
    assert!(free.success(), "the node lock stayed taken");
}

/// What a node may leave on the host outside its own directory.
fn host_state() -> BTreeSet<String> {
    let mut state = BTreeSet::new();
    let list = |dir: &str, state: &mut BTreeSet<String>| {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                state.insert(format!("{dir}/{}", e.file_name().to_string_lossy()));
            }
        }
    };
    for dir in [
        "/run/containerd",
        "/run/containerd/s",
        "/run/netns",
        "/run/nri",
        "/var/lib/cni",
        "/var/lib/cni/results",
        "/var/lib/kubelet",
        "/var/log/containers",
        "/var/log/pods",
        "/opt/containerd",
    ] {
        list(dir, &mut state);
    }
    for e in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let p = e.path().join("kubepods");
        if p.exists() {
            state.insert(p.display().to_string());
        }
    }
    if Path::new("/sys/fs/cgroup/kubepods").exists() {
        state.insert("/sys/fs/cgroup/kubepods".into());
    }
    let links = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .expect("ip link");
    for line in String::from_utf8_lossy(&links.stdout).lines() {
        if let Some(name) = line.split(':').nth(1) {
            state.insert(format!(
                "link {}",
                name.trim().split('@').next().unwrap_or("")
            ));
        }
    }
    state
}

/// The mount points at or under `dir`.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    host_procs::mounts_under(dir).expect("read /proc/self/mountinfo")
}

/// Live processes whose arguments mention `dir`, as `pid: arguments`.
fn processes_mentioning(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy();
    host_procs::processes()
        .expect("read /proc")
        .into_iter()
        .filter(|p| p.is_alive())
        .filter_map(|p| {
            let args = p.cmdline().ok()?;
            let line: Vec<_> = args.iter().map(|a| a.to_string_lossy()).collect();
            let line = line.join(" ");
            line.contains(&*needle)
                .then(|| format!("{}: {line}", p.pid))
        })
        .collect()
}

/// Processes in the kubelet's kubepods cgroups: the containers.
fn container_pids() -> Vec<u32> {
    let mut pids = Vec::new();
    let mut stack: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("kubepods"))
        .collect();
    stack.push("/sys/fs/cgroup/kubepods".into());
    while let Some(d) = stack.pop() {
        if let Ok(p) = std::fs::read_to_string(d.join("cgroup.procs")) {
            pids.extend(p.lines().filter_map(|l| l.parse::<u32>().ok()));
        }
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            }
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Starts a bridged and a hostNetwork pod and waits until both run.
async fn run_pods(cluster: &TestCluster) -> Result<()> {
    let ns = cluster.namespace("teardown").await?.keep();
    let pods: Api<Pod> = Api::namespaced(cluster.client(), &ns);
    pods.create(&PostParams::default(), &pause_pod("bridged", false))
        .await?;
    pods.create(&PostParams::default(), &pause_pod("host", true))
        .await?;
    // A Job's pod: the controller-manager would recreate it while the node drains, unless
    // the teardown stops the controllers first.
    let job: k8s_openapi::api::batch::v1::Job = serde_json::from_value(serde_json::json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": "keeper" },
        "spec": { "backoffLimit": 0, "template": {
            "metadata": { "labels": { "app": "keeper" } },
            "spec": { "restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                "containers": [{ "name": "main", "image": PAUSE_IMAGE,
                    "imagePullPolicy": "Never",
                    "securityContext": { "runAsUser": 65532, "runAsNonRoot": true } }] } } }
    }))?;
    Api::<k8s_openapi::api::batch::v1::Job>::namespaced(cluster.client(), &ns)
        .create(&PostParams::default(), &job)
        .await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    for name in ["bridged", "host"] {
        loop {
            let p = pods.get(name).await?;
            if p.status.and_then(|s| s.phase).as_deref() == Some("Running") {
                break;
            }
            if Instant::now() > deadline {
                bail!("pod {name} not Running");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    loop {
        let list = pods
            .list(&ListParams::default().labels("app=keeper"))
            .await?;
        let running = list
            .items
            .iter()
            .any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"));
        if running {
            break;
        }
        if Instant::now() > deadline {
            bail!("the Job's pod is not Running");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

struct Running {
    dir: PathBuf,
    pids: Vec<u32>,
}

/// What a running cluster with pods has: processes (with shims and containers), mounts and a
/// bridge. Checked so that "nothing left" afterwards is not vacuous.
fn observe_running(cluster: &TestCluster) -> Result<Running> {
    let node = cluster.node().context("no node")?;
    let shims = node.shim_pids();
    assert!(!shims.is_empty(), "no containerd shims while pods run");
    let containers = container_pids();
    assert!(
        !containers.is_empty(),
        "no container processes while pods run"
    );
    assert!(
        !mounts_under(cluster.dir()).is_empty(),
        "no mounts while pods run"
    );
    assert!(
        host_state().contains(&format!("link {BRIDGE}")),
        "no bridge"
    );
    let mut pids = cluster.process_ids();
    pids.extend(containers);
    assert!(pids.len() >= 8, "{pids:?}");
    Ok(Running {
        dir: cluster.dir().to_owned(),
        pids,
    })
}

fn assert_nothing_left(running: &Running, before: &BTreeSet<String>) {
    let alive: Vec<u32> = running
        .pids
        .iter()
        .copied()
        .filter(|&p| host_procs::is_alive(p))
        .collect();
    assert!(alive.is_empty(), "still alive: {alive:?}");
    assert!(
        processes_mentioning(&running.dir).is_empty(),
        "{:?}",
        processes_mentioning(&running.dir)
    );
    assert!(
        container_pids().is_empty(),
        "containers left: {:?}",
        container_pids()
    );
    assert!(
        mounts_under(&running.dir).is_empty(),
        "{:?}",
        mounts_under(&running.dir)
    );
    assert!(!running.dir.exists(), "{} left", running.dir.display());
    let after = host_state();
    let added: Vec<&String> = after.difference(before).collect();
    assert!(added.is_empty(), "left on the host: {added:?}");
}

#[test]
fn a_cluster_with_a_node_started_and_stopped_twice_leaves_nothing() -> Result<()> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    wait_until_no_node();
    let before = host_state();
    for round in 1..=2 {
        let cluster = TestCluster::start(ClusterOptions::with_node())?;
        eprintln!("round {round}: {:?}", cluster.timings());
        let rt = tokio::runtime::Runtime::new()?;
        rt.block_on(run_pods(&cluster))?;
        drop(rt);
        let running = observe_running(&cluster)?;
        cluster.stop()?;
        assert_nothing_left(&running, &before);
    }
    Ok(())
}

/// Helper run in a child process by the next test: starts the shared cluster with a node and
/// pods, writes what runs to `$ESC_TESTBED_PIDFILE`, and aborts.
#[test]
#[ignore = "run as a child process by a_node_is_cleaned_up_when_the_test_process_aborts"]
fn helper_node_then_abort() {
    assert!(
        abort_probe::requested(),
        "run by a_node_is_cleaned_up_when_the_test_process_aborts only"
    );
    let cluster = TestCluster::shared();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(run_pods(cluster)).unwrap();
    let running = observe_running(cluster).unwrap();
    abort_probe::report_and_abort(&running.dir, &running.pids);
}

#[test]
fn a_node_is_cleaned_up_when_the_test_process_aborts() -> Result<()> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    wait_until_no_node();
    let before = host_state();
    let (dir, pids) = abort_probe::run("helper_node_then_abort")?;
    // The teardown watchdog holds the node lock until it has cleaned up: taking the lock means
    // the cleanup is done.
    let started = Instant::now();
    let locked = std::process::Command::new("flock")
        .args(["--timeout", "120", NODE_LOCK_PATH, "true"])
        .status()?;
    assert!(locked.success(), "node lock not released after the abort");
    eprintln!("teardown after abort took {:?}", started.elapsed());
    let running = Running { dir, pids };
    // The directory is deleted right after the script, still under the lock's watchdog.
    let deadline = Instant::now() + Duration::from_secs(10);
    while running.dir.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_nothing_left(&running, &before);
    Ok(())
}
