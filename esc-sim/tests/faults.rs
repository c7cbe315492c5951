//! Each fault kind, injected per node and command, seen through real sshd.

mod common;

use std::time::{Duration, Instant};

use esc_testbed::sshd::{Fault, FaultKind, Mode, What};

#[test]
fn exit_code_fault_fails_once_without_effect() {
    let sim = common::standalone();
    let n = sim.node("esc");
    n.fault_once(
        "op_mode set",
        FaultKind::Exit {
            code: 42,
            message: None,
        },
    )
    .unwrap();
    let o = n.escadm("op_mode set --mode=maintenance").unwrap();
    assert_eq!(o.exit, 42, "{o:?}");
    assert_eq!(o.stderr.trim_end(), "ERROR: injected failure (exit 42)");
    assert_eq!(n.state().unwrap().mode, Mode::Operation);
    // Used up: the next one works.
    assert_eq!(n.escadm("op_mode set --mode=maintenance").unwrap().exit, 0);
    assert!(n.faults().unwrap().is_empty());
    let j = sim.journal().unwrap();
    let cmds = j.commands(Some("esc"));
    assert!(matches!(&cmds[0].what, What::Command { exit: 42, faults, .. } if faults == &["exit"]));
}

#[test]
fn hang_fault_delays_then_runs() {
    let sim = common::standalone();
    let n = sim.node("esc");
    n.fault_once("status", FaultKind::Hang { seconds: 1.5 })
        .unwrap();
    let t = Instant::now();
    let o = n.escadm("status --v").unwrap();
    assert!(t.elapsed() >= Duration::from_millis(1500));
    assert_eq!(o.exit, 0);
    assert_eq!(
        o.lines().last().unwrap(),
        &"ESC status=0 ESC Standalone Healthy"
    );
    // Other commands are not hit.
    let t = Instant::now();
    n.escadm("status --v").unwrap();
    assert!(t.elapsed() < Duration::from_millis(1500));
}

#[test]
fn garbage_and_warning_faults_add_lines_before_the_output() {
    let sim = common::standalone();
    let n = sim.node("esc");
    n.fault_once("op_mode show", FaultKind::Garbage { lines: 3 })
        .unwrap();
    let o = n.escadm("op_mode show").unwrap();
    assert_eq!(o.exit, 0);
    let lines: Vec<&[u8]> = o.stdout_bytes.split(|b| *b == b'\n').collect();
    assert_eq!(lines.len(), 5, "3 garbage + 1 + trailing empty: {o:?}");
    assert_eq!(lines[3], b"Operation Mode = OPERATION");
    assert!(
        lines[..3]
            .iter()
            .any(|l| std::str::from_utf8(l).is_err() || l.iter().any(|b| b.is_ascii_control())),
        "garbage is not clean text"
    );

    n.fault_once("op_mode", FaultKind::Warnings { lines: vec![] })
        .unwrap();
    let o = n.escadm("op_mode show").unwrap();
    assert_eq!(o.lines().len(), 2);
    assert!(o.lines()[0].starts_with("WARNING: D-MONA"));
    assert_eq!(o.lines()[1], "Operation Mode = OPERATION");
}

#[test]
fn drop_connection_fault_cuts_the_session_after_the_state_change() {
    let sim = common::standalone();
    let n = sim.node("esc");
    n.fault_once("op_mode set", FaultKind::DropConnection { after_lines: 1 })
        .unwrap();
    let o = n.escadm("op_mode set --mode=maintenance").unwrap();
    assert_eq!(o.exit, 255, "no exit status: {o:?}");
    assert_eq!(o.stdout, "Set mode to MAINTENANCE\n");
    // The change happened; the node's sshd still serves.
    assert_eq!(
        n.escadm("op_mode show").unwrap().stdout,
        "Operation Mode = MAINTENANCE\n"
    );
}

#[test]
fn slow_fault_paces_the_output() {
    let sim = common::standalone();
    let n = sim.node("esc");
    n.add_fault(Fault::always(
        Some("op_mode set"),
        FaultKind::Slow { line_delay_ms: 600 },
    ))
    .unwrap();
    let t = Instant::now();
    let o = n.escadm("op_mode set --mode=maintenance").unwrap();
    assert!(t.elapsed() >= Duration::from_millis(1200));
    assert_eq!(
        o.lines(),
        ["Set mode to MAINTENANCE", "Operation Mode = MAINTENANCE"]
    );
    n.clear_faults().unwrap();
    let t = Instant::now();
    n.escadm("op_mode set --mode=operation").unwrap();
    assert!(t.elapsed() < Duration::from_millis(1200));
}

#[test]
fn disk_full_during_backup_leaves_a_truncated_file_and_exit_8() {
    let sim = common::standalone();
    let n = sim.node("esc");
    n.escadm("op_mode set --mode=maintenance").unwrap();
    n.fault_once("backup", FaultKind::DiskFull { after_bytes: 100 })
        .unwrap();
    let dest = n.data_dir().join("db.tar.bz2");
    let o = n
        .escadm(&format!("backup --file {}", dest.display()))
        .unwrap();
    assert_eq!(o.exit, 8, "{o:?}");
    assert!(o.stderr.contains("No space left on device"), "{o:?}");
    assert_eq!(std::fs::metadata(&dest).unwrap().len(), 100);
    let t = std::process::Command::new("tar")
        .arg("-tjf")
        .arg(&dest)
        .output()
        .unwrap();
    assert!(!t.status.success(), "the truncated archive is unreadable");
    // Next time it works.
    let o = n
        .escadm(&format!("backup --file {}", dest.display()))
        .unwrap();
    assert_eq!(o.exit, 0, "{o:?}");
}

#[test]
fn ipt_check_refuses_while_transactions_are_in_flight_and_succeeds_after_they_drain() {
    let sim = common::ha();
    let a = sim.node("esc-a");
    a.set_in_flight(2, Some(Duration::from_secs(2))).unwrap();
    let started = Instant::now();
    let o = a
        .escadm("op_mode set --mode=maintenance --ipt_check=true")
        .unwrap();
    assert_eq!(o.exit, 3, "{o:?}");
    assert_eq!(
        o.stderr.trim_end(),
        "ERROR: 2 in-flight transaction(s) in progress; ESC not set to MAINTENANCE mode"
    );
    assert_eq!(o.stdout, "");
    assert_eq!(a.state().unwrap().mode, Mode::Operation);
    // Transactions on the master block entering maintenance from the standby too.
    let o = sim
        .node("esc-b")
        .escadm("op_mode set --mode=maintenance --ipt_check=true")
        .unwrap();
    assert_eq!(o.exit, 3, "{o:?}");
    // A retry after the drain succeeds.
    let mut ok = false;
    while started.elapsed() < Duration::from_secs(10) {
        let o = a
            .escadm("op_mode set --mode=maintenance --ipt_check=true")
            .unwrap();
        if o.exit == 0 {
            ok = true;
            break;
        }
        assert_eq!(o.exit, 3);
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(ok, "maintenance entered after the drain");
    assert!(started.elapsed() >= Duration::from_secs(2));
    let j = sim.journal().unwrap();
    let drained = j
        .first_seq("esc-a", |e| {
            matches!(e, esc_testbed::sshd::Event::InFlightDrained { count: 2 })
        })
        .unwrap();
    let entered = j
        .first_seq("esc-a", |e| {
            matches!(e, esc_testbed::sshd::Event::ModeChanged { .. })
        })
        .unwrap();
    assert!(drained < entered);
}

#[test]
fn a_fault_on_all_commands_hits_every_command_until_cleared() {
    let sim = common::standalone();
    let n = sim.node("esc");
    n.add_fault(Fault::always(
        None,
        FaultKind::Exit {
            code: 9,
            message: Some("disk read-only".into()),
        },
    ))
    .unwrap();
    for c in ["status --v", "op_mode show", "stop", "log collect"] {
        let o = n.escadm(c).unwrap();
        assert_eq!(
            (o.exit, o.stderr.trim_end()),
            (9, "ERROR: disk read-only"),
            "{c}"
        );
    }
    n.clear_faults().unwrap();
    assert_eq!(n.escadm("status --v").unwrap().exit, 0);
}
