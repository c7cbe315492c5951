//! The escadm driver ([`EscNode`]) against the ESC simulator behind real OpenSSH sshd: every
//! command, the typed refusals, tolerance of extra output, timeouts and dropped connections.
//!
//! Needs `tools/sshd/setup.sh` (run once, as root).

use std::time::{Duration, Instant};

use anyhow::Result;
use esc_operator::esc::parse::parse_backup_metadata;
use esc_operator::esc::{
    DriverError, DriverTimeouts, EscNode, EscVersion, EscadmFailure, HaRole, Health, KnownHosts,
    OpMode, RemotePath, SessionOptions, SshCredentials, SshError, SshTarget,
};
use esc_testbed::sshd::{FaultKind, SimEsc, SimNode, SimSpec};
use sha2::{Digest, Sha256};

async fn connect(node: &SimNode) -> Result<EscNode> {
    Ok(EscNode::connect(
        SshTarget::new(node.address().to_string(), node.port(), node.key_user()),
        &SshCredentials::private_key(node.private_key_pem()?.into_bytes(), None),
        &KnownHosts::parse(&node.known_hosts_line()),
        SessionOptions::default(),
    )
    .await?)
}

fn path(p: &std::path::Path) -> RemotePath {
    RemotePath::new(p.to_str().unwrap()).unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn escadm_kind(r: Result<impl std::fmt::Debug, DriverError>) -> EscadmFailure {
    match r {
        Err(e @ DriverError::Escadm { .. }) => {
            let DriverError::Escadm { kind, .. } = &e else {
                unreachable!()
            };
            // The condition reason is the refusal's own, and the error names its node.
            assert_eq!(e.reason(), kind.reason());
            assert!(e.node().is_some(), "{e:?}");
            *kind
        }
        other => panic!("expected an escadm refusal, got {other:?}"),
    }
}

/// The whole standalone sequence over one SSH connection: modes, status, backup, download,
/// checksum, log collect, remove, staging upload, stop, restore, restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_every_command_over_one_connection() -> Result<()> {
    let sim = SimEsc::start(SimSpec::standalone())?;
    let node = sim.node("esc");
    let esc = connect(node).await?;

    assert_eq!(esc.op_mode().await?, OpMode::Operation);
    let st = esc.status().await?;
    assert_eq!(st.role, HaRole::Standalone);
    assert_eq!(st.health, Health::Healthy);
    assert_eq!(st.esc_version, Some("5.10.0.86".parse::<EscVersion>()?));
    assert!(st.running_services().any(|s| s == "escmanager"), "{st:?}");
    assert!(!st.all_services_stopped());

    assert_eq!(
        esc.set_op_mode(OpMode::Maintenance, true).await?,
        OpMode::Maintenance
    );
    assert_eq!(esc.op_mode().await?, OpMode::Maintenance);

    // Backup to a local path on the node, then stream it back and compare.
    let dest = path(&node.data_dir().join("db.tar.bz2"));
    let backup = esc.backup(&dest).await?;
    assert_eq!(backup.path, dest.as_str());
    let on_disk = std::fs::read(dest.as_str())?;
    assert_eq!(backup.size_bytes, Some(on_disk.len() as u64));
    assert_eq!(esc.file_size(&dest).await?, on_disk.len() as u64);
    assert_eq!(esc.sha256(&dest).await?.to_string(), sha256_hex(&on_disk));
    let mut downloaded = Vec::new();
    let done = esc
        .session()
        .download_hashed(&dest, &mut downloaded)
        .await?;
    assert_eq!(done.bytes, on_disk.len() as u64);
    assert_eq!(done.sha256, esc.sha256(&dest).await?);
    assert_eq!(downloaded, on_disk);
    assert_eq!(&downloaded[..3], b"BZh", "a bzip2 archive");
    // Its metadata names the ESC version it was taken on (restore's downgrade check).
    let local = tempfile::NamedTempFile::new()?;
    std::fs::write(local.path(), &downloaded)?;
    let meta = std::process::Command::new("tar")
        .arg("-xjOf")
        .arg(local.path())
        .arg("esc_db/metadata.json")
        .output()?;
    assert!(meta.status.success(), "{meta:?}");
    let meta = parse_backup_metadata(&meta.stdout)?;
    assert_eq!(meta.esc_version, "5.10.0.86".parse::<EscVersion>()?);

    // One connection, two channels at once: a download and a status.
    let mut sink = Vec::new();
    let (dl, st) = tokio::join!(esc.session().download_to(&dest, &mut sink), esc.status());
    assert_eq!(dl?, on_disk.len() as u64);
    assert_eq!(st?.role, HaRole::Standalone);

    assert_eq!(
        esc.set_op_mode(OpMode::Operation, false).await?,
        OpMode::Operation
    );

    let logs = esc.log_collect().await?;
    assert!(logs.path.contains("esc_log"), "{logs:?}");
    let log_path = RemotePath::new(logs.path.clone())?;
    assert!(std::path::Path::new(&logs.path).is_file());
    esc.remove_file(&log_path).await?;
    assert!(!std::path::Path::new(&logs.path).exists());
    // Removing what is gone is fine (rm -f): cleanup is idempotent.
    esc.remove_file(&log_path).await?;

    // Restore: stage the artifact, stop, check, restore, restart.
    let staged = path(&node.data_dir().join("staged-restore.tar.bz2"));
    let sent = esc
        .session()
        .upload_from(&mut &downloaded[..], &staged)
        .await?;
    assert_eq!(sent, downloaded.len() as u64);
    assert_eq!(esc.sha256(&staged).await?.to_string(), sha256_hex(&on_disk));
    esc.stop().await?;
    let st = esc.status().await?;
    assert!(st.all_services_stopped(), "{st:?}");
    assert_eq!(st.health, Health::Stopped);
    esc.restore(&staged).await?;
    esc.restart().await?;
    let st = esc.status().await?;
    assert_eq!(st.health, Health::Healthy, "{st:?}");
    esc.remove_file(&staged).await?;
    esc.remove_file(&dest).await?;

    // Every escadm command ran on the node, in this order.
    let journal = sim.journal()?;
    let cmds: Vec<String> = journal
        .commands(Some("esc"))
        .iter()
        .map(|e| format!("{:?}", e.what))
        .collect();
    assert!(cmds.len() >= 12, "{cmds:#?}");
    esc.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipt_check_refuses_with_in_flight_transactions() -> Result<()> {
    let sim = SimEsc::start(SimSpec::standalone())?;
    let node = sim.node("esc");
    node.set_in_flight(2, None)?;
    let esc = connect(node).await?;
    let err = esc.set_op_mode(OpMode::Maintenance, true).await;
    let msg = format!("{}", err.as_ref().unwrap_err());
    assert_eq!(err.as_ref().unwrap_err().reason(), "InFlightTransactions");
    assert_eq!(
        escadm_kind(err),
        EscadmFailure::InFlightTransactions { count: Some(2) }
    );
    assert!(msg.contains("in-flight"), "{msg}");
    assert!(msg.contains(&node.address().to_string()), "{msg}");
    assert_eq!(esc.op_mode().await?, OpMode::Operation);
    // Without the check ESC goes to maintenance anyway.
    assert_eq!(
        esc.set_op_mode(OpMode::Maintenance, false).await?,
        OpMode::Maintenance
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_roles_and_typed_refusals() -> Result<()> {
    let sim = SimEsc::start(SimSpec::ha())?;
    let a = connect(sim.node("esc-a")).await?;
    let b = connect(sim.node("esc-b")).await?;
    assert_eq!(a.status().await?.role, HaRole::Master);
    let sb = b.status().await?;
    assert_eq!(sb.role, HaRole::Backup);
    assert!(sb.running_services().any(|s| s == "keepalived"), "{sb:?}");

    // Backup outside maintenance mode.
    let dest = path(&sim.node("esc-a").data_dir().join("x.tar.bz2"));
    assert_eq!(
        escadm_kind(a.backup(&dest).await),
        EscadmFailure::NotInMaintenance
    );
    // Restore while services run.
    assert_eq!(
        escadm_kind(a.restore(&dest).await),
        EscadmFailure::ServicesRunning
    );
    // Backup on the standby.
    b.set_op_mode(OpMode::Maintenance, true).await?;
    let dest_b = path(&sim.node("esc-b").data_dir().join("x.tar.bz2"));
    assert_eq!(
        escadm_kind(b.backup(&dest_b).await),
        EscadmFailure::WrongRole
    );

    // The seed's order: stop BACKUP first, then MASTER; both report stopped.
    b.stop().await?;
    a.stop().await?;
    assert!(b.status().await?.all_services_stopped());
    assert!(a.status().await?.all_services_stopped());
    // A line about a service in a shape not known here: not proof that everything stopped.
    sim.node("esc-a").fault_once(
        "status",
        FaultKind::Warnings {
            lines: vec!["\x1b[33mescmanager (pid 4711) is starting\x1b[0m".into()],
        },
    )?;
    let st = a.status().await?;
    assert_eq!(st.unrecognized_service_lines, 1, "{st:?}");
    assert!(!st.all_services_stopped(), "{st:?}");
    assert!(sim.journal()?.failovers().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_version_warnings_and_garbage_are_tolerated() -> Result<()> {
    let sim = SimEsc::start(SimSpec::standalone())?;
    let node = sim.node("esc");
    let esc = connect(node).await?;
    node.fault_once("op_mode show", FaultKind::Warnings { lines: vec![] })?;
    assert_eq!(esc.op_mode().await?, OpMode::Operation);
    node.fault_once(
        "status",
        FaultKind::Warnings {
            lines: vec![
                "WARNING: D-MONA is not reachable".into(),
                "Note: x = y".into(),
            ],
        },
    )?;
    let st = esc.status().await?;
    assert_eq!(st.role, HaRole::Standalone);
    assert!(!st.unrecognized.is_empty(), "{st:?}");
    node.fault_once("status", FaultKind::Garbage { lines: 5 })?;
    let st = esc.status().await?;
    assert_eq!(st.health, Health::Healthy);
    node.fault_once("op_mode show", FaultKind::Garbage { lines: 5 })?;
    assert_eq!(esc.op_mode().await?, OpMode::Operation);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_command_times_out_and_the_connection_stays_usable() -> Result<()> {
    let sim = SimEsc::start(SimSpec::standalone())?;
    let node = sim.node("esc");
    let esc = connect(node).await?.with_timeouts(DriverTimeouts {
        quick: Duration::from_secs(2),
        ..DriverTimeouts::default()
    });
    node.fault_once("status", FaultKind::Hang { seconds: 30.0 })?;
    let t = Instant::now();
    let err = esc.status().await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(
        matches!(err, DriverError::Ssh(SshError::CommandTimeout { .. })),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("escadm status --v") && msg.contains("2s"),
        "{msg}"
    );
    assert_eq!(esc.op_mode().await?, OpMode::Operation);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_is_an_error_not_a_result() -> Result<()> {
    let sim = SimEsc::start(SimSpec::standalone())?;
    let node = sim.node("esc");
    let esc = connect(node).await?;
    node.fault_once("status", FaultKind::DropConnection { after_lines: 2 })?;
    let err = esc.status().await.unwrap_err();
    assert!(
        matches!(err, DriverError::Ssh(SshError::ConnectionLost { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("lost"), "{err}");
    // A new connection works.
    let esc = connect(node).await?;
    assert_eq!(esc.op_mode().await?, OpMode::Operation);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escadm_failures_are_classified_and_quoted() -> Result<()> {
    let sim = SimEsc::start(SimSpec::standalone())?;
    let node = sim.node("esc");
    let esc = connect(node).await?;
    esc.set_op_mode(OpMode::Maintenance, true).await?;
    node.fault_once("backup", FaultKind::DiskFull { after_bytes: 100 })?;
    let dest = path(&node.data_dir().join("full.tar.bz2"));
    let err = esc.backup(&dest).await;
    let msg = err.as_ref().unwrap_err().to_string();
    assert_eq!(escadm_kind(err), EscadmFailure::Io);
    assert!(msg.contains("No space left"), "{msg}");
    node.fault_once(
        "log collect",
        FaultKind::Exit {
            code: 1,
            message: Some("internal failure 42".into()),
        },
    )?;
    let err = esc.log_collect().await;
    let msg = err.as_ref().unwrap_err().to_string();
    assert_eq!(escadm_kind(err), EscadmFailure::Other);
    assert!(msg.contains("internal failure 42"), "{msg}");
    Ok(())
}
