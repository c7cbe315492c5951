//! An idle operator writes nothing. With a standalone and an HA EscCluster converged (Ready) and
//! probed every 5 s, a minute of the API server's audit log holds no write by the operator's
//! ServiceAccount except its leader Lease renewals — the election, not the reconciles: status is
//! written only when it changes, the finalizer once, Events only on a transition.
//!
//! The test proves its filter matches: the same user's writes while the clusters converge (the
//! finalizer, the status) are found in the same log, and so are its Lease renewals during the
//! idle minute; and the simulator's journal shows that the operator kept probing all along.

mod esc_fixture;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;
use esc_fixture::{cluster_spec, create_ssh_secrets, ready, tail, wait_for};
use esc_operator::api::EscCluster;
use esc_testbed::cluster::{AuditEvent, TestCluster};
use esc_testbed::operator::{Operator, operator_identity};
use esc_testbed::sshd::{SimEsc, SimSpec, What};
use kube::api::{Api, PostParams};

const BIN: &str = env!("CARGO_BIN_EXE_esc-operator");
const CONVERGE: Duration = Duration::from_secs(30);
/// Writes made after both clusters report Ready but caused by converging (the Events published
/// right after the status write that made them Ready) land within this.
const SETTLE: Duration = Duration::from_secs(2);
const IDLE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converged_clusters_cost_no_writes_but_lease_renewals_for_a_minute() -> Result<()> {
    let cluster = TestCluster::shared_control_plane();
    cluster.install_crds(&esc_operator::api::crds()).await?;
    let ns = cluster.namespace("op-idle").await?;
    let client = cluster.client();
    let ha = SimEsc::start(SimSpec::ha())?;
    ha.share_first_client_key()?;
    let single = SimEsc::start(SimSpec::standalone())?;
    let ha_secrets = create_ssh_secrets(&client, ns.name(), "pair", &ha).await?;
    let single_secrets = create_ssh_secrets(&client, ns.name(), "single", &single).await?;

    let dir = tempfile::tempdir()?;
    let kubeconfig =
        operator_identity(cluster, ns.name(), "esc-operator", &[ns.name()], dir.path()).await?;
    let user = format!("system:serviceaccount:{}:esc-operator", ns.name());
    // The default lease duration (10 s): renewals as often as in production.
    let mut operator = Operator::start(
        Path::new(BIN),
        &kubeconfig,
        "op-idle",
        &[
            &format!("--namespaces={}", ns.name()),
            &format!("--lease-namespace={}", ns.name()),
        ],
        dir.path(),
    )?;
    operator.wait_ready(Duration::from_secs(60)).await?;

    let created = SystemTime::now();
    let api: Api<EscCluster> = Api::namespaced(client.clone(), ns.name());
    for (name, spec) in [
        ("pair", cluster_spec(&ha, &ha_secrets)),
        ("single", cluster_spec(&single, &single_secrets)),
    ] {
        api.create(&PostParams::default(), &EscCluster::new(name, spec))
            .await?;
    }
    for name in ["pair", "single"] {
        wait_for(&api, name, "Ready", CONVERGE, ready, || {
            tail(&operator.log(), 40)
        })
        .await?;
    }
    tokio::time::sleep(SETTLE).await;

    let idle_from = SystemTime::now();
    let idle_clock = Instant::now();
    tokio::time::sleep(IDLE).await;
    let idle_until = SystemTime::now();
    eprintln!("idle window: {:?}", idle_clock.elapsed());
    assert!(
        operator.exit_status().is_none(),
        "the operator exited:\n{}",
        operator.log()
    );

    let all = cluster.audit_events_since(created)?;
    let mine = |from: SystemTime, until: SystemTime| -> Vec<&AuditEvent> {
        all.iter()
            .filter(|e| e.user == user && e.received >= from && e.received < until)
            .collect()
    };
    let is_lease = |e: &&AuditEvent| e.api_group == "coordination.k8s.io" && e.resource == "leases";
    let report = |title: &str, events: &[&AuditEvent]| {
        eprintln!("{title}: {}", events.len());
        for e in events {
            eprintln!("  {}", e.describe());
        }
    };

    // While converging: the same user's reconcile writes are in the log (the filter matches).
    let converging = mine(created, idle_from);
    let (converging_leases, converging_writes): (Vec<&AuditEvent>, Vec<&AuditEvent>) =
        converging.into_iter().partition(is_lease);
    report("writes while converging (not leases)", &converging_writes);
    report("lease writes while converging", &converging_leases);
    for name in ["pair", "single"] {
        for resource in ["escclusters", "escclusters/status"] {
            assert!(
                converging_writes
                    .iter()
                    .any(|e| e.full_resource() == resource
                        && e.name.as_deref() == Some(name)
                        && e.verb == "patch"),
                "no patch of {resource} {name} by {user} found while converging: the audit \
                 filter does not match what the operator writes"
            );
        }
    }

    // Idle: lease renewals only.
    let idle = mine(idle_from, idle_until);
    let (idle_leases, idle_writes): (Vec<&AuditEvent>, Vec<&AuditEvent>) =
        idle.into_iter().partition(is_lease);
    report("lease renewals while idle", &idle_leases);
    report("other writes while idle", &idle_writes);
    let everyone = all
        .iter()
        .filter(|e| e.received >= idle_from && e.received < idle_until)
        .count();
    eprintln!("writes by every audited user while idle: {everyone}");
    // A renewal every lease duration minus the renewal margin (10 s - 3 s): about 8 a minute.
    assert!(
        idle_leases.len() >= 4,
        "the operator's own lease renewals are missing from the idle window: is it still \
         the leader, is the audit log written? {idle_leases:?}"
    );
    assert!(
        idle_writes.is_empty(),
        "an idle operator wrote {} times in {IDLE:?}:\n{}\noperator log:\n{}",
        idle_writes.len(),
        idle_writes
            .iter()
            .map(|e| e.describe())
            .collect::<Vec<_>>()
            .join("\n"),
        tail(&operator.log(), 40)
    );

    // It was not idle for want of work: every node was probed all along.
    let ms = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64
    };
    for sim in [&ha, &single] {
        let journal = sim.journal()?;
        for node in sim.nodes() {
            let probes = journal
                .commands(Some(node.name()))
                .into_iter()
                .filter(|e| e.time_ms >= ms(idle_from) && e.time_ms < ms(idle_until))
                .filter(|e| matches!(&e.what, What::Command { command, .. } if command == "status"))
                .count();
            eprintln!("probes of {} while idle: {probes}", node.name());
            // Every 5 s (± 10 % jitter): 12 in a minute; 8 leaves room for a slow machine.
            assert!(
                probes >= 8,
                "{} was probed {probes} times in {IDLE:?}",
                node.name()
            );
        }
    }
    Ok(())
}
