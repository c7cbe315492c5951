//! The EscBackup step machine, driven through whole runs with the observations a controller
//! would feed it, one rule per test.

use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::api::{BackupInclude, BackupTarget, DeletionPolicy, LocalObjectRef, ScpLocation};

const UID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
const BASE: &str = "/var/tmp/esc-operator";

fn at(secs: i64) -> Time {
    Time(Timestamp::from_second(1_800_000_000 + secs).unwrap())
}

fn spec(logs: bool, after: AfterBackup) -> EscBackupSpec {
    EscBackupSpec {
        cluster_ref: LocalObjectRef {
            name: "prod".into(),
        },
        target: BackupTarget {
            s3: None,
            scp: Some(ScpLocation {
                host: "backup.example".into(),
                port: 22,
                user: "backup".into(),
                path: "/srv/esc".into(),
                credentials_secret_ref: LocalObjectRef { name: "s".into() },
                known_hosts_secret_ref: LocalObjectRef { name: "k".into() },
            }),
        },
        include: BackupInclude {
            logs,
            dynamic_mapping: true,
        },
        ipt_check: None,
        deletion_policy: DeletionPolicy::Retain,
        after_backup: after,
    }
}

fn cluster(topology: Topology) -> ClusterView {
    ClusterView {
        topology,
        ready: true,
        not_ready_message: String::new(),
        degraded: None,
        master: Some("esc-a".into()),
        standby: (topology == Topology::Ha).then(|| "esc-b".into()),
        esc_version: Some("5.10.0.86".into()),
        lists_this_holder: false,
        in_maintenance: false,
        maintenance_message: String::new(),
    }
}

/// A run being driven: the stored status and the world around it.
struct Run {
    spec: EscBackupSpec,
    status: EscBackupStatus,
    cluster: Option<ClusterView>,
    queue: u32,
    secrets: Result<(), Problem>,
    deleting: bool,
    clock: i64,
}

impl Run {
    fn new(spec: EscBackupSpec, cluster: Option<ClusterView>) -> Self {
        Run {
            spec,
            status: EscBackupStatus::default(),
            cluster,
            queue: 0,
            secrets: Ok(()),
            deleting: false,
            clock: 0,
        }
    }

    /// One plan; its status becomes the stored one.
    fn plan(&mut self, observed: Option<Observed>) -> BackupPlan {
        self.clock += 1;
        let input = BackupInput {
            name: "nightly",
            uid: UID,
            run_base: BASE,
            spec: &self.spec,
            generation: Some(1),
            previous: &self.status,
            cluster: self.cluster.clone(),
            queue_position: self.queue,
            secrets: self.secrets.clone(),
            deleting: self.deleting,
            observed,
            now: at(self.clock),
        };
        let plan = plan(&input);
        // Pure: the same input gives the same plan.
        assert_eq!(plan, super::plan(&input));
        self.status = plan.status.clone();
        plan
    }

    fn step(&self) -> Option<BackupStep> {
        current_step(&self.status)
    }

    fn steps(&self) -> Vec<(BackupStep, StepState)> {
        self.status
            .steps
            .iter()
            .map(|s| (s.name, s.state))
            .collect()
    }

    fn holds(&self) -> bool {
        holds_maintenance(&self.status, self.deleting)
    }

    /// What the EscCluster controller does with the holder: lists it (and enters maintenance)
    /// while the run holds, drops it otherwise.
    fn cluster_follows_holder(&mut self) {
        let holds = self.holds();
        if let Some(c) = &mut self.cluster {
            c.lists_this_holder = holds;
            c.in_maintenance = holds;
        }
    }
}

fn finished(files: &[(&str, NodeFileKind, &str)]) -> Option<Observed> {
    Some(Observed::Remote(RemoteOutcome::Finished(
        files
            .iter()
            .map(|(node, kind, path)| NodeFile {
                node: (*node).into(),
                kind: *kind,
                path: (*path).into(),
            })
            .collect(),
    )))
}

fn stored(size: u64, sha: &str) -> StoredArtifact {
    StoredArtifact {
        uri: "sftp://backup@backup.example:22/srv/esc/nightly.tar".into(),
        size,
        sha256: sha.into(),
    }
}

const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn remote(node: &str, step: BackupStep, command: RemoteCommand) -> Option<BackupAction> {
    Some(BackupAction::Remote {
        node: node.into(),
        run: run_name(UID, step),
        command,
    })
}

/// Drives a run from creation to the upload; returns the run in `Upload`.
fn to_upload(run: &mut Run, ha: bool) {
    let p = run.plan(None);
    assert_eq!(run.status.phase, Some(RunPhase::Running));
    if ha {
        assert_eq!(
            p.action,
            remote(
                "esc-b",
                BackupStep::CollectStandbyLogs,
                RemoteCommand::LogCollect
            )
        );
        assert!(
            !run.holds(),
            "standby logs are collected outside the window"
        );
        run.plan(Some(Observed::Remote(RemoteOutcome::Running)));
        assert_eq!(run.step(), Some(BackupStep::CollectStandbyLogs));
        run.plan(finished(&[(
            "esc-b",
            NodeFileKind::Logs,
            "/var/tmp/esc_log-1.tar.bz2",
        )]));
    } else {
        run.plan(None);
    }
    assert_eq!(run.step(), Some(BackupStep::EnterMaintenance));
    assert!(run.holds());
    // Waits until the cluster shows the holder and maintenance.
    let p = run.plan(None);
    assert_eq!(
        (p.action, run.step()),
        (None, Some(BackupStep::EnterMaintenance))
    );
    run.cluster_follows_holder();
    let p = run.plan(None);
    assert_eq!(run.step(), Some(BackupStep::BackupDatabase));
    assert_eq!(
        p.action,
        remote("esc-a", BackupStep::BackupDatabase, RemoteCommand::Backup)
    );
    assert!(run.holds(), "the holder covers escadm backup");
    run.plan(finished(&[(
        "esc-a",
        NodeFileKind::Database,
        "/var/tmp/esc-operator/x/esc-db.tar.bz2",
    )]));
    assert_eq!(run.step(), Some(BackupStep::ExitMaintenance));
    assert!(!run.holds(), "released the moment the backup ended");
    let p = run.plan(None);
    assert_eq!(p.action, None, "waits for the cluster to drop the holder");
    run.cluster_follows_holder();
    let p = run.plan(None);
    let window = run.status.maintenance.clone().unwrap();
    assert!(window.ended_at.is_some() && window.seconds.is_some());
    if run.spec.include.logs {
        assert_eq!(
            p.action,
            remote(
                "esc-a",
                BackupStep::CollectMasterLogs,
                RemoteCommand::LogCollect
            )
        );
        run.plan(finished(&[(
            "esc-a",
            NodeFileKind::Logs,
            "/var/tmp/esc_log-2.tar.bz2",
        )]));
    }
    assert_eq!(run.step(), Some(BackupStep::Upload));
}

#[test]
fn an_ha_backup_runs_the_manuals_order_with_one_window_around_escadm_backup() {
    let mut run = Run::new(spec(true, AfterBackup::Resume), Some(cluster(Topology::Ha)));
    to_upload(&mut run, true);
    let p = run.plan(None);
    let job = mover_job_name("nightly", UID);
    assert_eq!(p.action, Some(BackupAction::Mover { name: job.clone() }));
    assert_eq!(run.status.mover_job.as_deref(), Some(job.as_str()));
    run.plan(Some(Observed::Job(JobView::Running(Some(
        TransferProgress {
            bytes: 10,
            total_bytes: Some(100),
            bytes_per_second: Some(5),
        },
    )))));
    assert_eq!(run.status.progress.as_ref().unwrap().bytes, 10);
    let p = run.plan(Some(Observed::Job(JobView::Succeeded(stored(100, SHA)))));
    assert_eq!(p.action, Some(BackupAction::Verify));
    assert_ne!(
        run.status.phase,
        Some(RunPhase::Succeeded),
        "not before verification"
    );
    let p = run.plan(Some(Observed::Stored(Ok(stored(100, SHA)))));
    let Some(BackupAction::Cleanup {
        files,
        stop_mover,
        store_leftovers_since,
    }) = p.action
    else {
        panic!("{:?}", p.action)
    };
    assert_eq!(stop_mover, None);
    // A mover that succeeded left nothing in the store to look for.
    assert_eq!(store_leftovers_since, None);
    let kinds: Vec<_> = files.iter().map(|f| (f.node.as_str(), f.kind)).collect();
    assert_eq!(
        kinds,
        [
            ("esc-b", NodeFileKind::RunDirectory),
            ("esc-b", NodeFileKind::Logs),
            ("esc-a", NodeFileKind::RunDirectory),
            ("esc-a", NodeFileKind::Database),
            ("esc-a", NodeFileKind::RunDirectory),
            ("esc-a", NodeFileKind::Logs),
        ]
    );
    let p = run.plan(Some(Observed::Cleaned(Ok(()))));
    assert_eq!(run.status.phase, Some(RunPhase::Succeeded));
    assert_eq!(p.action, None);
    let artifact = run.status.artifact.clone().unwrap();
    assert_eq!((artifact.size, artifact.sha256.as_str()), (100, SHA));
    assert_eq!(artifact.esc_version, "5.10.0.86");
    use BackupStep::*;
    use StepState::*;
    assert_eq!(
        run.steps(),
        [
            (Preflight, Succeeded),
            (CollectStandbyLogs, Succeeded),
            (EnterMaintenance, Succeeded),
            (BackupDatabase, Succeeded),
            (ExitMaintenance, Succeeded),
            (CollectMasterLogs, Succeeded),
            (Upload, Succeeded),
            (Verify, Succeeded),
            (Cleanup, Succeeded),
            (StopStandby, Skipped),
            (StopMaster, Skipped),
        ]
    );
    let types = |s: &str| super::super::conditions::is_true(&run.status.conditions, s);
    assert!(types(COMPLETE) && types(READY));
    assert!(!types(RECONCILING) && !types(STALLED) && !types(FAILED));
    // Over: nothing more, ever.
    let again = run.plan(None);
    assert_eq!((again.action, again.events), (None, vec![]));
}

#[test]
fn each_step_is_announced_by_an_event() {
    let mut run = Run::new(spec(true, AfterBackup::Resume), Some(cluster(Topology::Ha)));
    let p = run.plan(None);
    let reasons: Vec<&str> = p.events.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(reasons, ["Started", "CollectStandbyLogs"]);
    assert!(p.events[1].note.contains("esc-b"), "{:?}", p.events[1]);
    let p = run.plan(finished(&[(
        "esc-b",
        NodeFileKind::Logs,
        "/var/tmp/esc_log-1.tar.bz2",
    )]));
    let reasons: Vec<&str> = p.events.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(reasons, ["EnterMaintenance"]);
}

#[test]
fn a_standalone_backup_without_logs_skips_the_log_steps() {
    let mut run = Run::new(
        spec(false, AfterBackup::Resume),
        Some(cluster(Topology::Standalone)),
    );
    let p = run.plan(None);
    assert_eq!(run.step(), Some(BackupStep::EnterMaintenance));
    assert_eq!(p.action, None);
    use BackupStep::*;
    use StepState::*;
    assert_eq!(
        run.steps(),
        [
            (Preflight, Succeeded),
            (CollectStandbyLogs, Skipped),
            (EnterMaintenance, Running)
        ]
    );
}

#[test]
fn stop_services_stops_the_standby_then_the_master_after_a_verified_backup() {
    let mut run = Run::new(
        spec(true, AfterBackup::StopServices),
        Some(cluster(Topology::Ha)),
    );
    to_upload(&mut run, true);
    run.plan(None);
    run.plan(Some(Observed::Job(JobView::Succeeded(stored(7, SHA)))));
    run.plan(Some(Observed::Stored(Ok(stored(7, SHA)))));
    let p = run.plan(Some(Observed::Cleaned(Ok(()))));
    assert_eq!(
        p.action,
        remote("esc-b", BackupStep::StopStandby, RemoteCommand::Stop)
    );
    let p = run.plan(finished(&[]));
    assert_eq!(
        p.action,
        remote("esc-a", BackupStep::StopMaster, RemoteCommand::Stop)
    );
    run.plan(finished(&[]));
    assert_eq!(run.status.phase, Some(RunPhase::Succeeded));
}

#[test]
fn runs_on_one_cluster_queue_and_start_in_turn() {
    let mut run = Run::new(spec(true, AfterBackup::Resume), Some(cluster(Topology::Ha)));
    run.queue = 2;
    let p = run.plan(None);
    assert_eq!(run.status.phase, Some(RunPhase::Pending));
    assert_eq!(run.status.queue_position, Some(2));
    assert!(run.status.message.as_deref().unwrap().contains("2 earlier"));
    assert!(p.action.is_none() && p.requeue.is_some() && run.status.steps.is_empty());
    assert!(!run.holds());
    run.queue = 0;
    run.plan(None);
    assert_eq!(run.status.phase, Some(RunPhase::Running));
    assert_eq!(run.status.queue_position, None);
}

#[test]
fn preflight_fails_fast_on_a_cluster_that_cannot_be_backed_up() {
    let degraded = ClusterView {
        degraded: Some("two MASTERs: esc-a, esc-b".into()),
        ..cluster(Topology::Ha)
    };
    let not_ready = ClusterView {
        ready: false,
        not_ready_message: "esc-b unreachable".into(),
        ..cluster(Topology::Ha)
    };
    let masterless = ClusterView {
        master: None,
        ..cluster(Topology::Standalone)
    };
    let cases: [(Option<ClusterView>, Result<(), Problem>, &str); 5] = [
        (None, Ok(()), "ClusterNotFound"),
        (Some(degraded), Ok(()), "ClusterDegraded"),
        (Some(not_ready), Ok(()), "ClusterNotReady"),
        (Some(masterless), Ok(()), "MasterUnknown"),
        (
            Some(cluster(Topology::Ha)),
            Err(Problem::new("SecretNotFound", "Secret s3-creds not found")),
            "SecretNotFound",
        ),
    ];
    for (view, secrets, reason) in cases {
        let mut run = Run::new(spec(true, AfterBackup::Resume), view);
        run.secrets = secrets;
        let p = run.plan(None);
        // Nothing was made on the nodes: cleanup has nothing to do and the run ends at once.
        assert_eq!(p.action, None, "{reason}");
        assert_eq!(run.status.phase, Some(RunPhase::Failed), "{reason}");
        let failure = run.status.failure.clone().unwrap();
        assert_eq!(
            (failure.step.as_str(), failure.reason.as_str()),
            ("Preflight", reason)
        );
        assert!(p.events.iter().any(|e| e.warning && e.reason == reason));
        assert!(run.status.message.as_deref().unwrap().contains(reason));
        let types = |s: &str| super::super::conditions::is_true(&run.status.conditions, s);
        // Stalled: a pipeline waiting on this backup fails now, not at its timeout.
        assert!(types(FAILED) && types(STALLED), "{reason}");
        assert!(!types(READY) && !types(RECONCILING), "{reason}");
        let stalled = super::super::conditions::find(&run.status.conditions, STALLED).unwrap();
        assert_eq!(stalled.reason, reason);
    }
}

#[test]
fn a_failed_backup_releases_the_holder_cleans_up_then_fails() {
    let mut run = Run::new(
        spec(false, AfterBackup::Resume),
        Some(cluster(Topology::Standalone)),
    );
    run.plan(None);
    run.cluster_follows_holder();
    run.plan(None);
    assert_eq!(run.step(), Some(BackupStep::BackupDatabase));
    let p = run.plan(Some(Observed::Remote(RemoteOutcome::Failed(Problem::new(
        "DiskFull",
        "escadm backup: No space left on device",
    )))));
    assert!(!run.holds(), "a failed run holds nothing");
    assert_eq!(run.step(), Some(BackupStep::Cleanup));
    let Some(BackupAction::Cleanup { files, .. }) = p.action else {
        panic!("{:?}", p.action)
    };
    assert_eq!(files.len(), 1, "the backup's run directory: {files:?}");
    assert_eq!(
        files[0].path,
        format!("{BASE}/{}", run_name(UID, BackupStep::BackupDatabase))
    );
    run.plan(Some(Observed::Cleaned(Ok(()))));
    assert_eq!(run.status.phase, Some(RunPhase::Failed));
    let message = run.status.message.clone().unwrap();
    assert!(
        message.contains("BackupDatabase") && message.contains("DiskFull"),
        "{message}"
    );
    assert!(message.contains("returned to operation"), "{message}");
    assert!(run.status.maintenance.as_ref().unwrap().ended_at.is_some());
}

#[test]
fn a_mover_failure_stops_the_job_and_keeps_the_movers_reason() {
    let mut run = Run::new(spec(true, AfterBackup::Resume), Some(cluster(Topology::Ha)));
    to_upload(&mut run, true);
    run.plan(None);
    let p = run.plan(Some(Observed::Job(JobView::Failed(Problem::new(
        "NoSuchBucket",
        "bucket esc-backups does not exist",
    )))));
    let Some(BackupAction::Cleanup {
        stop_mover,
        store_leftovers_since,
        ..
    }) = p.action
    else {
        panic!("{:?}", p.action)
    };
    assert_eq!(stop_mover, Some(mover_job_name("nightly", UID)));
    // What a killed mover may have left in the store (it cannot abort its own upload after an
    // OOM kill) is looked for from the Upload step's start, less the allowed clock skew.
    let upload_started = run
        .status
        .steps
        .iter()
        .find(|s| s.name == BackupStep::Upload)
        .and_then(|s| s.started_at.clone())
        .unwrap();
    assert_eq!(
        store_leftovers_since.map(|t| upload_started.0.as_second() - t.0.as_second()),
        Some(300)
    );
    run.plan(Some(Observed::Cleaned(Ok(()))));
    assert_eq!(run.status.phase, Some(RunPhase::Failed));
    assert_eq!(run.status.failure.as_ref().unwrap().reason, "NoSuchBucket");
    assert_eq!(run.status.artifact, None);
}

#[test]
fn never_succeeded_unless_the_stored_artifact_matches() {
    for (read_back, reason) in [
        (Ok(stored(99, SHA)), "SizeMismatch"),
        (Ok(stored(100, &"0".repeat(64))), "ChecksumMismatch"),
        (
            Err(Problem::new("NotFound", "no object at the key")),
            "NotFound",
        ),
    ] {
        let mut run = Run::new(
            spec(false, AfterBackup::Resume),
            Some(cluster(Topology::Standalone)),
        );
        to_upload(&mut run, false);
        run.plan(None);
        run.plan(Some(Observed::Job(JobView::Succeeded(stored(100, SHA)))));
        run.plan(Some(Observed::Stored(read_back)));
        run.plan(Some(Observed::Cleaned(Ok(()))));
        assert_eq!(run.status.phase, Some(RunPhase::Failed), "{reason}");
        assert_eq!(run.status.failure.as_ref().unwrap().reason, reason);
    }
}

#[test]
fn deleting_a_running_backup_cancels_it_through_cleanup() {
    let mut run = Run::new(spec(true, AfterBackup::Resume), Some(cluster(Topology::Ha)));
    run.plan(None);
    assert_eq!(run.step(), Some(BackupStep::CollectStandbyLogs));
    run.deleting = true;
    let p = run.plan(None);
    assert!(matches!(p.action, Some(BackupAction::Cleanup { .. })));
    run.plan(Some(Observed::Cleaned(Ok(()))));
    assert_eq!(run.status.phase, Some(RunPhase::Failed));
    assert_eq!(run.status.failure.as_ref().unwrap().reason, "Cancelled");

    // Deleted while still pending: nothing to undo.
    let mut pending = Run::new(spec(true, AfterBackup::Resume), Some(cluster(Topology::Ha)));
    pending.queue = 1;
    pending.plan(None);
    pending.deleting = true;
    let p = pending.plan(None);
    assert_eq!(
        (p.action, pending.status.phase),
        (None, Some(RunPhase::Failed))
    );
}

#[test]
fn a_deleted_run_holds_no_maintenance() {
    let mut run = Run::new(
        spec(false, AfterBackup::Resume),
        Some(cluster(Topology::Standalone)),
    );
    run.plan(None);
    assert!(holds_maintenance(&run.status, false));
    assert!(!holds_maintenance(&run.status, true));
}

#[test]
fn a_restarted_operator_resumes_the_step_it_was_in() {
    let mut run = Run::new(
        spec(false, AfterBackup::Resume),
        Some(cluster(Topology::Standalone)),
    );
    run.plan(None);
    run.cluster_follows_holder();
    let first = run.plan(None);
    // The status was stored, then the operator died before or after starting the command:
    // planning again from it asks for the same (idempotent) run, never a new one.
    let stored = run.status.clone();
    let again = run.plan(None);
    assert_eq!(again.action, first.action);
    assert_eq!(run.status.steps, stored.steps);
    // In the upload: the same Job, adopted by name.
    to_upload_from_backup(&mut run);
    let job = run.plan(None).action;
    let job_again = run.plan(None).action;
    assert_eq!(job, job_again);
}

fn to_upload_from_backup(run: &mut Run) {
    run.plan(finished(&[]));
    run.cluster_follows_holder();
    run.plan(None);
    assert_eq!(run.step(), Some(BackupStep::Upload));
}

#[test]
fn entering_maintenance_gives_up_after_its_timeout_with_the_clusters_reason() {
    let mut run = Run::new(
        spec(false, AfterBackup::Resume),
        Some(cluster(Topology::Standalone)),
    );
    run.plan(None);
    run.cluster.as_mut().unwrap().maintenance_message =
        "ESC refused: 3 transactions in flight (InFlightTransactions)".into();
    run.clock += MAINTENANCE_ENTRY_TIMEOUT.as_secs() as i64 - 5;
    run.plan(None);
    assert_eq!(
        run.step(),
        Some(BackupStep::EnterMaintenance),
        "still waiting"
    );
    run.clock += 10;
    run.plan(None);
    let failure = run.status.failure.clone().unwrap();
    assert_eq!(failure.reason, "MaintenanceNotEntered");
    assert!(
        failure.message.contains("InFlightTransactions"),
        "{}",
        failure.message
    );
    assert_eq!(run.status.phase, Some(RunPhase::Failed), "nothing to clean");
}

#[test]
fn a_holder_the_cluster_keeps_does_not_stall_the_backup() {
    let mut run = Run::new(
        spec(false, AfterBackup::Resume),
        Some(cluster(Topology::Standalone)),
    );
    run.plan(None);
    run.cluster_follows_holder();
    run.plan(None);
    run.plan(finished(&[]));
    assert_eq!(run.step(), Some(BackupStep::ExitMaintenance));
    // The cluster still lists the holder (ESC would not return to operation).
    run.clock += MAINTENANCE_EXIT_WAIT.as_secs() as i64;
    let p = run.plan(None);
    assert!(p.events.iter().any(|e| e.reason == "MaintenanceStillHeld"));
    assert_eq!(run.step(), Some(BackupStep::Upload));
}

/// Fail closed: a status the machine cannot have written is not resumed as if it were fine.
#[test]
fn a_running_status_without_a_running_step_fails_instead_of_guessing() {
    let mut run = Run::new(
        spec(false, AfterBackup::Resume),
        Some(cluster(Topology::Standalone)),
    );
    run.status.phase = Some(RunPhase::Running);
    run.status.steps = vec![StepStatus {
        name: BackupStep::BackupDatabase,
        state: StepState::Succeeded,
        started_at: Some(at(0)),
        finished_at: Some(at(0)),
        message: None,
    }];
    run.plan(None);
    assert_eq!(run.status.phase, Some(RunPhase::Failed));
    assert_eq!(run.status.failure.unwrap().reason, "InconsistentStatus");
}

#[test]
fn run_and_job_names_are_stable_short_and_distinct() {
    let names: Vec<String> = [
        BackupStep::CollectStandbyLogs,
        BackupStep::BackupDatabase,
        BackupStep::CollectMasterLogs,
        BackupStep::StopStandby,
        BackupStep::StopMaster,
    ]
    .iter()
    .map(|s| run_name(UID, *s))
    .collect();
    let unique: std::collections::BTreeSet<_> = names.iter().collect();
    assert_eq!(unique.len(), names.len());
    for n in &names {
        assert!(crate::esc::RunDir::new(&crate::esc::RemotePath::new(BASE).unwrap(), n).is_ok());
    }
    let job = mover_job_name(&"a".repeat(253), UID);
    assert!(job.len() <= 52, "{job}");
    assert_eq!(job, mover_job_name(&"a".repeat(253), UID));
}

#[test]
fn an_unreachable_node_is_asked_again_until_the_steps_time_is_up() {
    let mut run = Run::new(spec(true, AfterBackup::Resume), Some(cluster(Topology::Ha)));
    run.plan(None);
    assert_eq!(run.step(), Some(BackupStep::CollectStandbyLogs));
    let unreachable = || {
        Some(Observed::Remote(RemoteOutcome::Unreachable(Problem::new(
            "ConnectTimeout",
            "esc-b:22 did not answer",
        ))))
    };
    let p = run.plan(unreachable());
    assert_eq!(run.step(), Some(BackupStep::CollectStandbyLogs));
    assert!(p.requeue.is_some() && p.action.is_none());
    run.clock += step_timeout(RemoteCommand::LogCollect).as_secs() as i64;
    run.plan(unreachable());
    let failure = run.status.failure.clone().unwrap();
    assert_eq!(failure.reason, "StepTimedOut");
    assert!(
        failure.message.contains("did not answer"),
        "{}",
        failure.message
    );
    // A run stuck on the node times out the same way.
    let mut stuck = Run::new(spec(true, AfterBackup::Resume), Some(cluster(Topology::Ha)));
    stuck.plan(None);
    stuck.clock += step_timeout(RemoteCommand::LogCollect).as_secs() as i64;
    stuck.plan(Some(Observed::Remote(RemoteOutcome::Running)));
    assert_eq!(stuck.status.failure.unwrap().reason, "StepTimedOut");
}
