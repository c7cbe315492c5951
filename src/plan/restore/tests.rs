//! The EscRestore step machine, driven through whole runs against a small model of an ESC pair
//! (keepalived's failover rule included), one rule per test.

use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::api::{LocalObjectRef, OpMode, RestoreSource};

const UID: &str = "9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d";
const BASE: &str = "/var/tmp/esc-operator";
const SHA: &str = "1111111111111111111111111111111111111111111111111111111111111111";

fn at(secs: i64) -> Time {
    Time(Timestamp::from_second(1_800_000_000 + secs).unwrap())
}

fn spec() -> EscRestoreSpec {
    EscRestoreSpec {
        cluster_ref: LocalObjectRef {
            name: "prod".into(),
        },
        source: RestoreSource {
            backup_ref: Some(LocalObjectRef {
                name: "nightly".into(),
            }),
            s3: None,
            scp: None,
            sha256: None,
        },
        on_failure: OnRestoreFailure::RestartServices,
        dry_run: false,
        allow_repeat: false,
    }
}

/// One simulated ESC node.
#[derive(Clone, Debug)]
struct Node {
    name: String,
    role: NodeRole,
    running: bool,
}

/// The world a run acts on: the nodes, their history, the artifact; and what it did.
struct World {
    topology: Topology,
    nodes: Vec<Node>,
    version: String,
    artifact_version: String,
    stored_sha: String,
    history: Result<Vec<RestoreRecord>, Problem>,
    free: u64,
    journal: Vec<String>,
    /// A command that fails: ("restore", "esc-a").
    fault: Option<(&'static str, String)>,
    /// Probes answer Unknown for this node (output not understood).
    garbled: Option<String>,
}

impl World {
    fn new(topology: Topology) -> Self {
        let mut nodes = vec![Node {
            name: "esc-a".into(),
            role: if topology == Topology::Ha {
                NodeRole::Master
            } else {
                NodeRole::Standalone
            },
            running: true,
        }];
        if topology == Topology::Ha {
            nodes.push(Node {
                name: "esc-b".into(),
                role: NodeRole::Backup,
                running: true,
            });
        }
        World {
            topology,
            nodes,
            version: "5.10.0.86".into(),
            artifact_version: "5.10.0.86".into(),
            stored_sha: SHA.into(),
            history: Ok(Vec::new()),
            free: 10 << 30,
            journal: Vec::new(),
            fault: None,
            garbled: None,
        }
    }

    fn node(&mut self, name: &str) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.name == name).unwrap()
    }

    fn peer(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name != name)
    }

    fn statuses(&self) -> Vec<EscNodeStatus> {
        self.nodes
            .iter()
            .map(|n| {
                let garbled = self.garbled.as_deref() == Some(n.name.as_str());
                EscNodeStatus {
                    name: n.name.clone(),
                    role: if garbled { NodeRole::Unknown } else { n.role },
                    reachable: true,
                    services: if garbled {
                        ServicesState::Unknown
                    } else if n.running {
                        ServicesState::Running
                    } else {
                        ServicesState::Stopped
                    },
                    stopped_services: Vec::new(),
                    esc_version: Some(self.version.clone()),
                }
            })
            .collect()
    }

    /// keepalived: stopping a running MASTER hands MASTER to a running peer.
    fn stop(&mut self, name: &str) {
        let was_master = self.node(name).role == NodeRole::Master && self.node(name).running;
        self.node(name).running = false;
        if was_master
            && let Some(p) = self.peer(name)
            && self.nodes[p].running
        {
            self.nodes[p].role = NodeRole::Master;
            self.journal
                .push(format!("failover to {}", self.nodes[p].name));
        }
    }

    fn restart(&mut self, name: &str) {
        if self.topology == Topology::Ha {
            let peer_master = self
                .peer(name)
                .is_some_and(|p| self.nodes[p].running && self.nodes[p].role == NodeRole::Master);
            self.node(name).role = if peer_master {
                NodeRole::Backup
            } else {
                NodeRole::Master
            };
        }
        self.node(name).running = true;
    }

    fn fails(&self, command: &str, node: &str) -> bool {
        self.fault
            .as_ref()
            .is_some_and(|(c, n)| *c == command && n == node)
    }
}

/// A run being driven.
struct Run {
    spec: EscRestoreSpec,
    status: EscRestoreStatus,
    world: World,
    cluster_exists: bool,
    /// The EscCluster lists this run as a holder (it follows `holds_maintenance`).
    holder: bool,
    deleting: bool,
    clock: i64,
    events: Vec<PlannedEvent>,
}

impl Run {
    fn new(topology: Topology) -> Self {
        Run {
            spec: spec(),
            status: EscRestoreStatus::default(),
            world: World::new(topology),
            cluster_exists: true,
            holder: false,
            deleting: false,
            clock: 0,
            events: Vec::new(),
        }
    }

    fn cluster(&self) -> Option<ClusterView> {
        let master = self
            .world
            .nodes
            .iter()
            .find(|n| matches!(n.role, NodeRole::Master | NodeRole::Standalone))
            .map(|n| n.name.clone());
        let all_running = self.world.nodes.iter().all(|n| n.running);
        self.cluster_exists.then(|| ClusterView {
            topology: self.world.topology,
            ready: all_running,
            not_ready_message: "services stopped".into(),
            degraded: None,
            standby: self
                .world
                .nodes
                .iter()
                .find(|n| Some(&n.name) != master.as_ref())
                .map(|n| n.name.clone())
                .filter(|_| self.world.topology == Topology::Ha),
            master,
            esc_version: Some(self.world.version.clone()),
            lists_this_holder: self.holder,
            in_maintenance: self.holder,
            maintenance_message: String::new(),
        })
    }

    fn plan_once(&mut self, observed: Option<Observed>) -> RestorePlan {
        let spec = self.spec.clone();
        let previous = self.status.clone();
        let input = RestoreInput {
            namespace: "ops",
            name: "restore-1",
            uid: UID,
            run_base: BASE,
            spec: &spec,
            generation: Some(1),
            previous: &previous,
            cluster: self.cluster(),
            source: Ok(SourceView {
                uri: "s3://esc/backup.tar".into(),
                sha256: SHA.into(),
                backup: Some("nightly".into()),
            }),
            queue_position: 0,
            secrets: Ok(()),
            deleting: self.deleting,
            observed,
            now: at(self.clock),
        };
        let p = plan(&input);
        self.status = p.status.clone();
        self.events.extend(p.events.clone());
        // The EscCluster controller follows the holder the stored status implies.
        self.holder = holds_maintenance(&self.status);
        p
    }

    /// Carries out an action against the world, as the controller would.
    fn act(&mut self, action: RestoreAction) -> Observed {
        let w = &mut self.world;
        match action {
            RestoreAction::Inspect { .. } => Observed::Preflight(PreflightFacts {
                artifact: Ok(ArtifactFacts {
                    size: 4096,
                    stored_sha256: w.stored_sha.clone(),
                    esc_version: w.artifact_version.clone(),
                    cluster: "ops/prod".into(),
                    created_at: at(-3600),
                    database_size: 2048,
                }),
                history: w.history.clone(),
                free_bytes: Ok(w.free),
                nodes: w.statuses(),
            }),
            RestoreAction::Stage { node, path, .. } => {
                w.journal.push(format!("stage {node}"));
                if w.fails("stage", &node) {
                    return Observed::Job(StageView::Failed(Problem::new(
                        "ChecksumMismatch",
                        "bytes differ",
                    )));
                }
                Observed::Job(StageView::Staged {
                    path,
                    artifact_sha256: SHA.into(),
                })
            }
            RestoreAction::Remote {
                node,
                command,
                file,
                ..
            } => {
                let word = match command {
                    RemoteCommand::Stop => "stop",
                    RemoteCommand::Restore => "restore",
                    RemoteCommand::Restart => "restart",
                    other => panic!("unexpected {other:?}"),
                };
                // Idempotent detached runs: a command journals once per step.
                let entry = format!("{word} {node}");
                let step = current_step(&self.status).unwrap();
                let key = format!("{entry} ({step:?})");
                if !w.journal.contains(&key) {
                    w.journal.push(key);
                    if w.fails(word, &node) {
                        return Observed::Remote(RemoteOutcome::Failed(Problem::new(
                            "EscadmFailed",
                            format!("{word} failed"),
                        )));
                    }
                    match command {
                        RemoteCommand::Stop => w.stop(&node),
                        RemoteCommand::Restart => w.restart(&node),
                        _ => assert_eq!(file.as_deref(), Some(staged_path(BASE, UID).as_str())),
                    }
                }
                Observed::Remote(RemoteOutcome::Finished(Vec::new()))
            }
            RestoreAction::CheckNodes => Observed::Nodes(NodesView {
                nodes: w.statuses(),
                op_mode: Some(OpMode::Maintenance),
            }),
            RestoreAction::Record { record } => {
                w.journal.push("record".into());
                if let Ok(h) = &mut w.history {
                    h.push(record);
                }
                Observed::Recorded(Ok(()))
            }
            RestoreAction::Cleanup { files, stop_job } => {
                w.journal.push(format!(
                    "cleanup {} files{}",
                    files.len(),
                    if stop_job.is_some() { " + job" } else { "" }
                ));
                Observed::Cleaned(Ok(()))
            }
        }
    }

    /// Drives the run until it ends or waits with nothing to do.
    fn drive(&mut self) {
        let mut observed = None;
        for _ in 0..200 {
            if finished(&self.status) {
                return;
            }
            let p = self.plan_once(observed.take());
            match p.action {
                Some(a) => observed = Some(self.act(a)),
                None => self.clock += p.requeue.map_or(1, |d| d.as_secs() as i64),
            }
        }
        panic!("the run did not end: {:#?}", self.status);
    }

    fn commands(&self) -> Vec<String> {
        self.world
            .journal
            .iter()
            .map(|e| e.split(" (").next().unwrap().to_owned())
            .collect()
    }

    fn reasons(&self) -> Vec<&str> {
        self.events.iter().map(|e| e.reason.as_str()).collect()
    }
}

#[test]
fn an_ha_restore_stops_backup_before_master_and_restarts_master_first() {
    let mut run = Run::new(Topology::Ha);
    run.drive();
    assert_eq!(
        run.status.run.phase,
        Some(RunPhase::Succeeded),
        "{:#?}",
        run.status
    );
    assert_eq!(
        run.commands(),
        vec![
            "stage esc-a",
            "stop esc-b",
            "stop esc-a",
            "restore esc-a",
            "record",
            "restart esc-a",
            "restart esc-b",
            "cleanup 6 files",
        ]
    );
    assert!(run.status.stopped_nodes.is_empty());
    let fin = run.status.final_state.clone().unwrap();
    assert_eq!(fin.nodes[0].role, NodeRole::Master);
    assert_eq!(fin.nodes[1].role, NodeRole::Backup);
    let names: Vec<_> = run.status.run.steps.iter().map(|s| s.name).collect();
    assert_eq!(names, ORDER.to_vec());
    assert!(
        run.status
            .run
            .maintenance
            .as_ref()
            .unwrap()
            .ended_at
            .is_some()
    );
    assert!(!run.world.journal.iter().any(|e| e.starts_with("failover")));
    assert_eq!(
        run.status.origin,
        Some(ArtifactOrigin {
            cluster: "ops/prod".into(),
            backup: Some("nightly".into()),
            other_cluster: false
        })
    );
}

#[test]
fn a_standalone_restore_skips_the_standby_steps() {
    let mut run = Run::new(Topology::Standalone);
    run.drive();
    assert_eq!(run.status.run.phase, Some(RunPhase::Succeeded));
    assert_eq!(
        run.commands(),
        vec![
            "stage esc-a",
            "stop esc-a",
            "restore esc-a",
            "record",
            "restart esc-a",
            "cleanup 4 files"
        ]
    );
    let skipped: Vec<_> = run
        .status
        .run
        .steps
        .iter()
        .filter(|s| s.state == StepState::Skipped)
        .map(|s| s.name)
        .collect();
    assert_eq!(
        skipped,
        vec![RestoreStep::StopStandby, RestoreStep::RestartStandby]
    );
}

#[test]
fn the_holder_spans_the_stops_the_restore_and_the_restarts_only() {
    let mut run = Run::new(Topology::Ha);
    let mut held_in = Vec::new();
    let mut observed = None;
    for _ in 0..200 {
        if finished(&run.status) {
            break;
        }
        let p = run.plan_once(observed.take());
        if holds_maintenance(&run.status) {
            let step = current_step(&run.status).unwrap();
            if !held_in.contains(&step) {
                held_in.push(step);
            }
        }
        match p.action {
            Some(a) => observed = Some(run.act(a)),
            None => run.clock += 1,
        }
    }
    assert_eq!(
        held_in,
        vec![
            RestoreStep::EnterMaintenance,
            RestoreStep::StopStandby,
            RestoreStep::StopMaster,
            RestoreStep::Restore,
            RestoreStep::RestartMaster,
            RestoreStep::RestartStandby
        ]
    );
}

#[test]
fn refusals_before_anything_changes() {
    type Setup = fn(&mut Run);
    let cases: [(&str, Setup); 7] = [
        ("SchemaDowngrade", |r| {
            r.world.artifact_version = "5.10.1.2".into()
        }),
        ("ChecksumMismatch", |r| r.world.stored_sha = "2".repeat(64)),
        ("VersionUnknown", |r| {
            r.world.artifact_version = "five".into()
        }),
        ("InsufficientSpace", |r| r.world.free = 1 << 20),
        ("RestoreHistoryUnreadable", |r| {
            r.world.history = Err(Problem::new("ParseError", "line 3 not understood"))
        }),
        ("ClusterNotFound", |r| r.cluster_exists = false),
        ("AlreadyRestored", |r| {
            r.world.history = Ok(vec![RestoreRecord {
                restore: "ops/restore-1".into(),
                uid: "an-earlier-object".into(),
                artifact_sha256: "3".repeat(64),
                cluster: "ops/prod".into(),
                restored_at: "2026-11-01T00:00:00Z".into(),
            }])
        }),
    ];
    for (reason, setup) in cases {
        let mut run = Run::new(Topology::Ha);
        setup(&mut run);
        run.drive();
        assert_eq!(run.status.run.phase, Some(RunPhase::Failed), "{reason}");
        assert_eq!(run.status.run.failure.as_ref().unwrap().reason, reason);
        assert_eq!(run.status.run.failure.as_ref().unwrap().step, "Preflight");
        assert!(
            run.commands().is_empty(),
            "{reason}: nothing may run: {:?}",
            run.commands()
        );
        assert!(run.reasons().contains(&reason), "{reason}: an Event");
        assert!(
            run.status
                .run
                .message
                .as_ref()
                .unwrap()
                .contains("Nothing on ESC was changed")
        );
    }
}

#[test]
fn a_newer_or_equal_cluster_is_no_downgrade_and_versions_compare_numerically() {
    let mut run = Run::new(Topology::Standalone);
    run.world.version = "5.10.0.86".into();
    run.world.artifact_version = "5.9.1.20".into();
    run.drive();
    assert_eq!(run.status.run.phase, Some(RunPhase::Succeeded));
}

#[test]
fn the_same_artifact_under_another_name_is_a_repeat_and_allow_repeat_opts_in() {
    let record = RestoreRecord {
        restore: "ops/other-name".into(),
        uid: "old".into(),
        artifact_sha256: SHA.into(),
        cluster: "ops/prod".into(),
        restored_at: "2026-11-01T00:00:00Z".into(),
    };
    let mut run = Run::new(Topology::Ha);
    run.world.history = Ok(vec![record.clone()]);
    run.drive();
    let failure = run.status.run.failure.clone().unwrap();
    assert_eq!(failure.reason, "AlreadyRestored");
    assert!(
        failure.message.contains("spec.allowRepeat: true"),
        "{}",
        failure.message
    );

    let mut run = Run::new(Topology::Ha);
    run.world.history = Ok(vec![record]);
    run.spec.allow_repeat = true;
    run.drive();
    assert_eq!(run.status.run.phase, Some(RunPhase::Succeeded));
    // The new restore is recorded too.
    assert_eq!(run.world.history.as_ref().unwrap().len(), 2);
}

#[test]
fn a_dry_run_reports_the_plan_and_changes_nothing() {
    let mut run = Run::new(Topology::Ha);
    run.spec.dry_run = true;
    run.drive();
    assert_eq!(run.status.run.phase, Some(RunPhase::Succeeded));
    assert!(run.commands().is_empty(), "{:?}", run.commands());
    let dry = crate::plan::conditions::find(&run.status.run.conditions, DRY_RUN).unwrap();
    assert_eq!(dry.status, "True");
    let ready = crate::plan::conditions::find(&run.status.run.conditions, READY).unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "DryRun")
    );
    let plan: Vec<_> = run
        .status
        .plan
        .iter()
        .map(|p| (p.step, p.nodes.join(",")))
        .collect();
    assert_eq!(plan[3], (RestoreStep::StopStandby, "esc-b".to_owned()));
    assert_eq!(plan[4], (RestoreStep::StopMaster, "esc-a".to_owned()));
    assert_eq!(plan[6], (RestoreStep::RestartMaster, "esc-a".to_owned()));
    assert_eq!(plan[7], (RestoreStep::RestartStandby, "esc-b".to_owned()));
    assert!(
        run.status
            .run
            .message
            .as_ref()
            .unwrap()
            .contains("StopStandby(esc-b) → StopMaster(esc-a)")
    );
}

#[test]
fn a_failed_stage_cleans_up_before_any_stop() {
    let mut run = Run::new(Topology::Ha);
    run.world.fault = Some(("stage", "esc-a".into()));
    run.drive();
    assert_eq!(run.status.run.failure.as_ref().unwrap().step, "Stage");
    assert_eq!(run.commands(), vec!["stage esc-a", "cleanup 1 files + job"]);
    assert!(run.status.stopped_nodes.is_empty());
}

#[test]
fn a_failed_restore_restarts_master_then_standby_and_reports_the_state() {
    let mut run = Run::new(Topology::Ha);
    run.world.fault = Some(("restore", "esc-a".into()));
    run.drive();
    assert_eq!(run.status.run.phase, Some(RunPhase::Failed));
    assert_eq!(run.status.run.failure.as_ref().unwrap().step, "Restore");
    assert_eq!(
        run.commands(),
        vec![
            "stage esc-a",
            "stop esc-b",
            "stop esc-a",
            "restore esc-a",
            "restart esc-a",
            "restart esc-b",
            "cleanup 6 files + job"
        ]
    );
    assert!(run.status.stopped_nodes.is_empty());
    let fin = run.status.final_state.clone().unwrap();
    assert!(
        fin.nodes
            .iter()
            .all(|n| n.services == ServicesState::Running)
    );
    assert!(
        !run.world.history.as_ref().unwrap().iter().any(|_| true),
        "not recorded"
    );
}

#[test]
fn leave_stopped_leaves_both_nodes_down_and_says_so() {
    let mut run = Run::new(Topology::Ha);
    run.spec.on_failure = OnRestoreFailure::LeaveStopped;
    run.world.fault = Some(("restore", "esc-a".into()));
    run.drive();
    assert_eq!(run.status.run.phase, Some(RunPhase::Failed));
    assert_eq!(
        run.commands(),
        vec![
            "stage esc-a",
            "stop esc-b",
            "stop esc-a",
            "restore esc-a",
            "cleanup 4 files + job"
        ]
    );
    assert_eq!(run.status.stopped_nodes, vec!["esc-b", "esc-a"]);
    let message = run.status.run.message.clone().unwrap();
    assert!(message.contains("STOPPED on esc-b, esc-a"), "{message}");
    assert!(run.reasons().contains(&"LeftStopped"));
    assert!(!holds_maintenance(&run.status));
}

#[test]
fn a_failed_master_restart_does_not_start_the_standby_alone() {
    let mut run = Run::new(Topology::Ha);
    run.world.fault = Some(("restart", "esc-a".into()));
    run.drive();
    assert_eq!(
        run.status.run.failure.as_ref().unwrap().step,
        "RestartMaster"
    );
    assert!(!run.commands().contains(&"restart esc-b".to_owned()));
    assert_eq!(run.status.stopped_nodes, vec!["esc-b", "esc-a"]);
}

#[test]
fn a_failover_while_stopping_the_standby_stops_the_procedure() {
    let mut run = Run::new(Topology::Ha);
    // The standby's stop does nothing, and the master goes away: as if the nodes swapped.
    run.world.fault = None;
    let mut observed = None;
    for _ in 0..200 {
        if finished(&run.status) {
            break;
        }
        let p = run.plan_once(observed.take());
        if current_step(&run.status) == Some(RestoreStep::StopStandby)
            && matches!(p.action, Some(RestoreAction::CheckNodes))
        {
            // Someone stopped the master meanwhile: keepalived promoted the standby.
            run.world.node("esc-b").running = true;
            run.world.node("esc-b").role = NodeRole::Master;
            run.world.node("esc-a").running = false;
        }
        match p.action {
            Some(a) => observed = Some(run.act(a)),
            None => run.clock += 1,
        }
    }
    let failure = run.status.run.failure.clone().unwrap();
    assert_eq!(failure.reason, "FailoverObserved", "{failure:?}");
    assert!(!run.commands().contains(&"stop esc-a".to_owned()));
    assert!(!run.commands().contains(&"restore esc-a".to_owned()));
}

#[test]
fn unknown_probe_output_never_counts_as_stopped() {
    let mut run = Run::new(Topology::Ha);
    let mut observed = None;
    for _ in 0..2000 {
        if finished(&run.status) {
            break;
        }
        let p = run.plan_once(observed.take());
        if current_step(&run.status) == Some(RestoreStep::StopStandby) {
            run.world.garbled = Some("esc-b".into());
        }
        match p.action {
            Some(a) => observed = Some(run.act(a)),
            None => run.clock += p.requeue.map_or(1, |d| d.as_secs() as i64),
        }
    }
    assert_eq!(
        run.status.run.failure.as_ref().unwrap().reason,
        "StopNotVerified"
    );
    assert!(
        !run.commands().contains(&"stop esc-a".to_owned()),
        "{:?}",
        run.commands()
    );
}

#[test]
fn deleting_cancels_before_the_first_stop_and_not_after() {
    let mut run = Run::new(Topology::Ha);
    run.deleting = false;
    let mut observed = None;
    // Up to the staging: then deleted.
    for _ in 0..50 {
        let p = run.plan_once(observed.take());
        if current_step(&run.status) == Some(RestoreStep::EnterMaintenance) {
            break;
        }
        if let Some(a) = p.action {
            observed = Some(run.act(a));
        }
    }
    run.deleting = true;
    run.drive();
    assert_eq!(run.status.run.failure.as_ref().unwrap().reason, "Cancelled");
    assert!(run.status.stopped_nodes.is_empty());
    assert!(!run.commands().iter().any(|c| c.starts_with("stop")));

    let mut run = Run::new(Topology::Ha);
    let mut observed = None;
    for _ in 0..50 {
        let p = run.plan_once(observed.take());
        if current_step(&run.status) == Some(RestoreStep::StopMaster) {
            break;
        }
        match p.action {
            Some(a) => observed = Some(run.act(a)),
            None => run.clock += 1,
        }
    }
    run.deleting = true;
    run.drive();
    assert_eq!(
        run.status.run.phase,
        Some(RunPhase::Succeeded),
        "runs to its end"
    );
    assert!(!cancellable(&run.status));
}

#[test]
fn a_restart_of_the_operator_after_any_step_repeats_no_command() {
    // An operator killed right after it stored a new step and sent that step's first command:
    // the answer is lost, and the next operator starts from the stored status alone. It must
    // ask again (polling the idempotent detached runs), never start a command twice.
    let mut run = Run::new(Topology::Ha);
    let mut observed = None;
    let mut steps_seen = 0;
    for _ in 0..400 {
        if finished(&run.status) {
            break;
        }
        let p = run.plan_once(observed.take());
        let restarted = run.status.run.steps.len() != steps_seen;
        steps_seen = run.status.run.steps.len();
        match p.action {
            Some(a) => {
                let answer = run.act(a);
                observed = (!restarted).then_some(answer);
            }
            None => run.clock += 1,
        }
    }
    assert_eq!(
        run.status.run.phase,
        Some(RunPhase::Succeeded),
        "{:#?}",
        run.status
    );
    let mut seen = std::collections::HashSet::new();
    for c in &run.world.journal {
        if c.starts_with("stop") || c.starts_with("restore") || c.starts_with("restart") {
            assert!(
                seen.insert(c.clone()),
                "{c} ran twice: {:?}",
                run.world.journal
            );
        }
    }
}

#[test]
fn names_are_stable_and_short() {
    assert_eq!(
        run_name(UID, RestoreStep::StopStandby),
        "esc-restore-9a8b7c6d5e4f-stop-standby"
    );
    assert_eq!(
        staged_path("/var/tmp/esc-operator/", UID),
        "/var/tmp/esc-operator/esc-restore-9a8b7c6d5e4f-stage/esc-db.tar.bz2"
    );
    assert_eq!(
        stage_job_name(&"r".repeat(80), UID),
        format!("{}-stage-9a8b7", "r".repeat(40))
    );
}
