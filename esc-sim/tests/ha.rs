//! The HA pair behind real sshd: the keepalived view, failover and the seed's procedure.

mod common;

use esc_testbed::sshd::{Event, Mode, Role};

fn summary(n: &esc_testbed::sshd::SimNode) -> String {
    let o = n.escadm("status --v").unwrap();
    assert_eq!(o.exit, 0, "{o:?}");
    o.lines().last().unwrap().to_string()
}

#[test]
fn stopping_the_master_first_fails_over_to_the_standby() {
    let sim = common::ha();
    let (a, b) = (sim.node("esc-a"), sim.node("esc-b"));
    assert_eq!(a.escadm("stop").unwrap().exit, 0);
    assert_eq!(summary(b), "ESC status=0 ESC Master Healthy");
    assert_eq!(summary(a), "ESC status=3 ESC Master Stopped");
    assert_eq!(sim.node_with_role(Role::Master).unwrap().name(), "esc-a"); // last role kept
    assert_eq!(b.state().unwrap().role, Role::Master);
    let j = sim.journal().unwrap();
    assert_eq!(j.failovers(), [("esc-a".to_string(), "esc-b".to_string())]);
    // The old master comes back as the standby (no preemption).
    assert_eq!(a.escadm("restart").unwrap().exit, 0);
    assert_eq!(summary(a), "ESC status=0 ESC Backup Healthy");
    assert_eq!(summary(b), "ESC status=0 ESC Master Healthy");
    let j = sim.journal().unwrap();
    let roles: Vec<(String, Role, Role)> = j
        .events()
        .filter_map(|(e, ev)| match ev {
            Event::RoleChanged { from, to } => Some((e.node.clone(), *from, *to)),
            _ => None,
        })
        .collect();
    assert_eq!(
        roles,
        [
            ("esc-b".to_string(), Role::Backup, Role::Master),
            ("esc-a".to_string(), Role::Master, Role::Backup)
        ]
    );
    // Backups now run on esc-b only.
    a.escadm("op_mode set --mode=maintenance").unwrap();
    assert_eq!(a.escadm("backup --file /dev/null").unwrap().exit, 5);
    let dest = b.data_dir().join("db.tar.bz2");
    assert_eq!(
        b.escadm(&format!("backup --file {}", dest.display()))
            .unwrap()
            .exit,
        0,
        "mode is replicated: esc-b is in maintenance too"
    );
}

#[test]
fn the_seeds_restore_procedure_stops_standby_first_and_has_no_failover() {
    let sim = common::ha();
    let (a, b) = (sim.node("esc-a"), sim.node("esc-b"));
    a.set_database_content(serde_json::json!({"marker": "v1"}))
        .unwrap();
    // Backup on the master, in maintenance mode.
    let o = a
        .escadm("op_mode set --mode=maintenance --ipt_check=true")
        .unwrap();
    assert_eq!(o.exit, 0, "{o:?}");
    assert_eq!(
        b.escadm("op_mode show").unwrap().stdout,
        "Operation Mode = MAINTENANCE\n"
    );
    let dest = a.data_dir().join("db.tar.bz2");
    assert_eq!(
        a.escadm(&format!("backup --file {}", dest.display()))
            .unwrap()
            .exit,
        0
    );
    a.escadm("op_mode set --mode=operation").unwrap();
    assert_eq!(a.escadm("log collect").unwrap().exit, 0);
    assert_eq!(b.escadm("log collect").unwrap().exit, 0);
    a.set_database_content(serde_json::json!({"marker": "v2"}))
        .unwrap();

    // Restore: standby first, then master.
    let o = a
        .escadm(&format!("restore --file {}", dest.display()))
        .unwrap();
    assert_eq!(o.exit, 6, "restore refused while services run: {o:?}");
    assert_eq!(b.escadm("stop").unwrap().exit, 0);
    assert_eq!(summary(a), "ESC status=0 ESC Master Healthy");
    let o = a
        .escadm(&format!("restore --file {}", dest.display()))
        .unwrap();
    assert_eq!(
        o.exit, 6,
        "still refused: only the standby is stopped: {o:?}"
    );
    assert_eq!(a.escadm("stop").unwrap().exit, 0);
    assert_eq!(summary(a), "ESC status=3 ESC Master Stopped");
    assert_eq!(summary(b), "ESC status=3 ESC Backup Stopped");
    let o = a
        .escadm(&format!("restore --file {}", dest.display()))
        .unwrap();
    assert_eq!(o.exit, 0, "{o:?}");
    // Restart the master first, then the standby: roles as before.
    a.escadm("restart").unwrap();
    b.escadm("restart").unwrap();
    assert_eq!(summary(a), "ESC status=0 ESC Master Healthy");
    assert_eq!(summary(b), "ESC status=0 ESC Backup Healthy");
    assert_eq!(a.database().unwrap().content["marker"], "v1");
    assert_eq!(b.database().unwrap().content["marker"], "v1", "DRBD sync");

    let j = sim.journal().unwrap();
    assert!(j.failovers().is_empty(), "no failover: {:?}", j.failovers());
    assert_eq!(
        j.stops(),
        ["esc-b", "esc-a"],
        "standby stopped before master"
    );
    let modes = j.mode_changes();
    assert_eq!(
        modes,
        [
            ("esc-a".to_string(), Mode::Operation, Mode::Maintenance),
            ("esc-a".to_string(), Mode::Maintenance, Mode::Operation)
        ],
        "maintenance entered and left once"
    );
    let stop_b = j
        .first_seq("esc-b", |e| matches!(e, Event::ServicesStopped))
        .unwrap();
    let restored = j
        .first_seq("esc-a", |e| matches!(e, Event::DatabaseRestored { .. }))
        .unwrap();
    assert!(stop_b < restored);
}

#[test]
fn stopping_the_standby_then_the_master_then_starting_the_standby_first_swaps_roles() {
    // The rule, documented: a node that starts while its peer is stopped becomes MASTER.
    let sim = common::ha();
    let (a, b) = (sim.node("esc-a"), sim.node("esc-b"));
    b.escadm("stop").unwrap();
    a.escadm("stop").unwrap();
    b.escadm("restart").unwrap();
    a.escadm("restart").unwrap();
    assert_eq!(summary(b), "ESC status=0 ESC Master Healthy");
    assert_eq!(summary(a), "ESC status=0 ESC Backup Healthy");
    assert!(sim.journal().unwrap().failovers().is_empty());
}

#[test]
fn powering_off_the_master_fails_over_and_makes_it_unreachable() {
    let sim = common::ha();
    let (a, b) = (sim.node("esc-a"), sim.node("esc-b"));
    a.power_off().unwrap();
    assert!(!a.is_powered_on());
    let o = a.escadm("status --v").unwrap();
    assert_eq!(o.exit, 255, "unreachable: {o:?}");
    assert_eq!(summary(b), "ESC status=0 ESC Master Healthy");
    assert_eq!(
        sim.journal().unwrap().failovers(),
        [("esc-a".to_string(), "esc-b".to_string())]
    );
    a.power_on().unwrap();
    // Same address, port and host key: the known_hosts line still verifies.
    assert_eq!(summary(a), "ESC status=0 ESC Backup Healthy");
}

#[test]
fn restarting_the_standby_first_after_a_restore_loses_the_restored_database() {
    // The trap the seed's order avoids: the standby comes up first, becomes MASTER with the
    // old database, and the restored node then joins as BACKUP and syncs from it (DRBD).
    let sim = common::ha();
    let (a, b) = (sim.node("esc-a"), sim.node("esc-b"));
    a.set_database_content(serde_json::json!({"marker": "backed-up"}))
        .unwrap();
    a.escadm("op_mode set --mode=maintenance").unwrap();
    let dest = a.data_dir().join("db.tar.bz2");
    assert_eq!(
        a.escadm(&format!("backup --file {}", dest.display()))
            .unwrap()
            .exit,
        0
    );
    a.escadm("op_mode set --mode=operation").unwrap();
    a.set_database_content(serde_json::json!({"marker": "newer"}))
        .unwrap();
    b.set_database_content(serde_json::json!({"marker": "newer"}))
        .unwrap();
    b.escadm("stop").unwrap();
    a.escadm("stop").unwrap();
    assert_eq!(
        a.escadm(&format!("restore --file {}", dest.display()))
            .unwrap()
            .exit,
        0
    );
    b.escadm("restart").unwrap();
    a.escadm("restart").unwrap();
    assert_eq!(summary(b), "ESC status=0 ESC Master Healthy");
    assert_eq!(a.database().unwrap().content["marker"], "newer");
    let j = sim.journal().unwrap();
    assert!(
        j.first_seq(
            "esc-a",
            |e| matches!(e, Event::DatabaseSynced { from } if from == "esc-b")
        )
        .is_some()
    );
}
