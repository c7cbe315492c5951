//! Every escadm command's output and exit status, over real OpenSSH sshd.

mod common;

use esc_testbed::sshd::{Mode, Role};

#[test]
fn op_mode_show_and_set_print_the_manuals_lines() {
    let sim = common::standalone();
    let n = sim.node("esc");
    let o = n.escadm("op_mode show").unwrap();
    assert_eq!(
        (o.exit, o.stdout.as_str()),
        (0, "Operation Mode = OPERATION\n"),
        "{o:?}"
    );
    let o = n.escadm("op_mode set --mode=maintenance").unwrap();
    assert_eq!(o.exit, 0, "{o:?}");
    assert_eq!(
        o.lines(),
        ["Set mode to MAINTENANCE", "Operation Mode = MAINTENANCE"]
    );
    let o = n.escadm("op_mode show").unwrap();
    assert_eq!(o.stdout, "Operation Mode = MAINTENANCE\n");
    let o = n.escadm("op_mode set --mode=operation").unwrap();
    assert_eq!(
        o.lines(),
        ["Set mode to OPERATION", "Operation Mode = OPERATION"]
    );
    assert_eq!(n.state().unwrap().mode, Mode::Operation);
    let j = sim.journal().unwrap();
    assert_eq!(j.mode_changes().len(), 2);
}

#[test]
fn the_manuals_typo_is_a_usage_error() {
    let sim = common::standalone();
    let n = sim.node("esc");
    let o = n
        .escadm("op_mode set --mode=maintenace --ipt_check=true")
        .unwrap();
    assert_eq!(o.exit, 2, "{o:?}");
    assert_eq!(o.stdout, "");
    assert!(
        o.stderr.starts_with("ERROR: invalid mode 'maintenace'"),
        "{o:?}"
    );
    assert_eq!(n.state().unwrap().mode, Mode::Operation);
}

#[test]
fn status_shows_services_version_and_role() {
    let sim = common::ha();
    let o = sim.node("esc-a").escadm("status --v").unwrap();
    assert_eq!(o.exit, 0);
    let lines = o.lines();
    assert_eq!(lines.len(), 11, "{o:?}");
    assert!(lines[0].starts_with("pgsql (pid ") && lines[0].ends_with(") is running"));
    assert_eq!(lines[9], "ESC version: 5.10.0.86");
    assert_eq!(lines[10], "ESC status=0 ESC Master Healthy");
    let o = sim.node("esc-b").escadm("status --v").unwrap();
    assert_eq!(
        o.lines().last().unwrap(),
        &"ESC status=0 ESC Backup Healthy"
    );
    assert_eq!(sim.node_with_role(Role::Backup).unwrap().name(), "esc-b");
}
