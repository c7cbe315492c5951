//! The EscCluster decisions, one rule per test, from escadm text as the simulator prints it.

use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::api::{EscNodeSpec, LocalObjectRef, MaintenanceSpec, SshSpec};
use crate::esc::parse::{parse_op_mode, parse_status};

fn at(secs: i64) -> Time {
    Time(Timestamp::from_second(1_800_000_000 + secs).unwrap())
}

fn spec(topology: Topology) -> EscClusterSpec {
    let names: &[&str] = match topology {
        Topology::Standalone => &["esc-a"],
        Topology::Ha => &["esc-a", "esc-b"],
    };
    EscClusterSpec {
        topology,
        nodes: names
            .iter()
            .map(|n| EscNodeSpec {
                name: (*n).into(),
                host: "127.0.0.2".into(),
                port: 22,
            })
            .collect(),
        ssh: SshSpec {
            user: "admin".into(),
            credentials_secret_ref: LocalObjectRef { name: "c".into() },
            known_hosts_secret_ref: LocalObjectRef { name: "k".into() },
            sudo: false,
            connect_timeout: std::time::Duration::from_secs(10).into(),
        },
        maintenance: MaintenanceSpec::default(),
        probe_interval: std::time::Duration::from_secs(60).into(),
    }
}

const SERVICES: [&str; 3] = ["keepalived", "pgsql", "escmanager"];

fn status_text(role: &str, running: bool) -> String {
    let mut out = String::new();
    for (i, s) in SERVICES.iter().enumerate() {
        if running {
            out += &format!("{s} (pid {}) is running\n", 100 + i);
        } else {
            out += &format!("{s} is stopped\n");
        }
    }
    out += "ESC version: 5.10.0.86\n";
    if running {
        out += &format!("ESC status=0 ESC {role} Healthy\n");
    } else {
        out += &format!("ESC status=3 ESC {role} Stopped\n");
    }
    out
}

fn answered(name: &str, role: &str, mode: &str) -> NodeProbe {
    answered_text(name, &status_text(role, true), mode)
}

fn answered_text(name: &str, status: &str, mode: &str) -> NodeProbe {
    NodeProbe {
        name: name.into(),
        result: Ok(NodeAnswer {
            op_mode: parse_op_mode(format!("Operation Mode = {mode}\n"))
                .map_err(|e| Problem::new("UnrecognizedOutput", e.to_string())),
            status: parse_status(status)
                .map_err(|e| Problem::new("UnrecognizedOutput", e.to_string())),
        }),
    }
}

fn unreachable(name: &str, reason: &str) -> NodeProbe {
    NodeProbe {
        name: name.into(),
        result: Err(Problem::new(
            reason,
            format!("{name} did not answer ({reason})"),
        )),
    }
}

struct World {
    spec: EscClusterSpec,
    status: EscClusterStatus,
    annotation: Option<&'static str>,
}

impl World {
    fn new(topology: Topology) -> Self {
        World {
            spec: spec(topology),
            status: EscClusterStatus::default(),
            annotation: None,
        }
    }

    fn input(&self, probes: Result<Vec<NodeProbe>, Problem>, now: i64) -> ClusterInput<'_> {
        ClusterInput {
            spec: &self.spec,
            generation: Some(1),
            previous: &self.status,
            annotation: AnnotationRequest::parse(self.annotation),
            other_requests: vec![],
            probes,
            outcome: None,
            now: at(now),
        }
    }

    /// One reconcile as the controller runs it: plan, store, act (succeeding), plan again, store.
    fn reconcile(
        &mut self,
        probes: Vec<NodeProbe>,
        now: i64,
    ) -> (Option<ModeAction>, Vec<PlannedEvent>) {
        self.reconcile_with(probes, now, |_| None)
    }

    fn reconcile_with(
        &mut self,
        probes: Vec<NodeProbe>,
        now: i64,
        fail: impl Fn(&ModeAction) -> Option<Problem>,
    ) -> (Option<ModeAction>, Vec<PlannedEvent>) {
        let first = plan(&self.input(Ok(probes.clone()), now));
        let Some(action) = first.action.clone() else {
            self.status = first.status.clone();
            return (None, first.events);
        };
        let outcome = match fail(&action) {
            None => ActionOutcome::Done(action.clone()),
            Some(p) => ActionOutcome::Failed(action.clone(), p),
        };
        let mut input = self.input(Ok(probes), now);
        input.outcome = Some(outcome);
        let second = plan(&input);
        assert_eq!(
            second.action, None,
            "a second plan never acts again in the same reconcile"
        );
        let status = second.status.clone();
        self.status = status;
        (Some(action), second.events)
    }

    fn condition(&self, t: &str) -> (String, String) {
        let c = conditions::find(&self.status.conditions, t).expect(t);
        (c.status.clone(), c.reason.clone())
    }
}

fn ha_operation() -> Vec<NodeProbe> {
    vec![
        answered("esc-a", "Master", "OPERATION"),
        answered("esc-b", "Backup", "OPERATION"),
    ]
}

fn ha_maintenance() -> Vec<NodeProbe> {
    vec![
        answered("esc-a", "Master", "MAINTENANCE"),
        answered("esc-b", "Backup", "MAINTENANCE"),
    ]
}

#[test]
fn ha_pair_converges_ready_with_master_and_roles() {
    let mut w = World::new(Topology::Ha);
    let (action, events) = w.reconcile(ha_operation(), 0);
    assert_eq!(action, None);
    assert!(
        events.is_empty(),
        "first sight of a healthy pair is no news: {events:?}"
    );
    assert_eq!(w.status.master.as_deref(), Some("esc-a"));
    assert_eq!(w.status.op_mode, Some(StatusMode::Operation));
    assert_eq!(w.status.nodes[1].role, NodeRole::Backup);
    assert_eq!(w.status.nodes[0].esc_version.as_deref(), Some("5.10.0.86"));
    assert_eq!(w.condition(READY), ("True".into(), "Ready".into()));
    assert_eq!(w.condition(DEGRADED).0, "False");
    assert_eq!(w.status.observed_generation, Some(1));
}

#[test]
fn an_unchanged_world_plans_an_identical_status_later() {
    let mut w = World::new(Topology::Ha);
    w.reconcile(ha_operation(), 0);
    let before = w.status.clone();
    let (action, events) = w.reconcile(ha_operation(), 600);
    assert_eq!((action, events), (None, vec![]));
    assert_eq!(w.status, before, "no churning timestamps: nothing to write");
}

#[test]
fn standalone_converges_with_its_node_holding_the_mode() {
    let mut w = World::new(Topology::Standalone);
    w.reconcile(vec![answered("esc-a", "Standalone", "OPERATION")], 0);
    assert_eq!(w.status.master.as_deref(), Some("esc-a"));
    assert_eq!(w.condition(READY).0, "True");
}

#[test]
fn the_annotation_enters_maintenance_on_the_master_once_and_records_the_holder_first() {
    let mut w = World::new(Topology::Ha);
    w.reconcile(ha_operation(), 0);
    w.annotation = Some("true");
    let first = plan(&w.input(Ok(ha_operation()), 10));
    assert_eq!(
        first.action,
        Some(ModeAction::Enter {
            node: "esc-a".into(),
            ipt_check: true
        })
    );
    assert_eq!(
        first.status.maintenance_holders.len(),
        1,
        "the holder is stored before acting"
    );
    assert_eq!(first.status.maintenance_holders[0].since, at(10));

    let (_, events) = w.reconcile(ha_operation(), 10);
    assert!(events.iter().any(|e| e.reason == "MaintenanceEntered"));
    assert_eq!(w.condition(MAINTENANCE), ("True".into(), "Held".into()));
    assert_eq!(
        w.condition(READY).0,
        "True",
        "maintenance asked and reached is converged"
    );

    // The next probes see maintenance: nothing more is sent, the holder keeps its time.
    let (action, events) = w.reconcile(ha_maintenance(), 70);
    assert_eq!((action, events), (None, vec![]));
    assert_eq!(w.status.maintenance_holders[0].since, at(10));
}

#[test]
fn removing_the_annotation_returns_to_operation_then_forgets_the_holder() {
    let mut w = World::new(Topology::Ha);
    w.annotation = Some("true");
    w.reconcile(ha_operation(), 0);
    w.annotation = Some("false");
    let first = plan(&w.input(Ok(ha_maintenance()), 30));
    assert_eq!(
        first.action,
        Some(ModeAction::Exit {
            node: "esc-a".into()
        })
    );
    assert_eq!(
        first.status.maintenance_holders.len(),
        1,
        "kept until ESC is back in operation"
    );
    let (_, events) = w.reconcile(ha_maintenance(), 30);
    assert!(events.iter().any(|e| e.reason == "MaintenanceExited"));
    assert!(w.status.maintenance_holders.is_empty());
    assert_eq!(
        w.condition(MAINTENANCE),
        ("False".into(), "Operation".into())
    );
}

#[test]
fn a_restart_after_the_mode_was_set_but_before_status_sends_nothing_twice() {
    // Killed after `op_mode set` went through but before the second status write: status has
    // the holder (written first), ESC already reports maintenance.
    let mut w = World::new(Topology::Ha);
    w.reconcile(ha_operation(), 0);
    w.annotation = Some("true");
    w.status = plan(&w.input(Ok(ha_operation()), 5)).status;
    let (action, _) = w.reconcile(ha_maintenance(), 20);
    assert_eq!(action, None);
    assert_eq!(w.condition(MAINTENANCE).0, "True");
}

#[test]
fn in_flight_transactions_retry_with_the_reason_and_one_event() {
    let mut w = World::new(Topology::Ha);
    w.annotation = Some("true");
    let refuse = |_: &ModeAction| {
        Some(Problem::new(
            "InFlightTransactions",
            "2 transactions in flight",
        ))
    };
    let first = plan(&w.input(Ok(ha_operation()), 0));
    assert!(first.action.is_some());
    let (_, events) = w.reconcile_with(ha_operation(), 0, refuse);
    assert_eq!(
        w.condition(MAINTENANCE),
        ("False".into(), "InFlightTransactions".into())
    );
    assert_eq!(w.condition(READY).0, "False");
    assert_eq!(
        events
            .iter()
            .filter(|e| e.reason == "InFlightTransactions")
            .count(),
        1
    );
    // Refused again: same condition, no new Event.
    let (_, events) = w.reconcile_with(ha_operation(), 5, refuse);
    assert!(
        events.iter().all(|e| e.reason != "InFlightTransactions"),
        "{events:?}"
    );
    let mut input = w.input(Ok(ha_operation()), 5);
    input.outcome = Some(ActionOutcome::Failed(
        ModeAction::Enter {
            node: "esc-a".into(),
            ipt_check: true,
        },
        Problem::new("InFlightTransactions", "x"),
    ));
    assert!(
        plan(&input).retry,
        "a refusal asks for a retry with backoff"
    );
    // Drained: it enters.
    let (action, _) = w.reconcile(ha_operation(), 15);
    assert!(action.is_some());
    assert_eq!(w.condition(MAINTENANCE).0, "True");
}

#[test]
fn ipt_check_follows_the_spec() {
    let mut w = World::new(Topology::Standalone);
    w.spec.maintenance.ipt_check = false;
    w.annotation = Some("true");
    let p = plan(&w.input(Ok(vec![answered("esc-a", "Standalone", "OPERATION")]), 0));
    assert_eq!(
        p.action,
        Some(ModeAction::Enter {
            node: "esc-a".into(),
            ipt_check: false
        })
    );
}

#[test]
fn two_masters_are_degraded_and_block_every_mode_change() {
    let mut w = World::new(Topology::Ha);
    w.annotation = Some("true");
    let both = vec![
        answered("esc-a", "Master", "OPERATION"),
        answered("esc-b", "Master", "OPERATION"),
    ];
    let p = plan(&w.input(Ok(both.clone()), 0));
    assert_eq!(p.action, None);
    assert!(p.retry);
    let (_, events) = w.reconcile(both, 0);
    assert_eq!(w.condition(DEGRADED), ("True".into(), "SplitBrain".into()));
    assert_eq!(w.condition(READY).0, "False");
    assert_eq!(w.condition(MAINTENANCE).1, "Blocked");
    assert!(events.iter().any(|e| e.warning && e.reason == "SplitBrain"));
    let c = conditions::find(&w.status.conditions, DEGRADED).unwrap();
    assert!(c.message.contains("esc-a and esc-b"), "{}", c.message);
}

#[test]
fn no_master_while_services_run_is_degraded() {
    let mut w = World::new(Topology::Ha);
    w.reconcile(
        vec![
            answered("esc-a", "Backup", "OPERATION"),
            answered("esc-b", "Backup", "OPERATION"),
        ],
        0,
    );
    assert_eq!(w.condition(DEGRADED), ("True".into(), "NoMaster".into()));
    assert_eq!(w.status.master, None);
}

#[test]
fn an_unreachable_node_sets_reachable_false_then_recovers_with_an_event_each_way() {
    let mut w = World::new(Topology::Ha);
    w.reconcile(ha_operation(), 0);
    let (_, events) = w.reconcile(
        vec![
            answered("esc-a", "Master", "OPERATION"),
            unreachable("esc-b", "ConnectTimeout"),
        ],
        60,
    );
    assert_eq!(
        w.condition(REACHABLE),
        ("False".into(), "ConnectTimeout".into())
    );
    assert_eq!(w.condition(READY).0, "False");
    assert!(!w.status.nodes[1].reachable);
    assert!(
        events
            .iter()
            .any(|e| e.warning && e.reason == "ConnectTimeout")
    );
    let (_, events) = w.reconcile(ha_operation(), 120);
    assert_eq!(w.condition(REACHABLE).0, "True");
    assert!(events.iter().any(|e| !e.warning && e.reason == "Reachable"));
}

#[test]
fn unusable_secrets_are_a_reachability_problem_and_block_changes() {
    let mut w = World::new(Topology::Ha);
    w.annotation = Some("true");
    let p = plan(&w.input(
        Err(Problem::new("SecretNotFound", "Secret esc-ssh not found")),
        0,
    ));
    assert_eq!(p.action, None);
    let c = conditions::find(&p.status.conditions, REACHABLE).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "SecretNotFound")
    );
    assert!(p.status.nodes.iter().all(|n| !n.reachable));
}

#[test]
fn max_duration_returns_to_operation_and_does_not_reenter_while_the_annotation_stays() {
    let mut w = World::new(Topology::Ha);
    w.spec.maintenance.max_duration = Some(std::time::Duration::from_secs(120).into());
    w.annotation = Some("true");
    let p = plan(&w.input(Ok(ha_operation()), 0));
    assert_eq!(p.next_probe, std::time::Duration::from_secs(60));
    w.reconcile(ha_operation(), 0);
    let p = plan(&w.input(Ok(ha_maintenance()), 100));
    assert_eq!(
        p.next_probe,
        std::time::Duration::from_secs(20),
        "probe at the deadline"
    );
    let (action, events) = w.reconcile(ha_maintenance(), 121);
    assert_eq!(
        action,
        Some(ModeAction::Exit {
            node: "esc-a".into()
        })
    );
    assert!(
        events
            .iter()
            .any(|e| e.warning && e.reason == "MaxDurationExceeded")
    );
    assert_eq!(
        w.condition(MAINTENANCE),
        ("False".into(), "MaxDurationExceeded".into())
    );
    assert_eq!(w.status.expired_holders.len(), 1);
    // The annotation is still there: no re-entry.
    let (action, _) = w.reconcile(ha_operation(), 200);
    assert_eq!(action, None);
    // Removed and set again: a new window.
    w.annotation = None;
    w.reconcile(ha_operation(), 300);
    assert!(w.status.expired_holders.is_empty());
    w.annotation = Some("true");
    let (action, _) = w.reconcile(ha_operation(), 310);
    assert!(matches!(action, Some(ModeAction::Enter { .. })));
}

#[test]
fn maintenance_set_by_hand_is_reported_once_and_left_alone() {
    let mut w = World::new(Topology::Ha);
    w.reconcile(ha_operation(), 0);
    let (action, events) = w.reconcile(ha_maintenance(), 60);
    assert_eq!(action, None, "never undo a person's manual maintenance");
    assert_eq!(
        w.condition(MAINTENANCE),
        ("True".into(), "ManualMaintenance".into())
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e.reason == "ManualMaintenance")
            .count(),
        1
    );
    let (_, events) = w.reconcile(ha_maintenance(), 120);
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn operation_set_by_hand_while_held_is_drift_and_corrected_toward_the_holders() {
    let mut w = World::new(Topology::Ha);
    w.annotation = Some("true");
    w.reconcile(ha_operation(), 0);
    let (action, events) = w.reconcile(ha_operation(), 60);
    assert!(matches!(action, Some(ModeAction::Enter { .. })));
    assert!(
        events
            .iter()
            .any(|e| e.warning && e.reason == "MaintenanceDrift")
    );
}

#[test]
fn an_unknown_mode_blocks_changes_and_is_not_ready() {
    let mut w = World::new(Topology::Standalone);
    w.annotation = Some("true");
    let probe = NodeProbe {
        name: "esc-a".into(),
        result: Ok(NodeAnswer {
            op_mode: Err(Problem::new("UnrecognizedOutput", "garbage")),
            status: parse_status(status_text("Standalone", true))
                .map_err(|e| Problem::new("x", e.to_string())),
        }),
    };
    let p = plan(&w.input(Ok(vec![probe]), 0));
    assert_eq!(p.action, None);
    assert_eq!(p.status.op_mode, Some(StatusMode::Unknown));
    assert!(p.retry);
    let ready = conditions::find(&p.status.conditions, READY).unwrap();
    assert_eq!(ready.status, "False");
}

#[test]
fn an_invalid_annotation_value_changes_nothing_and_says_what_to_write() {
    let mut w = World::new(Topology::Ha);
    w.annotation = Some("yes");
    let p = plan(&w.input(Ok(ha_operation()), 0));
    assert_eq!(p.action, None, "a typo starts no window");
    let ready = conditions::find(&p.status.conditions, READY).unwrap();
    assert_eq!(ready.reason, "InvalidAnnotation");
    // ...and ends none.
    w.annotation = Some("true");
    w.reconcile(ha_operation(), 0);
    w.annotation = Some("flase");
    let (action, _) = w.reconcile(ha_maintenance(), 10);
    assert_eq!(action, None);
    assert_eq!(w.status.maintenance_holders.len(), 1);
}

#[test]
fn services_state_needs_positive_evidence() {
    let s = |text: &str| services_state(&parse_status(text).unwrap());
    assert_eq!(s(&status_text("Master", true)), ServicesState::Running);
    assert_eq!(s(&status_text("Master", false)), ServicesState::Stopped);
    // An unknown health word and no service lines: not stopped, not running.
    assert_eq!(
        s("ESC status=0 ESC Master Running\n"),
        ServicesState::Unknown
    );
    // Service lines all stopped but the summary claims health: not stopped.
    let mixed = status_text("Master", false).replace("Stopped", "Healthy");
    assert_eq!(s(&mixed), ServicesState::Unknown);
    // Some running, some stopped.
    let partial = "pgsql (pid 1) is running\nkeepalived is stopped\nESC status=1 ESC Master Unhealthy: keepalived stopped\n";
    assert_eq!(s(partial), ServicesState::Partial);
}

#[test]
fn a_stopped_node_is_not_ready() {
    let mut w = World::new(Topology::Standalone);
    w.reconcile(
        vec![answered_text(
            "esc-a",
            &status_text("Standalone", false),
            "OPERATION",
        )],
        0,
    );
    assert_eq!(
        w.condition(READY),
        ("False".into(), "ServicesStopped".into())
    );
    assert_eq!(w.status.nodes[0].stopped_services.len(), 3);
}

#[test]
fn backup_holders_share_the_window_with_the_annotation() {
    let mut w = World::new(Topology::Ha);
    w.annotation = Some("true");
    w.reconcile(ha_operation(), 0);
    // A backup joins; the person's annotation goes: ESC stays in maintenance for the backup.
    w.annotation = None;
    let mut input = w.input(Ok(ha_maintenance()), 10);
    input.other_requests = vec![HolderRequest {
        kind: HolderKind::EscBackup,
        name: "nightly".into(),
        ipt_check: None,
    }];
    let p = plan(&input);
    assert_eq!(p.action, None);
    assert_eq!(p.status.maintenance_holders.len(), 1);
    assert_eq!(p.status.maintenance_holders[0].kind, HolderKind::EscBackup);
}

#[test]
fn a_backup_that_opens_the_window_brings_its_own_ipt_check() {
    for (own, expected) in [(None, true), (Some(false), false), (Some(true), true)] {
        let w = World::new(Topology::Ha);
        let mut input = w.input(Ok(ha_operation()), 0);
        input.other_requests = vec![HolderRequest {
            kind: HolderKind::EscBackup,
            name: "nightly".into(),
            ipt_check: own,
        }];
        let p = plan(&input);
        assert_eq!(
            p.action,
            Some(ModeAction::Enter {
                node: "esc-a".into(),
                ipt_check: expected
            }),
            "{own:?}"
        );
    }
}

#[test]
fn no_mode_change_is_sent_while_the_masters_services_are_stopped_or_not_understood() {
    // A restore left ESC stopped in maintenance (onFailure LeaveStopped): escadm would refuse
    // `op_mode set`, so the operator waits, and says why.
    let mut w = World::new(Topology::Ha);
    w.annotation = Some("true");
    w.reconcile(ha_operation(), 0);
    w.annotation = Some("false");
    let stopped = vec![
        answered_text("esc-a", &status_text("MASTER", false), "MAINTENANCE"),
        answered_text("esc-b", &status_text("BACKUP", false), "MAINTENANCE"),
    ];
    let p = plan(&w.input(Ok(stopped), 30));
    assert_eq!(p.action, None);
    let c = conditions::find(&p.status.conditions, MAINTENANCE).unwrap();
    assert_eq!(c.reason, "Blocked", "{c:?}");
    assert!(
        c.message.contains("can change only while they run"),
        "{c:?}"
    );
    // Output that is not understood is not "running" either.
    let garbled = vec![
        answered_text(
            "esc-a",
            "ESC status=0 ESC MASTER Healthy\nsomething new\n",
            "MAINTENANCE",
        ),
        answered("esc-b", "BACKUP", "MAINTENANCE"),
    ];
    let p = plan(&w.input(Ok(garbled), 31));
    assert_eq!(p.action, None, "{:?}", p.status.nodes);
    // Running again: back to operation.
    let p = plan(&w.input(Ok(ha_maintenance()), 32));
    assert_eq!(
        p.action,
        Some(ModeAction::Exit {
            node: "esc-a".into()
        })
    );
}
