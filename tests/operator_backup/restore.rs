//! EscRestore end to end: a backup taken by the operator, then restored through the staging
//! Job (run by the real node from the operator's image) and escadm on the simulator, checked
//! against the simulator's journal and database.

use esc_operator::api::{
    EscRestore, EscRestoreSpec, EscRestoreStatus, NodeRole, OnRestoreFailure, RestoreSource,
    RestoreStep, S3Source, ServicesState,
};
use esc_operator::plan::restore::current_step as restore_step;
use kube::api::DeleteParams;

use super::*;
use anyhow::ensure;

/// A whole restore: staging Job, two stops, restore, two restarts.
const RESTORE: Duration = Duration::from_secs(150);

impl Fixture {
    fn restores(&self) -> Api<EscRestore> {
        Api::namespaced(cluster().client(), self.ns.name())
    }

    async fn create_restore(
        &self,
        name: &str,
        source: RestoreSource,
        tune: impl FnOnce(&mut EscRestoreSpec),
    ) -> Result<()> {
        let mut spec = EscRestoreSpec {
            cluster_ref: LocalObjectRef { name: "esc".into() },
            source,
            on_failure: OnRestoreFailure::RestartServices,
            dry_run: false,
            allow_repeat: false,
        };
        tune(&mut spec);
        self.restores()
            .create(&PostParams::default(), &EscRestore::new(name, spec))
            .await?;
        Ok(())
    }

    async fn wait_restore(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&EscRestoreStatus) -> bool,
    ) -> Result<EscRestoreStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.restores().get(name).await?.status.unwrap_or_default();
            if pred(&status) {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!(
                    "EscRestore {name}: not {what} within {timeout:?}; status: {}\noperator log:\n{}\njobs:\n{}",
                    serde_json::to_string_pretty(&status)?,
                    tail(
                        &self
                            .operator
                            .log()
                            .lines()
                            .filter(|l| !l.contains("esccluster"))
                            .collect::<Vec<_>>()
                            .join("\n"),
                        80
                    ),
                    self.job_summary().await
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Deletes an EscRestore and waits until it is gone (its finalizer released).
    async fn delete_restore(&self, name: &str) -> Result<()> {
        self.restores()
            .delete(name, &DeleteParams::default())
            .await?;
        let deadline = Instant::now() + CONVERGE;
        while self.restores().get_opt(name).await?.is_some() {
            if Instant::now() > deadline {
                bail!("EscRestore {name} was not released within {CONVERGE:?}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(())
    }

    /// A verified backup `name` of the cluster into MinIO: its source as a restore names it.
    async fn backup_to(&self, s3: &S3Server, name: &str) -> Result<RestoreSource> {
        let target = self
            .s3_target(s3, s3.secret_key(), ChecksumMode::WhenSupported)
            .await?;
        self.create_backup(name, target, |_| {}).await?;
        self.wait_backup(name, "Succeeded", BACKUP, succeeded)
            .await?;
        Ok(RestoreSource {
            backup_ref: Some(LocalObjectRef { name: name.into() }),
            s3: None,
            scp: None,
            sha256: None,
        })
    }

    /// The escadm commands that change something, after the first `skip` journal words.
    fn changes_since(&self, skip: usize) -> Result<Vec<String>> {
        Ok(self.journal_words()?.into_iter().skip(skip).collect())
    }

    /// Waits until the EscCluster reports ESC `version` on its (first) node.
    async fn wait_version(&self, version: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now = self
                .clusters()
                .get("esc")
                .await?
                .status
                .and_then(|s| s.nodes.first().and_then(|n| n.esc_version.clone()));
            if now.as_deref() == Some(version) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the EscCluster did not report ESC {version}: {now:?}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn failovers(&self) -> Result<usize> {
        Ok(self
            .sim
            .journal()?
            .events()
            .filter(|(_, ev)| matches!(ev, esc_testbed::sshd::Event::Failover { .. }))
            .count())
    }
}

fn restore_done(s: &EscRestoreStatus) -> bool {
    matches!(s.run.phase, Some(RunPhase::Succeeded | RunPhase::Failed))
}

fn restore_succeeded(s: &EscRestoreStatus) -> bool {
    s.run.phase == Some(RunPhase::Succeeded)
}

fn failure_reason(s: &EscRestoreStatus) -> String {
    s.run
        .failure
        .as_ref()
        .map(|f| format!("{}/{}", f.step, f.reason))
        .unwrap_or_default()
}

const HA_ORDER: [&str; 7] = [
    "esc-a:set-maintenance",
    "esc-b:stop",
    "esc-a:stop",
    "esc-a:restore",
    "esc-a:restart",
    "esc-b:restart",
    "esc-a:set-operation",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ha_restore_from_a_backup_runs_in_the_manuals_order_once_and_a_recreated_one_is_refused()
-> Result<()> {
    let f = Fixture::start("rs-ha", SimSpec::ha()).await?;
    let s3 = S3Server::start(S3Kind::Minio).await?;
    s3.create_bucket(BUCKET).await?;
    let master = f.sim.node("esc-a");
    let taken = master.database()?;
    let source = f.backup_to(&s3, "before").await?;
    // Work done after the backup: what the restore takes back.
    master.set_database_content(serde_json::json!({"deployments": ["after-the-backup"]}))?;
    assert_ne!(master.database()?, taken);
    let mark = f.journal_words()?.len();

    f.create_restore("back", source.clone(), |_| {}).await?;
    let s = f
        .wait_restore("back", "Succeeded", RESTORE, restore_done)
        .await?;
    assert!(restore_succeeded(&s), "{}", failure_reason(&s));
    assert_eq!(f.changes_since(mark)?, HA_ORDER);
    assert_eq!(f.failovers()?, 0);
    assert_eq!(master.database()?, taken);
    assert_eq!(
        f.sim.node("esc-b").database()?,
        taken,
        "the standby synced from the master"
    );
    // Status: the plan with its nodes, the origin, the final roles, nothing left stopped.
    let planned: Vec<(RestoreStep, String)> =
        s.plan.iter().map(|p| (p.step, p.nodes.join(","))).collect();
    assert!(
        planned.contains(&(RestoreStep::StopStandby, "esc-b".into())),
        "{planned:?}"
    );
    assert_eq!(s.origin.as_ref().unwrap().backup.as_deref(), Some("before"));
    assert!(!s.origin.as_ref().unwrap().other_cluster);
    assert!(s.stopped_nodes.is_empty());
    let fin = s.final_state.clone().context("no final state")?;
    let role = |n: &str| {
        fin.nodes
            .iter()
            .find(|x| x.name == n)
            .map(|x| (x.role, x.services))
    };
    assert_eq!(
        role("esc-a"),
        Some((NodeRole::Master, ServicesState::Running))
    );
    assert_eq!(
        role("esc-b"),
        Some((NodeRole::Backup, ServicesState::Running))
    );
    assert!(s.run.maintenance.as_ref().unwrap().ended_at.is_some());
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
    // Recorded on both nodes, where a rebuilt Kubernetes cluster still finds it.
    for node in ["esc-a", "esc-b"] {
        let history =
            std::fs::read_to_string(f.state_dir.join(format!("restore-history-{node}.jsonl")))?;
        assert!(
            history.contains(&format!("{}/back", f.ns.name())),
            "{history}"
        );
    }

    // GitOps prunes and re-applies it: same name and spec, new UID. Refused, nothing run.
    f.delete_restore("back").await?;
    let mark = f.journal_words()?.len();
    f.create_restore("back", source.clone(), |_| {}).await?;
    let s = f
        .wait_restore("back", "Failed", CONVERGE, restore_done)
        .await?;
    assert_eq!(failure_reason(&s), "Preflight/AlreadyRestored");
    assert!(
        s.run.message.as_ref().unwrap().contains("allowRepeat"),
        "{:?}",
        s.run.message
    );
    assert_eq!(f.changes_since(mark)?, Vec::<String>::new());

    // A dry run reports the plan and changes nothing.
    f.create_restore("look", source.clone(), |s| {
        s.dry_run = true;
        s.allow_repeat = true;
    })
    .await?;
    let s = f
        .wait_restore("look", "Succeeded", CONVERGE, restore_done)
        .await?;
    assert!(restore_succeeded(&s), "{}", failure_reason(&s));
    assert!(
        s.run
            .conditions
            .iter()
            .any(|c| c.type_ == "DryRun" && c.status == "True")
    );
    assert_eq!(s.plan.len(), 11);
    assert_eq!(f.changes_since(mark)?, Vec::<String>::new());
    assert!(f.jobs().await?.iter().all(|j| {
        !j.metadata
            .name
            .as_deref()
            .unwrap_or("")
            .starts_with("look-")
    }));

    // With the opt-in, it runs again.
    master.set_database_content(serde_json::json!({"deployments": ["again"]}))?;
    f.create_restore("again", source, |s| s.allow_repeat = true)
        .await?;
    let s = f
        .wait_restore("again", "Succeeded", RESTORE, restore_done)
        .await?;
    assert!(restore_succeeded(&s), "{}", failure_reason(&s));
    assert_eq!(master.database()?, taken);
    assert_eq!(f.changes_since(mark)?, HA_ORDER);
    let series = format!(
        "esc_restore_total{{namespace=\"{}\",name=\"esc\"}}",
        f.ns.name()
    );
    let restores = f.operator.metric(&series).await?;
    // back, the refused re-creation, the dry run, again.
    assert_eq!(restores, Some(4.0), "{series}");
    s3.stop()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_restores_from_s3_and_scp_locations_refuse_bad_checksums_and_downgrades()
-> Result<()> {
    let f = Fixture::start("rs-single", SimSpec::standalone()).await?;
    let node = f.sim.node("esc");
    let s3 = S3Server::start(S3Kind::Versity).await?;
    s3.create_bucket(BUCKET).await?;
    let taken = node.database()?;
    f.backup_to(&s3, "nightly").await?;
    let artifact = f
        .backups()
        .get("nightly")
        .await?
        .status
        .and_then(|s| s.artifact)
        .context("no artifact")?;
    let key = format!("prod/{}/esc/nightly.tar", f.ns.name());
    let creds = f
        .s3_target(&s3, s3.secret_key(), ChecksumMode::WhenSupported)
        .await?
        .s3
        .unwrap()
        .connection;
    let s3_source = |sha256: &str| RestoreSource {
        backup_ref: None,
        s3: Some(S3Source {
            connection: creds.clone(),
            key: key.clone(),
        }),
        scp: None,
        sha256: Some(sha256.to_owned()),
    };
    let mark = f.journal_words()?.len();

    // A checksum that is not the artifact's: refused before anything is stopped.
    f.create_restore("wrong-sum", s3_source(&"0".repeat(64)), |_| {})
        .await?;
    let s = f
        .wait_restore("wrong-sum", "Failed", CONVERGE, restore_done)
        .await?;
    assert_eq!(failure_reason(&s), "Preflight/ChecksumMismatch");
    assert_eq!(f.changes_since(mark)?, Vec::<String>::new());

    // From an explicit S3 location (versitygw) with its checksum.
    node.set_database_content(serde_json::json!({"deployments": ["later"]}))?;
    f.create_restore("from-s3", s3_source(&artifact.sha256), |_| {})
        .await?;
    let s = f
        .wait_restore("from-s3", "Succeeded", RESTORE, restore_done)
        .await?;
    assert!(restore_succeeded(&s), "{}", failure_reason(&s));
    assert_eq!(node.database()?, taken);
    assert_eq!(
        f.changes_since(mark)?,
        [
            "esc:set-maintenance",
            "esc:stop",
            "esc:restore",
            "esc:restart",
            "esc:set-operation"
        ]
    );

    // From an scp location: the artifact copied onto an SSH host.
    let bytes = s3.get_object(BUCKET, &key).await?;
    let path = node.data_dir().join("esc-copy.tar");
    std::fs::write(&path, &bytes)?;
    let scp = ScpLocation {
        host: node.address().to_string(),
        port: node.port(),
        user: node.key_user().into(),
        path: path.display().to_string(),
        credentials_secret_ref: LocalObjectRef {
            name: f.secrets.credentials.clone(),
        },
        known_hosts_secret_ref: LocalObjectRef {
            name: f.secrets.known_hosts.clone(),
        },
    };
    // No sidecar beside a hand-copied file: the store has no digest to show, so the staging's
    // whole-artifact check is what proves it.
    std::fs::write(
        node.data_dir().join("esc-copy.tar.sha256"),
        format!("{}  esc-copy.tar\n", artifact.sha256),
    )?;
    node.set_database_content(serde_json::json!({"deployments": ["later-again"]}))?;
    f.create_restore(
        "from-scp",
        RestoreSource {
            backup_ref: None,
            s3: None,
            scp: Some(scp),
            sha256: Some(artifact.sha256.clone()),
        },
        |s| s.allow_repeat = true,
    )
    .await?;
    let s = f
        .wait_restore("from-scp", "Succeeded", RESTORE, restore_done)
        .await?;
    assert!(restore_succeeded(&s), "{}", failure_reason(&s));
    assert_eq!(node.database()?, taken);

    // An artifact from a newer ESC (the node upgraded, backed up, then rolled back to the
    // older ESC): refused, ESC untouched.
    let original = node.state()?.esc_version.clone();
    node.set_esc_version("5.11.0.1")?;
    f.wait_version("5.11.0.1").await?;
    let newer = f.backup_to(&s3, "on-newer").await?;
    node.set_esc_version(&original)?;
    f.wait_version(&original).await?;
    let mark = f.journal_words()?.len();
    f.create_restore("older", newer, |s| s.allow_repeat = true)
        .await?;
    let s = f
        .wait_restore("older", "Failed", CONVERGE, restore_done)
        .await?;
    assert_eq!(failure_reason(&s), "Preflight/SchemaDowngrade");
    assert_eq!(f.changes_since(mark)?, Vec::<String>::new());
    s3.stop()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_restore_restarts_services_in_order_or_leaves_them_stopped_as_asked() -> Result<()>
{
    let f = Fixture::start("rs-fault", SimSpec::ha()).await?;
    let s3 = S3Server::start(S3Kind::Minio).await?;
    s3.create_bucket(BUCKET).await?;
    let source = f.backup_to(&s3, "nightly").await?;
    let master = f.sim.node("esc-a");

    master.fault_once(
        "restore",
        FaultKind::Exit {
            code: 9,
            message: Some("restore failed: archive unreadable".into()),
        },
    )?;
    let mark = f.journal_words()?.len();
    f.create_restore("broken", source.clone(), |_| {}).await?;
    let s = f
        .wait_restore("broken", "Failed", RESTORE, restore_done)
        .await?;
    assert!(
        failure_reason(&s).starts_with("Restore/"),
        "{}",
        failure_reason(&s)
    );
    assert_eq!(
        f.changes_since(mark)?,
        HA_ORDER,
        "services back master first, then standby"
    );
    assert!(s.stopped_nodes.is_empty());
    let fin = s.final_state.clone().context("no final state")?;
    assert!(
        fin.nodes
            .iter()
            .all(|n| n.services == ServicesState::Running),
        "{fin:?}"
    );
    assert!(
        s.run
            .conditions
            .iter()
            .any(|c| c.type_ == "Failed" && c.status == "True")
    );

    master.fault_once(
        "restore",
        FaultKind::Exit {
            code: 9,
            message: None,
        },
    )?;
    let mark = f.journal_words()?.len();
    f.create_restore("left", source, |s| {
        s.on_failure = OnRestoreFailure::LeaveStopped;
    })
    .await?;
    let s = f
        .wait_restore("left", "Failed", RESTORE, restore_done)
        .await?;
    assert_eq!(
        f.changes_since(mark)?,
        [
            "esc-a:set-maintenance",
            "esc-b:stop",
            "esc-a:stop",
            "esc-a:restore"
        ]
    );
    assert_eq!(s.stopped_nodes, ["esc-b", "esc-a"]);
    let message = s.run.message.clone().unwrap_or_default();
    assert!(message.contains("STOPPED on esc-b, esc-a"), "{message}");
    for n in f.sim.nodes() {
        assert!(n.state()?.all_stopped(), "{} left stopped", n.name());
    }
    s3.stop()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_killed_after_every_step_completes_the_restore_without_repeating_one()
-> Result<()> {
    let mut f = Fixture::start("rs-kill", SimSpec::ha()).await?;
    let s3 = S3Server::start(S3Kind::Minio).await?;
    s3.create_bucket(BUCKET).await?;
    let taken = f.sim.node("esc-a").database()?;
    let source = f.backup_to(&s3, "nightly").await?;
    f.sim
        .node("esc-a")
        .set_database_content(serde_json::json!({"deployments": ["after"]}))?;
    let mark = f.journal_words()?.len();
    f.create_restore("resumed", source, |_| {}).await?;
    let mut killed_in = Vec::new();
    let deadline = Instant::now() + RESTORE * 3;
    loop {
        let s = f
            .restores()
            .get("resumed")
            .await?
            .status
            .unwrap_or_default();
        if restore_done(&s) {
            assert!(restore_succeeded(&s), "{}", failure_reason(&s));
            break;
        }
        if let Some(step) = restore_step(&s)
            && !killed_in.contains(&step)
        {
            killed_in.push(step);
            let name = format!("op-{}", killed_in.len() + 1);
            f.replace_operator(&name).await?;
        }
        if Instant::now() > deadline {
            bail!("not done; killed in {killed_in:?}; status {s:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(f.changes_since(mark)?, HA_ORDER, "killed in {killed_in:?}");
    assert_eq!(f.failovers()?, 0);
    assert_eq!(f.sim.node("esc-a").database()?, taken);
    assert!(killed_in.len() >= 6, "killed in {killed_in:?}");
    s3.stop()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_restore_cancels_it_before_the_first_stop_and_waits_for_its_end_after()
-> Result<()> {
    let f = Fixture::start("rs-delete", SimSpec::ha()).await?;
    let s3 = S3Server::start(S3Kind::Minio).await?;
    s3.create_bucket(BUCKET).await?;
    let source = f.backup_to(&s3, "nightly").await?;
    let master = f.sim.node("esc-a");

    // Transactions in flight: the run waits in EnterMaintenance (ipt_check). Deleted there, it
    // cancels: nothing stopped, the staged file removed, the object released.
    master.set_in_flight(2, None)?;
    let mark = f.journal_words()?.len();
    f.create_restore("early", source.clone(), |_| {}).await?;
    f.wait_restore("early", "in EnterMaintenance", RESTORE, |s| {
        restore_step(s) == Some(RestoreStep::EnterMaintenance)
    })
    .await?;
    f.delete_restore("early").await?;
    assert!(
        !f.changes_since(mark)?.iter().any(|w| w.ends_with(":stop")),
        "{:?}",
        f.changes_since(mark)?
    );
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
    master.set_in_flight(0, None)?;

    // Deleted once the standby is being stopped: the finalizer holds the object until the
    // cluster is back, and the run completes in order.
    f.sim
        .node("esc-b")
        .fault_once("stop", FaultKind::Hang { seconds: 3.0 })?;
    let mark = f.journal_words()?.len();
    f.create_restore("late", source, |s| s.allow_repeat = true)
        .await?;
    f.wait_restore("late", "in StopStandby", RESTORE, |s| {
        restore_step(s) == Some(RestoreStep::StopStandby)
    })
    .await?;
    f.restores()
        .delete("late", &DeleteParams::default())
        .await?;
    // Held while the run goes on; released only once it ended.
    let deadline = Instant::now() + RESTORE;
    let mut last = None;
    while let Some(r) = f.restores().get_opt("late").await? {
        last = r.status;
        ensure!(Instant::now() < deadline, "not released: {last:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen: Vec<RestoreStep> = last
        .map(|s| s.run.steps.iter().map(|st| st.name).collect())
        .unwrap_or_default();
    assert!(
        seen.contains(&RestoreStep::Restore),
        "deleted mid-run, seen {seen:?}"
    );
    assert_eq!(f.changes_since(mark)?, HA_ORDER);
    for n in f.sim.nodes() {
        assert!(n.state()?.all_running(), "{} runs again", n.name());
    }
    s3.stop()?;
    Ok(())
}
