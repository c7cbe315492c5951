//! Stopping a node's sshd together with every session it started and whatever those still
//! run, so that nothing of a simulation outlives it.

use std::ffi::OsStr;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::SimRoot;
use crate::process::ProcessGroup;

/// Stops a node's sshd and what its sessions run. sshd puts every session (and the command
/// it runs) in a session of its own, so killing the listener's process group does not reach
/// them: the sessions are collected (descendants of the listener, and any process whose
/// environment names this node) and killed too.
pub(super) fn stop_sshd(root: &SimRoot, node: &str, sshd: Option<ProcessGroup>) {
    // Deepest first, each level gone before the next: a parent still alive reaps its killed
    // child. (A process orphaned here would be re-parented to pid 1, which in some sandboxes
    // never reaps, leaving a zombie.)
    if let Some(pg) = &sshd {
        let mut levels = host_procs::descendants(pg.pid()).unwrap_or_default();
        while let Some(level) = levels.pop() {
            kill_and_wait(&level, Duration::from_secs(2));
        }
    }
    if let Some(mut pg) = sshd {
        pg.stop(Duration::from_secs(5));
    }
    // What is left of the node's sessions (already orphaned, or forked meanwhile: a login
    // shell's rc files start background jobs): kill and look again until nothing is left.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = processes_of_node(root, node);
        if left.is_empty() || Instant::now() > deadline {
            break;
        }
        kill_and_wait(&left, Duration::from_millis(500));
    }
}

/// SIGKILLs `pids` and waits (bounded) until each is gone (reaped) or a zombie of pid 1.
fn kill_and_wait(pids: &[u32], timeout: Duration) {
    for &pid in pids {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    let deadline = Instant::now() + timeout;
    for &pid in pids {
        // Wait until its parent reaped it; a zombie of pid 1 may never be reaped: dead enough.
        while Instant::now() < deadline {
            match host_procs::process(pid) {
                None => break,
                Some(p) if p.is_zombie() && p.ppid == 1 => break,
                Some(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
}

/// Live processes whose environment says they run on `node` of `root` (escadm, shells).
fn processes_of_node(root: &SimRoot, node: &str) -> Vec<u32> {
    let root = root.path().as_os_str();
    let node = OsStr::new(node);
    let me = std::process::id();
    host_procs::processes()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.pid != me && p.is_alive())
        .filter(|p| {
            p.environ().is_ok_and(|env| {
                env.get(esc_sim::store::ENV_ROOT) == Some(root)
                    && env.get(esc_sim::store::ENV_NODE) == Some(node)
            })
        })
        .map(|p| p.pid)
        .collect()
}
