//! Starting a node's daemons: its sshd (on a free port of its loopback address, retried when
//! the port is taken meanwhile) and waiting until a listener answers.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use host_procs::free_port;

use super::{NodeInfo, SimRoot};
use crate::process::ProcessGroup;

/// Starts the node's sshd and waits until it serves. With `pick_port`, a free port is picked
/// (again after an "address in use"); otherwise the node keeps its port (power on).
pub(super) fn spawn_sshd(
    root: &SimRoot,
    info: &mut NodeInfo,
    pick_port: bool,
) -> Result<ProcessGroup> {
    let mut last_err = None;
    for _attempt in 0..5 {
        if pick_port {
            info.port = free_port(info.address)?;
            esc_sim::provision::write_sshd_config(root, info)?;
        }
        let _ = std::fs::remove_file(&info.sshd_log);
        let mut pg = ProcessGroup::spawn(
            &format!("sshd-{}", info.name),
            esc_sim::provision::sshd_command(info),
            &root.ssh_dir(&info.name).join("sshd.stdout"),
        )?;
        let ready =
            esc_sim::provision::wait_ready(info.socket_addr(), Duration::from_secs(20), || {
                pg.try_exit_status().is_none()
            });
        match ready {
            Ok(()) => return Ok(pg),
            Err(e) => {
                let log = std::fs::read_to_string(&info.sshd_log).unwrap_or_default();
                drop(pg);
                if log.contains("Address already in use") {
                    last_err = Some(anyhow!("{e}: {log}"));
                    if !pick_port {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    continue;
                }
                bail!("sshd of {} did not start: {e}; log: {log}", info.name);
            }
        }
    }
    Err(last_err.unwrap_or_else(|| anyhow!("sshd of {} did not start", info.name)))
}

pub(super) fn wait_listening(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if std::time::Instant::now() > deadline {
            bail!("nothing listens on {addr} after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
