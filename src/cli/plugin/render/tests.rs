//! The screens, from objects built here.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::api::{
    Artifact, EscBackupSpec, EscBackupStatus, EscClusterSpec, EscClusterStatus, EscNodeStatus,
    EscRestoreSpec, EscRestoreStatus, HolderKind, LocalObjectRef, MaintenanceHolder, RestoreSource,
    RestoreStep, StepState, StepStatus,
};

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn cluster() -> EscCluster {
    let spec: EscClusterSpec = serde_json::from_value(serde_json::json!({
        "topology": "HA",
        "nodes": [
            {"name": "esc-a", "host": "10.0.0.1"},
            {"name": "esc-b", "host": "10.0.0.2"}
        ],
        "ssh": {
            "user": "admin",
            "credentialsSecretRef": {"name": "c"},
            "knownHostsSecretRef": {"name": "k"}
        }
    }))
    .unwrap();
    let mut c = EscCluster::new("prod", spec);
    c.metadata.namespace = Some("ops".into());
    c.metadata.generation = Some(2);
    c.status = Some(EscClusterStatus {
        observed_generation: Some(2),
        op_mode: Some(OpMode::Maintenance),
        master: Some("esc-a".into()),
        nodes: vec![
            EscNodeStatus {
                name: "esc-a".into(),
                role: NodeRole::Master,
                reachable: true,
                services: ServicesState::Running,
                stopped_services: vec![],
                esc_version: Some("5.10.0.86".into()),
            },
            EscNodeStatus {
                name: "esc-b".into(),
                role: NodeRole::Unknown,
                reachable: false,
                services: ServicesState::Unknown,
                stopped_services: vec![],
                esc_version: None,
            },
        ],
        maintenance_holders: vec![MaintenanceHolder {
            kind: HolderKind::EscRestore,
            name: "back".into(),
            since: Time(t(-300)),
        }],
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: "False".into(),
            reason: "Unreachable".into(),
            message: "esc-b did not answer".into(),
            last_transition_time: Time(t(-60)),
            observed_generation: Some(2),
        }],
        ..EscClusterStatus::default()
    });
    c
}

fn backup(name: &str, cluster: &str, created: i64, size: Option<i64>) -> EscBackup {
    let spec: EscBackupSpec = serde_json::from_value(serde_json::json!({
        "clusterRef": {"name": cluster},
        "target": {"scp": {"host": "h", "user": "u", "path": "/b",
            "credentialsSecretRef": {"name": "c"}, "knownHostsSecretRef": {"name": "k"}}}
    }))
    .unwrap();
    let mut b = EscBackup::new(name, spec);
    b.metadata.namespace = Some("ops".into());
    b.metadata.creation_timestamp = Some(Time(t(created)));
    b.status = Some(EscBackupStatus {
        phase: Some(if size.is_some() {
            RunPhase::Succeeded
        } else {
            RunPhase::Failed
        }),
        artifact: size.map(|s| Artifact {
            uri: format!("sftp://u@h:22/b/{name}.tar"),
            size: s,
            sha256: "ab12".repeat(16),
            esc_version: "5.10.0.86".into(),
            created_at: Time(t(created)),
        }),
        message: size
            .is_none()
            .then(|| "failed in Preflight: no bucket".to_owned()),
        ..EscBackupStatus::default()
    });
    b
}

fn restore(name: &str) -> EscRestore {
    let mut r = EscRestore::new(
        name,
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
            on_failure: Default::default(),
            dry_run: false,
            allow_repeat: false,
        },
    );
    r.metadata.namespace = Some("ops".into());
    r.metadata.creation_timestamp = Some(Time(t(-300)));
    let mut status = EscRestoreStatus::default();
    status.run.phase = Some(RunPhase::Running);
    status.run.steps.push(StepStatus {
        name: RestoreStep::StopMaster,
        state: StepState::Running,
        started_at: None,
        finished_at: None,
        message: None,
    });
    status.stopped_nodes = vec!["esc-b".into(), "esc-a".into()];
    r.status = Some(status);
    r
}

#[test]
fn the_status_screen_shows_mode_roles_holders_runs_and_conditions() {
    let screen = status_screen(
        &cluster(),
        &[
            backup("old", "prod", -7200, Some(1024)),
            backup("nightly", "prod", -600, Some(3 << 20)),
            backup("other", "elsewhere", 0, Some(1)),
        ],
        &[restore("back")],
        t(0),
    );
    for want in [
        "EscCluster ops/prod (HA pair)",
        "mode: MAINTENANCE    master: esc-a",
        "esc-a            MASTER     yes        running    5.10.0.86",
        "esc-b            unknown    NO         unknown    -",
        "maintenance holders: EscRestore back (since 5m ago)",
        "last backup:  nightly Succeeded 10m ago  sftp://u@h:22/b/nightly.tar (3.0 MiB)",
        "last restore: back Running (step StopMaster) 5m ago  ESC STOPPED on esc-b, esc-a",
        "Ready=False (Unreachable): esc-b did not answer",
        "Degraded: not reported yet",
    ] {
        assert!(screen.contains(want), "missing {want:?} in:\n{screen}");
    }
}

#[test]
fn an_unprobed_cluster_says_so_instead_of_inventing_state() {
    let mut c = cluster();
    c.status = None;
    let screen = status_screen(&c, &[], &[], t(0));
    assert!(
        screen.contains("mode: unknown    master: unknown"),
        "{screen}"
    );
    assert!(
        screen.contains("status is from an older generation"),
        "{screen}"
    );
    assert!(screen.contains("last backup:  none") && screen.contains("last restore: none"));
}

#[test]
fn the_backups_table_lists_newest_first_with_sizes_and_short_digests() {
    let table = backups_table(
        &[
            backup("old", "prod", -200_000, Some(1024)),
            backup("failed", "prod", -30, None),
        ],
        false,
        t(0),
    );
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0].starts_with("NAME") && lines[0].ends_with("AGE"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("failed") && lines[1].contains("Failed"),
        "{table}"
    );
    assert!(
        lines[2].contains("1.0 KiB") && lines[2].contains("ab12ab12ab12"),
        "{table}"
    );
    assert!(lines[2].ends_with("2d"), "{table}");
    let all = backups_table(&[backup("x", "prod", 0, Some(5))], true, t(0));
    assert!(all.starts_with("NAMESPACE"), "{all}");
}

#[test]
fn ages_and_sizes_read_like_kubectl() {
    assert_eq!(age(Some(&t(-5)), t(0)), "5s");
    assert_eq!(age(Some(&t(-600)), t(0)), "10m");
    assert_eq!(age(Some(&t(-3 * 3600)), t(0)), "3h");
    assert_eq!(age(None, t(0)), "-");
    assert_eq!(size(512), "512 B");
    assert_eq!(size(5 << 30), "5.00 GiB");
}
