//! `esc-operator run` against the real control plane and the ESC simulator behind sshd: the
//! EscCluster controller's status, maintenance by annotation with holders, the safety rules,
//! Secrets, RBAC, restarts and leader election.
//!
//! Every operator here runs as a child process with a ServiceAccount token bound to
//! `manifests/rbac/operator.yaml` — RBAC is real — and watches only its test's namespace.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use esc_operator::api::{EscCluster, EscClusterSpec, EscClusterStatus, NodeRole, OpMode};
use esc_testbed::cluster::{TestCluster, TestNamespace};

mod esc_fixture;
use esc_fixture::{
    SshSecrets, cluster_spec, condition, create_ssh_secrets, is, ready, tail, wait_for,
};
use esc_testbed::operator::{Operator, operator_identity};
use esc_testbed::sshd::{FaultKind, Mode, Role, SimEsc, SimSpec, What};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};

const BIN: &str = env!("CARGO_BIN_EXE_esc-operator");
const ANNOTATION: &str = "escoperator.dev/maintenance";

fn cluster() -> &'static TestCluster {
    TestCluster::shared_control_plane()
}

/// A test's world: a namespace with the CRDs installed, a simulated ESC, its Secrets, an
/// operator watching only this namespace.
struct Fixture {
    ns: TestNamespace,
    sim: SimEsc,
    secrets: SshSecrets,
    operator: Operator,
    kubeconfig: std::path::PathBuf,
    dir: tempfile::TempDir,
}

impl Fixture {
    async fn start(prefix: &str, spec: SimSpec) -> Result<Fixture> {
        Fixture::start_with(prefix, spec, &[]).await
    }

    /// With `extra` flags for the first operator.
    async fn start_with(prefix: &str, spec: SimSpec, extra: &[&str]) -> Result<Fixture> {
        let cluster = cluster();
        cluster.install_crds(&esc_operator::api::crds()).await?;
        let ns = cluster.namespace(prefix).await?;
        let sim = SimEsc::start(spec)?;
        sim.share_first_client_key()?;
        let dir = tempfile::tempdir()?;
        let kubeconfig =
            operator_identity(cluster, ns.name(), "esc-operator", &[ns.name()], dir.path()).await?;
        let secrets = create_ssh_secrets(&cluster.client(), ns.name(), "esc", &sim).await?;
        // The first operator of every test logs JSON lines; the ones a test starts later, text.
        let mut args = vec!["--log-format=json"];
        args.extend_from_slice(extra);
        let mut operator = start_operator_with(&kubeconfig, ns.name(), "op-1", dir.path(), &args)?;
        operator.wait_ready(Duration::from_secs(60)).await?;
        Ok(Fixture {
            ns,
            sim,
            secrets,
            operator,
            kubeconfig,
            dir,
        })
    }

    fn api(&self) -> Api<EscCluster> {
        Api::namespaced(cluster().client(), self.ns.name())
    }

    async fn create(&self, name: &str, tune: impl FnOnce(&mut EscClusterSpec)) -> Result<()> {
        let mut spec = cluster_spec(&self.sim, &self.secrets);
        tune(&mut spec);
        self.api()
            .create(&PostParams::default(), &EscCluster::new(name, spec))
            .await?;
        Ok(())
    }

    async fn patch_spec(&self, name: &str, spec: serde_json::Value) -> Result<()> {
        self.api()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(&serde_json::json!({ "spec": spec })),
            )
            .await?;
        Ok(())
    }

    /// The note of the Event of `type_` and `reason` on `name`; fails when there is none.
    async fn expect_event(&self, name: &str, type_: &str, reason: &str) -> Result<String> {
        let events = events_of(self.ns.name(), name).await?;
        events
            .iter()
            .find(|(t, r, _)| t == type_ && r == reason)
            .map(|(_, _, note)| note.clone())
            .with_context(|| format!("no {type_} Event {reason} on {name}: {events:?}"))
    }

    async fn annotate(&self, name: &str, value: Option<&str>) -> Result<()> {
        let patch = serde_json::json!({"metadata": {"annotations": {ANNOTATION: value}}});
        self.api()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    /// Polls the EscCluster until `pred` holds on its status (the operator's log on timeout).
    async fn wait_for(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&EscClusterStatus) -> bool,
    ) -> Result<EscClusterStatus> {
        wait_for(&self.api(), name, what, timeout, pred, || {
            format!("operator log:\n{}", tail(&self.operator.log(), 40))
        })
        .await
    }

    /// `op_mode set` commands in the journal: (node, mode argument).
    fn mode_sets(&self) -> Result<Vec<(String, String)>> {
        Ok(self
            .sim
            .journal()?
            .commands(None)
            .into_iter()
            .filter_map(|e| match &e.what {
                What::Command { command, args, .. } if is_mode_set(command, args) => Some((
                    e.node.clone(),
                    args.iter()
                        .find(|a| a.starts_with("--mode="))
                        .cloned()
                        .unwrap_or_default(),
                )),
                _ => None,
            })
            .collect())
    }
}

/// An `op_mode set` journal entry (the simulator names it by its command words).
fn is_mode_set(command: &str, args: &[String]) -> bool {
    command == "op_mode set" || (command == "op_mode" && args.iter().any(|a| a == "set"))
}

fn start_operator(kubeconfig: &Path, ns: &str, name: &str, dir: &Path) -> Result<Operator> {
    start_operator_with(kubeconfig, ns, name, dir, &[])
}

fn start_operator_with(
    kubeconfig: &Path,
    ns: &str,
    name: &str,
    dir: &Path,
    extra: &[&str],
) -> Result<Operator> {
    let namespaces = format!("--namespaces={ns}");
    let lease = format!("--lease-namespace={ns}");
    let mut args = vec![
        namespaces.as_str(),
        lease.as_str(),
        "--log-level=info,esc_operator=debug",
    ];
    if !extra.iter().any(|a| a.starts_with("--lease-duration")) {
        args.push("--lease-duration=6s");
    }
    args.extend_from_slice(extra);
    Operator::start(Path::new(BIN), kubeconfig, name, &args, dir)
}

const CONVERGE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_and_standalone_status_converge_with_roles_versions_and_metrics() -> Result<()> {
    let f = Fixture::start("op-converge", SimSpec::ha()).await?;
    f.create("pair", |_| {}).await?;
    let s = f.wait_for("pair", "Ready", CONVERGE, ready).await?;
    assert_eq!(s.master.as_deref(), Some("esc-a"));
    assert_eq!(s.op_mode, Some(OpMode::Operation));
    assert_eq!(s.nodes[0].role, NodeRole::Master);
    assert_eq!(s.nodes[1].role, NodeRole::Backup);
    assert!(
        s.nodes
            .iter()
            .all(|n| n.reachable && n.esc_version.is_some())
    );
    let obj = f.api().get("pair").await?;
    assert_eq!(s.observed_generation, obj.metadata.generation);
    assert!(
        obj.metadata
            .finalizers
            .unwrap_or_default()
            .contains(&"escoperator.dev/release-maintenance".to_owned())
    );
    assert!(
        is(&s, "Reachable", "True")
            && is(&s, "Degraded", "False")
            && is(&s, "Maintenance", "False")
    );

    // Metrics describe it.
    let series = format!(
        "esc_cluster_reachable{{namespace=\"{}\",name=\"pair\"}}",
        f.ns.name()
    );
    assert_eq!(f.operator.metric(&series).await?, Some(1.0));
    let (_, body) = f.operator.get("/metrics").await?;
    assert!(
        body.contains("esc_cluster_info{") && body.contains("master=\"esc-a\""),
        "{body}"
    );
    assert!(
        body.contains("esc_operator_reconcile_total{controller=\"esccluster\"}"),
        "{body}"
    );
    assert_eq!(f.operator.get("/healthz").await?.0, 200);

    // JSON logs: every line parses; a reconcile's lines name the object; no secret anywhere.
    let log = f.operator.log();
    let key = f.sim.nodes()[0].private_key_pem()?;
    let key_line = key.lines().nth(1).context("a key body line")?;
    assert!(!log.contains(key_line), "the private key reached the log");
    let mut reconcile_lines = 0;
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("not JSON: {line}"))?;
        if let Some(span) = v
            .get("span")
            .filter(|s| s.get("name").and_then(|n| n.as_str()) == Some("reconcile"))
        {
            assert_eq!(span["namespace"], f.ns.name(), "{line}");
            assert!(
                span["object"] == "pair" || span["object"] == "single",
                "{line}"
            );
            reconcile_lines += 1;
        }
    }
    assert!(reconcile_lines > 0, "no reconcile lines in:\n{log}");

    // A spec change is probed at once and observed.
    let before = Instant::now();
    f.patch_spec("pair", serde_json::json!({"probeInterval": "1h"}))
        .await?;
    let generation = f.api().get("pair").await?.metadata.generation;
    f.wait_for("pair", "observing the new generation", CONVERGE, |s| {
        s.observed_generation == generation && ready(s)
    })
    .await?;
    assert!(
        before.elapsed() < Duration::from_secs(5),
        "a spec change is reconciled at once"
    );

    // Standalone, in the same namespace and operator.
    let single = SimEsc::start(SimSpec::standalone())?;
    single.share_first_client_key()?;
    let secrets = create_ssh_secrets(&cluster().client(), f.ns.name(), "single", &single).await?;
    let spec = cluster_spec(&single, &secrets);
    f.api()
        .create(&PostParams::default(), &EscCluster::new("single", spec))
        .await?;
    let s = f.wait_for("single", "Ready", CONVERGE, ready).await?;
    assert_eq!(s.master.as_deref(), Some("esc"));
    assert_eq!(s.nodes[0].role, NodeRole::Standalone);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_annotation_enters_and_leaves_maintenance_with_one_op_mode_set_each_way() -> Result<()>
{
    let f = Fixture::start("op-maint", SimSpec::ha()).await?;
    f.create("pair", |_| {}).await?;
    f.wait_for("pair", "Ready", CONVERGE, ready).await?;

    f.annotate("pair", Some("true")).await?;
    let s = f
        .wait_for("pair", "in maintenance", CONVERGE, |s| {
            is(s, "Maintenance", "True") && ready(s)
        })
        .await?;
    assert_eq!(s.op_mode, Some(OpMode::Maintenance));
    assert_eq!(s.maintenance_holders.len(), 1);
    assert_eq!(f.sim.node("esc-a").state()?.mode, Mode::Maintenance);
    let series = format!(
        "esc_cluster_maintenance{{namespace=\"{}\",name=\"pair\"}}",
        f.ns.name()
    );
    assert_eq!(f.operator.metric(&series).await?, Some(1.0));

    // Several probes later: still exactly one `op_mode set`, on the MASTER, with ipt_check.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let sets = f.mode_sets()?;
    assert_eq!(
        sets,
        vec![("esc-a".to_owned(), "--mode=maintenance".to_owned())]
    );
    let journal = f.sim.journal()?;
    let set = journal
        .commands(Some("esc-a"))
        .into_iter()
        .find_map(|e| match &e.what {
            What::Command { command, args, .. } if is_mode_set(command, args) => Some(args.clone()),
            _ => None,
        })
        .unwrap();
    assert!(set.contains(&"--ipt_check=true".to_owned()), "{set:?}");

    f.annotate("pair", Some("false")).await?;
    let s = f
        .wait_for("pair", "back in operation", CONVERGE, |s| {
            s.op_mode == Some(OpMode::Operation) && s.maintenance_holders.is_empty()
        })
        .await?;
    assert!(ready(&s));
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        f.mode_sets()?,
        vec![
            ("esc-a".to_owned(), "--mode=maintenance".to_owned()),
            ("esc-a".to_owned(), "--mode=operation".to_owned())
        ]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_transactions_refuse_then_drain_and_maintenance_follows() -> Result<()> {
    let f = Fixture::start("op-ipt", SimSpec::standalone()).await?;
    f.create("single", |_| {}).await?;
    f.wait_for("single", "Ready", CONVERGE, ready).await?;
    f.sim
        .node("esc")
        .set_in_flight(2, Some(Duration::from_secs(6)))?;
    f.annotate("single", Some("true")).await?;
    let s = f
        .wait_for(
            "single",
            "refused for in-flight transactions",
            CONVERGE,
            |s| condition(s, "Maintenance").is_some_and(|c| c.1 == "InFlightTransactions"),
        )
        .await?;
    assert!(!ready(&s));
    f.expect_event("single", "Warning", "InFlightTransactions")
        .await?;
    let s = f
        .wait_for("single", "in maintenance after the drain", CONVERGE, |s| {
            is(s, "Maintenance", "True")
        })
        .await?;
    assert_eq!(s.op_mode, Some(OpMode::Maintenance));
    let sets = f.mode_sets()?;
    assert!(sets.len() >= 2, "refused at least once, then set: {sets:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_duration_returns_to_operation_and_says_so() -> Result<()> {
    let f = Fixture::start("op-maxdur", SimSpec::standalone()).await?;
    f.create("single", |s| {
        s.maintenance.max_duration = Some(Duration::from_secs(60).into())
    })
    .await?;
    f.wait_for("single", "Ready", CONVERGE, ready).await?;
    f.annotate("single", Some("true")).await?;
    f.wait_for("single", "in maintenance", CONVERGE, |s| {
        is(s, "Maintenance", "True")
    })
    .await?;
    let s = f
        .wait_for(
            "single",
            "back in operation after maxDuration",
            Duration::from_secs(90),
            |s| condition(s, "Maintenance").is_some_and(|c| c.1 == "MaxDurationExceeded"),
        )
        .await?;
    assert_eq!(s.op_mode, Some(OpMode::Operation));
    assert_eq!(s.expired_holders.len(), 1);
    f.expect_event("single", "Warning", "MaxDurationExceeded")
        .await?;
    // The annotation is still set: no second window.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(f.mode_sets()?.len(), 2, "{:?}", f.mode_sets()?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_set_by_hand_is_reported_not_undone() -> Result<()> {
    let f = Fixture::start("op-drift", SimSpec::ha()).await?;
    f.create("pair", |_| {}).await?;
    f.wait_for("pair", "Ready", CONVERGE, ready).await?;
    let out = f
        .sim
        .node("esc-a")
        .ssh("escadm op_mode set --mode=maintenance")?;
    assert_eq!(out.exit, 0, "{out:?}");
    let s = f
        .wait_for("pair", "reporting manual maintenance", CONVERGE, |s| {
            condition(s, "Maintenance").is_some_and(|c| c.1 == "ManualMaintenance")
        })
        .await?;
    assert_eq!(s.op_mode, Some(OpMode::Maintenance));
    f.expect_event("pair", "Warning", "ManualMaintenance")
        .await?;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(f.mode_sets()?.len(), 1, "only the person's own op_mode set");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_masters_are_degraded_and_no_op_mode_set_is_sent() -> Result<()> {
    let f = Fixture::start("op-split", SimSpec::ha()).await?;
    f.sim
        .node("esc-b")
        .update_state(|s| s.role = Role::Master)?;
    f.create("pair", |_| {}).await?;
    f.annotate("pair", Some("true")).await?;
    let s = f
        .wait_for("pair", "Degraded", CONVERGE, |s| {
            condition(s, "Degraded").is_some_and(|c| c.1 == "SplitBrain")
        })
        .await?;
    let (_, _, message) = condition(&s, "Degraded").unwrap();
    assert!(message.contains("esc-a and esc-b"), "{message}");
    assert!(!ready(&s));
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        f.mode_sets()?.is_empty(),
        "no mode change while two nodes claim MASTER"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_node_is_reported_and_recovers() -> Result<()> {
    let f = Fixture::start("op-reach", SimSpec::ha()).await?;
    f.create("pair", |_| {}).await?;
    f.wait_for("pair", "Ready", CONVERGE, ready).await?;
    f.sim.node("esc-b").power_off()?;
    let s = f
        .wait_for("pair", "Reachable=False", CONVERGE, |s| {
            is(s, "Reachable", "False")
        })
        .await?;
    assert!(!s.nodes[1].reachable && s.nodes[0].reachable);
    assert!(condition(&s, "Reachable").unwrap().2.contains("esc-b"));
    let series = format!(
        "esc_cluster_reachable{{namespace=\"{}\",name=\"pair\"}}",
        f.ns.name()
    );
    assert_eq!(f.operator.metric(&series).await?, Some(0.0));
    f.sim.node("esc-b").power_on()?;
    f.wait_for("pair", "Ready again", CONVERGE, ready).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_host_key_names_the_fingerprint_and_a_fixed_secret_reconciles_at_once() -> Result<()>
{
    let f = Fixture::start("op-hostkey", SimSpec::standalone()).await?;
    // known_hosts that vouches for another key at this host.
    let other = SimEsc::start(SimSpec::standalone())?;
    let node = f.sim.node("esc");
    let wrong = other.nodes()[0]
        .known_hosts_line()
        .replacen(
            &other.nodes()[0].address().to_string(),
            &node.address().to_string(),
            1,
        )
        .replacen(
            &format!(":{}", other.nodes()[0].port()),
            &format!(":{}", node.port()),
            1,
        );
    let secrets: Api<Secret> = Api::namespaced(cluster().client(), f.ns.name());
    secrets
        .patch(
            "esc-known-hosts",
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({"stringData": {"known_hosts": wrong}})),
        )
        .await?;
    f.create("single", |_| {}).await?;
    let s = f
        .wait_for("single", "host key rejected", CONVERGE, |s| {
            is(s, "Reachable", "False")
        })
        .await?;
    let (_, reason, message) = condition(&s, "Reachable").unwrap();
    assert_eq!(reason, "HostKeyMismatch");
    assert!(message.contains("SHA256:"), "{message}");
    f.expect_event("single", "Warning", "HostKeyMismatch")
        .await?;

    // Fixing the Secret reconciles at once, not at the next probe.
    f.patch_spec("single", serde_json::json!({"probeInterval": "1h"}))
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let fixed = Instant::now();
    secrets
        .patch(
            "esc-known-hosts",
            &PatchParams::default(),
            &Patch::Merge(
                &serde_json::json!({"stringData": {"known_hosts": node.known_hosts_line()}}),
            ),
        )
        .await?;
    f.wait_for("single", "Ready after the fix", CONVERGE, ready)
        .await?;
    assert!(
        fixed.elapsed() < Duration::from_secs(10),
        "took {:?}",
        fixed.elapsed()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_is_a_condition_and_an_event_naming_it() -> Result<()> {
    let f = Fixture::start("op-secret", SimSpec::standalone()).await?;
    f.create("single", |s| {
        s.ssh.credentials_secret_ref.name = "absent".into()
    })
    .await?;
    let s = f
        .wait_for("single", "SecretNotFound", CONVERGE, |s| {
            condition(s, "Reachable").is_some_and(|c| c.1 == "SecretNotFound")
        })
        .await?;
    let message = condition(&s, "Reachable").unwrap().2;
    assert!(
        message.contains(&format!("{}/absent", f.ns.name())),
        "{message}"
    );
    f.expect_event("single", "Warning", "SecretNotFound")
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_toggle_the_next_operator_sends_no_second_op_mode_set() -> Result<()> {
    let mut f = Fixture::start("op-kill", SimSpec::standalone()).await?;
    f.create("single", |_| {}).await?;
    f.wait_for("single", "Ready", CONVERGE, ready).await?;
    // Slow escadm down so the kill lands while `op_mode set` runs.
    f.sim.node("esc").fault_once(
        "op_mode set",
        FaultKind::Slow {
            line_delay_ms: 1500,
        },
    )?;
    f.annotate("single", Some("true")).await?;
    let deadline = Instant::now() + CONVERGE;
    while !f.operator.log().contains("op_mode set") {
        assert!(
            Instant::now() < deadline,
            "the operator never sent op_mode set:\n{}",
            f.operator.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f.operator.kill();
    let mut second = start_operator(&f.kubeconfig, f.ns.name(), "op-2", f.dir.path())?;
    second.wait_ready(Duration::from_secs(60)).await?;
    f.operator = second;
    f.wait_for("single", "in maintenance", CONVERGE, |s| {
        is(s, "Maintenance", "True")
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let sets = f.mode_sets()?;
    assert_eq!(
        sets.len(),
        1,
        "exactly one op_mode set across the kill: {sets:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_cluster_in_maintenance_returns_esc_to_operation_first() -> Result<()> {
    let f = Fixture::start("op-delete", SimSpec::ha()).await?;
    f.create("pair", |_| {}).await?;
    f.wait_for("pair", "Ready", CONVERGE, ready).await?;
    f.annotate("pair", Some("true")).await?;
    f.wait_for("pair", "in maintenance", CONVERGE, |s| {
        is(s, "Maintenance", "True")
    })
    .await?;
    f.api().delete("pair", &DeleteParams::default()).await?;
    let deadline = Instant::now() + CONVERGE;
    while f.api().get_opt("pair").await?.is_some() {
        assert!(
            Instant::now() < deadline,
            "not deleted:\n{}",
            tail(&f.operator.log(), 30)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(f.sim.node("esc-a").state()?.mode, Mode::Operation);
    let sets = f.mode_sets()?;
    assert_eq!(
        sets.last().map(|s| s.1.as_str()),
        Some("--mode=operation"),
        "{sets:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_unreachable_cluster_in_maintenance_lets_go_after_the_timeout() -> Result<()> {
    let f =
        Fixture::start_with("op-letgo", SimSpec::standalone(), &["--release-timeout=8s"]).await?;
    f.create("single", |_| {}).await?;
    f.wait_for("single", "Ready", CONVERGE, ready).await?;
    f.annotate("single", Some("true")).await?;
    f.wait_for("single", "in maintenance", CONVERGE, |s| {
        is(s, "Maintenance", "True")
    })
    .await?;
    f.sim.node("esc").power_off()?;
    let deleted = Instant::now();
    f.api().delete("single", &DeleteParams::default()).await?;
    // Held while ESC cannot be told: the object stays, and status says why.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        f.api().get_opt("single").await?.is_some(),
        "the finalizer holds while ESC is unreachable"
    );
    let deadline = Instant::now() + CONVERGE;
    while f.api().get_opt("single").await?.is_some() {
        assert!(
            Instant::now() < deadline,
            "never let go:\n{}",
            tail(&f.operator.log(), 30)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The timeout runs from metadata.deletionTimestamp, which the API server stores in whole
    // seconds (truncated): it can start up to 1 s before this test's own clock did.
    assert!(
        deleted.elapsed() >= Duration::from_secs(7),
        "let go before the timeout: {:?}",
        deleted.elapsed()
    );
    let note = f
        .expect_event("single", "Warning", "ReleaseTimedOut")
        .await?;
    assert!(note.contains("op_mode set --mode=operation"), "{note}");
    assert_eq!(
        f.sim.node("esc").state()?.mode,
        Mode::Maintenance,
        "ESC was never told"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_per_node_is_reused_then_closed_when_idle() -> Result<()> {
    let f = Fixture::start_with("op-pool", SimSpec::ha(), &["--ssh-idle-timeout=6s"]).await?;
    f.create("pair", |_| {}).await?;
    f.wait_for("pair", "Ready", CONVERGE, ready).await?;
    // Several probes (every 5 s) over the same two connections.
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(
        f.operator.metric("esc_operator_ssh_connections").await?,
        Some(2.0)
    );
    assert_eq!(
        f.operator.metric("esc_operator_ssh_connects_total").await?,
        Some(2.0),
        "reused, not reopened"
    );
    // Probes far apart: the connections close in between.
    f.patch_spec("pair", serde_json::json!({"probeInterval": "1h"}))
        .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while f.operator.metric("esc_operator_ssh_connections").await? != Some(0.0) {
        assert!(
            Instant::now() < deadline,
            "idle connections never closed:\n{}",
            tail(&f.operator.log(), 20)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_denies_secrets_outside_the_watched_namespace() -> Result<()> {
    let f = Fixture::start("op-rbac", SimSpec::standalone()).await?;
    let other = cluster().namespace("op-rbac-other").await?;
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&f.kubeconfig)?,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    let client = kube::Client::try_from(config)?;
    let here: Api<Secret> = Api::namespaced(client.clone(), f.ns.name());
    assert!(
        here.get("esc-ssh").await.is_ok(),
        "the operator reads Secrets where it watches"
    );
    let there: Api<Secret> = Api::namespaced(client.clone(), other.name());
    match there.list(&Default::default()).await {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => panic!("expected 403 for Secrets in an unwatched namespace, got {other:?}"),
    }
    // Nor may it write Secrets where it watches.
    match here.delete("esc-ssh", &DeleteParams::default()).await {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => panic!("expected 403 deleting a Secret, got {other:?}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_of_two_and_a_standby_takes_over_when_it_dies() -> Result<()> {
    let mut f = Fixture::start("op-leader", SimSpec::standalone()).await?;
    f.create("single", |_| {}).await?;
    f.wait_for("single", "Ready", CONVERGE, ready).await?;
    // A long lease for the second leader: a standby that only waited for its expiry would take
    // it seconds after the SIGTERM below, which the check there tells apart from "at once".
    let mut standby = start_operator_with(
        &f.kubeconfig,
        f.ns.name(),
        "op-standby",
        f.dir.path(),
        &["--lease-duration=20s"],
    )?;
    standby.wait_ready(Duration::from_secs(60)).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(standby.log().contains("standing by"), "{}", standby.log());
    assert!(
        !standby.log().contains("became the leader"),
        "{}",
        standby.log()
    );
    let reconciles = standby
        .metric("esc_operator_reconcile_total{controller=\"esccluster\"}")
        .await?
        .unwrap_or(0.0);
    assert_eq!(reconciles, 0.0, "only the leader reconciles");

    let killed = Instant::now();
    f.operator.kill();
    let deadline = killed + Duration::from_secs(20);
    while !standby.log().contains("became the leader") {
        assert!(Instant::now() < deadline, "no takeover:\n{}", standby.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let takeover = killed.elapsed();
    eprintln!("takeover after SIGKILL of the leader: {takeover:?}");
    assert!(takeover < Duration::from_secs(15), "took {takeover:?}");
    // The new leader reconciles.
    f.annotate("single", Some("true")).await?;
    f.operator = standby;
    f.wait_for(
        "single",
        "in maintenance under the new leader",
        CONVERGE,
        |s| is(s, "Maintenance", "True"),
    )
    .await?;

    // SIGTERM: a clean exit that gives the lease up (holderIdentity cleared at once, instead of
    // holding it until expiry); the standby watches the Lease and takes it at once, not at the
    // expiry it last saw (the 20 s lease is renewed every 17 s).
    let mut third = start_operator(&f.kubeconfig, f.ns.name(), "op-3", f.dir.path())?;
    third.wait_ready(Duration::from_secs(60)).await?;
    let stopped = Instant::now();
    let status = f.operator.terminate(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "clean exit on SIGTERM: {status:?}\n{}",
        f.operator.log()
    );
    assert!(
        f.operator.log().contains("released the leader lease"),
        "{}",
        f.operator.log()
    );
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(cluster().client(), f.ns.name());
    let holder = leases
        .get("esc-operator")
        .await?
        .spec
        .and_then(|s| s.holder_identity);
    assert!(
        holder.as_deref().is_none_or(|h| h.starts_with("op-3")),
        "the stopped leader still holds the lease: {holder:?}"
    );
    let deadline = stopped + Duration::from_secs(20);
    while !third.log().contains("became the leader") {
        assert!(
            Instant::now() < deadline,
            "no takeover after SIGTERM:\n{}",
            third.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let takeover = stopped.elapsed();
    eprintln!("takeover after SIGTERM of the leader: {takeover:?}");
    assert!(
        takeover < Duration::from_secs(3),
        "a released lease is taken at once, not at its expiry: took {takeover:?}\n{}",
        third.log()
    );
    f.operator = third;
    Ok(())
}

/// (type, reason, note) of the Events on an EscCluster.
async fn events_of(ns: &str, name: &str) -> Result<Vec<(String, String, String)>> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(cluster().client(), ns);
    let list = api.list(&Default::default()).await.context("list Events")?;
    Ok(list
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default(),
            )
        })
        .collect())
}
