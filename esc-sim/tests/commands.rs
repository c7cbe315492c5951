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

#[test]
fn backup_needs_maintenance_and_writes_a_tar_bz2_of_the_database() {
    let sim = common::standalone();
    let n = sim.node("esc");
    n.set_database_content(serde_json::json!({"tenants": ["t1"], "marker": "before"}))
        .unwrap();
    let dest = n.data_dir().join("db.tar.bz2");
    let o = n
        .escadm(&format!("backup --file {}", dest.display()))
        .unwrap();
    assert_eq!(o.exit, 4, "{o:?}");
    assert!(
        o.stderr.starts_with("ERROR: ESC is in OPERATION mode"),
        "{o:?}"
    );
    assert!(!dest.exists());

    n.escadm("op_mode set --mode=maintenance --ipt_check=true")
        .unwrap();
    let o = n
        .escadm(&format!("backup --file {}", dest.display()))
        .unwrap();
    assert_eq!(o.exit, 0, "{o:?}");
    let size = std::fs::metadata(&dest).unwrap().len();
    assert_eq!(
        o.lines(),
        [
            format!("Backing up ESC database to {}", dest.display()),
            format!("Backup completed: {} ({size} bytes)", dest.display()),
        ]
    );
    // A real tar.bz2 with the metadata and the database.
    let x = tempfile::tempdir().unwrap();
    let st = std::process::Command::new("tar")
        .arg("-xjf")
        .arg(&dest)
        .arg("-C")
        .arg(x.path())
        .status()
        .unwrap();
    assert!(st.success());
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(x.path().join("esc_db/metadata.json")).unwrap())
            .unwrap();
    assert_eq!(meta["esc_version"], "5.10.0.86");
    assert_eq!(meta["schema_version"], "5.10");
    let db: serde_json::Value =
        serde_json::from_slice(&std::fs::read(x.path().join("esc_db/database.json")).unwrap())
            .unwrap();
    assert_eq!(db["marker"], "before");
}

#[test]
fn restore_is_refused_while_services_run_and_loads_the_database_when_stopped() {
    let sim = common::standalone();
    let n = sim.node("esc");
    n.set_database_content(serde_json::json!({"marker": "backed-up"}))
        .unwrap();
    n.escadm("op_mode set --mode=maintenance").unwrap();
    let dest = n.data_dir().join("db.tar.bz2");
    assert_eq!(
        n.escadm(&format!("backup --file {}", dest.display()))
            .unwrap()
            .exit,
        0
    );
    n.set_database_content(serde_json::json!({"marker": "changed-later"}))
        .unwrap();

    let o = n
        .escadm(&format!("restore --file {}", dest.display()))
        .unwrap();
    assert_eq!(o.exit, 6, "{o:?}");
    assert!(
        o.stderr
            .starts_with("ERROR: ESC services must be stopped before a restore"),
        "{o:?}"
    );
    assert_eq!(n.database().unwrap().content["marker"], "changed-later");

    let o = n.escadm("stop").unwrap();
    assert_eq!(
        (o.exit, o.lines()),
        (0, vec!["Stopping ESC services", "ESC services stopped"])
    );
    let o = n.escadm("status --v").unwrap();
    assert_eq!(o.exit, 0);
    assert!(
        o.lines().iter().take(7).all(|l| l.ends_with(" is stopped")),
        "{o:?}"
    );
    assert_eq!(
        o.lines().last().unwrap(),
        &"ESC status=3 ESC Standalone Stopped"
    );
    // op_mode set and backup need running services.
    assert_eq!(n.escadm("op_mode set --mode=operation").unwrap().exit, 7);
    assert_eq!(
        n.escadm(&format!("backup --file {}.2", dest.display()))
            .unwrap()
            .exit,
        7
    );

    let o = n
        .escadm(&format!("restore --file {}", dest.display()))
        .unwrap();
    assert_eq!(o.exit, 0, "{o:?}");
    assert_eq!(
        o.lines(),
        [
            format!("Restoring ESC database from {}", dest.display()),
            "Restore completed. Run 'escadm restart' to complete the restore.".to_owned()
        ]
    );
    assert_eq!(n.database().unwrap().content["marker"], "backed-up");
    let o = n.escadm("restart").unwrap();
    assert_eq!(
        (o.exit, o.lines()),
        (0, vec!["Restarting ESC services", "ESC services started"])
    );
    // The mode survives the restore (ESC 4.4+).
    assert_eq!(
        n.escadm("op_mode show").unwrap().stdout,
        "Operation Mode = MAINTENANCE\n"
    );
    assert_eq!(
        n.escadm("status --v").unwrap().lines().last().unwrap(),
        &"ESC status=0 ESC Standalone Healthy"
    );
}

#[test]
fn restore_of_a_missing_or_bogus_file_fails_with_exit_8() {
    let sim = common::standalone();
    let n = sim.node("esc");
    n.escadm("stop").unwrap();
    let o = n.escadm("restore --file /nonexistent/db.tar.bz2").unwrap();
    assert_eq!(o.exit, 8, "{o:?}");
    let bogus = n.data_dir().join("bogus.tar.bz2");
    std::fs::write(&bogus, b"not a tarball").unwrap();
    let o = n
        .escadm(&format!("restore --file {}", bogus.display()))
        .unwrap();
    assert_eq!(o.exit, 8, "{o:?}");
    assert!(o.stderr.contains("is not an ESC database backup"), "{o:?}");
}

#[test]
fn restoring_a_newer_backup_is_accepted_but_the_node_reports_corruption() {
    let sim = common::standalone();
    let n = sim.node("esc");
    n.escadm("op_mode set --mode=maintenance").unwrap();
    let dest = n.data_dir().join("db-5.10.tar.bz2");
    assert_eq!(
        n.escadm(&format!("backup --file {}", dest.display()))
            .unwrap()
            .exit,
        0
    );
    n.escadm("stop").unwrap();
    // The node now runs an older ESC than the one that took the backup: a schema downgrade.
    n.set_esc_version("5.9.1.20").unwrap();
    let o = n
        .escadm(&format!("restore --file {}", dest.display()))
        .unwrap();
    assert_eq!(o.exit, 0, "accepted, as ESC would: {o:?}");
    n.escadm("restart").unwrap();
    let o = n.escadm("status --v").unwrap();
    assert_eq!(
        o.lines().last().unwrap(),
        &"ESC status=2 ESC Standalone Unhealthy: database corrupted (schema 5.10 restored on ESC 5.9.1.20)"
    );
    let j = sim.journal().unwrap();
    assert!(j.events().any(|(_, e)| matches!(
        e,
        esc_testbed::sshd::Event::DatabaseRestored {
            corrupted: true,
            ..
        }
    )));
}

#[test]
fn log_collect_writes_a_timestamped_archive_and_prints_its_path() {
    let sim = common::standalone();
    let n = sim.node("esc");
    n.escadm("status --v").unwrap();
    let o = n.escadm("log collect").unwrap();
    assert_eq!(o.exit, 0, "{o:?}");
    assert_eq!(o.lines()[0], "Collecting ESC logs");
    let path = o.lines()[1].strip_prefix("Log file: ").unwrap().to_owned();
    let p = std::path::Path::new(&path);
    assert_eq!(p.parent().unwrap(), n.var_tmp_dir());
    let name = p.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("esc_log-") && name.ends_with("Z.tar.bz2"),
        "{name}"
    );
    assert_eq!(name.len(), "esc_log-20261128T083000Z.tar.bz2".len());
    let listing = std::process::Command::new("tar")
        .arg("-tjf")
        .arg(p)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains("esc/escadm.log"), "{listing}");
    assert!(listing.contains("esc/escmanager.log"), "{listing}");
}

#[test]
fn usage_errors_exit_2() {
    let sim = common::standalone();
    let n = sim.node("esc");
    for bad in [
        "",
        "frobnicate",
        "op_mode",
        "op_mode set",
        "op_mode set --mode=MAINTENANCE",
        "op_mode set --mode=maintenance --ipt_check=maybe",
        "backup",
        "restore --file",
        "log",
    ] {
        let o = n.escadm(bad).unwrap();
        assert_eq!(o.exit, 2, "escadm {bad:?}: {o:?}");
        assert!(o.stderr.starts_with("ERROR: "), "{o:?}");
    }
}

#[test]
fn scp_backup_and_restore_through_a_third_machine_with_a_prompted_password() {
    let sim = common::standalone();
    let third = common::standalone();
    let n = sim.node("esc");
    let host = third.node("esc");
    n.set_database_content(serde_json::json!({"marker": "over-scp"}))
        .unwrap();
    n.escadm("op_mode set --mode=maintenance").unwrap();
    let remote = host.data_dir().join("esc-db.tar.bz2");
    // No password in the URL: escadm asks for it (stderr prompt, stdin), so it never shows in
    // a process argument here.
    let url = format!(
        "scp://{}@{}:{}:{}",
        host.password_user(),
        host.address(),
        host.port(),
        remote.display()
    );
    let pw = format!("{}\n", host.password());
    let o = n
        .ssh_stdin(&format!("escadm backup --file {url}"), pw.as_bytes())
        .unwrap();
    assert_eq!(o.exit, 0, "{o:?}");
    assert_eq!(o.stderr, "Password: ");
    assert!(remote.is_file());
    assert_eq!(o.lines()[0], format!("Backing up ESC database to {url}"));

    n.set_database_content(serde_json::json!({"marker": "lost"}))
        .unwrap();
    n.escadm("stop").unwrap();
    // Without a password and without input the restore fails; it does not hang.
    let o = n.escadm(&format!("restore --file {url}")).unwrap();
    assert_eq!(o.exit, 8, "{o:?}");
    assert!(o.stderr.contains("no password given"), "{o:?}");
    let o = n
        .ssh_stdin(&format!("escadm restore --file {url}"), pw.as_bytes())
        .unwrap();
    assert_eq!(o.exit, 0, "{o:?}");
    assert_eq!(n.database().unwrap().content["marker"], "over-scp");
    // The journal never holds a password.
    let journal = std::fs::read_to_string(sim.root().join("journal.jsonl")).unwrap();
    assert!(!journal.contains(host.password()));
}
