//! Starting and stopping the processes of the test bed, so that nothing outlives a test run.

use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;

/// A process started in a process group of its own; dropping it stops the whole group
/// (SIGTERM, then SIGKILL after a grace period), children included.
pub struct ProcessGroup {
    name: String,
    child: Child,
    /// Kills the group if this process dies without dropping the handle; disarmed by a normal
    /// [`ProcessGroup::stop`], so stopping does not wait for the script's grace period.
    watchdog: Option<ExitWatchdog>,
    stopped: bool,
}

impl ProcessGroup {
    /// Starts `cmd` as the leader of a new process group, stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Self> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open log {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("start {name} ({:?})", cmd.get_program()))?;
        let pgid = child.id() as i32;
        let watchdog = ExitWatchdog::arm(&format!(
            "kill -TERM -{pgid} 2>/dev/null; sleep 2; kill -KILL -{pgid} 2>/dev/null"
        ))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            watchdog: Some(watchdog),
            stopped: false,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the leader has exited (and with what status).
    pub fn try_exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Stops the group: SIGTERM, up to `grace` to exit, then SIGKILL.
    /// Idempotent: once stopped (and reaped), the group id may belong to someone else, so a
    /// second call signals nothing.
    pub fn stop(&mut self, grace: Duration) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let pgid = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(pgid, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Children of the leader may still run even when the leader has gone.
        let _ = killpg(pgid, Signal::SIGKILL);
        let _ = self.child.wait();
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.disarm();
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// Runs a shell cleanup script when the test process ends, however it ends.
///
/// Destructors of statics never run, and a panic with `panic = abort` or a SIGKILL skips all
/// of them. So a tiny `sh` in its own session waits on a pipe whose only writer is this
/// process; when this process dies (or the guard drops) the pipe closes and the script runs.
pub struct ExitWatchdog {
    stdin: Option<ChildStdin>,
    child: Option<Child>,
}

impl ExitWatchdog {
    pub fn arm(script: &str) -> Result<Self> {
        Self::arm_inner(script, None)
    }

    /// Like [`ExitWatchdog::arm`], and the script's shell also holds `fd` open (as its fd 3)
    /// until the script has finished. Used for a `flock` that must outlive this process until
    /// the cleanup is done, so the next holder of the lock never sees our leftovers.
    pub fn arm_holding(script: &str, fd: std::os::fd::BorrowedFd<'_>) -> Result<Self> {
        Self::arm_inner(script, Some(fd.as_raw_fd()))
    }

    fn arm_inner(script: &str, hold_fd: Option<std::os::fd::RawFd>) -> Result<Self> {
        let mut cmd = Command::new("sh");
        if let Some(fd) = hold_fd {
            // SAFETY: only async-signal-safe calls (dup2) between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    // dup2 clears FD_CLOEXEC on the copy, so the shell inherits it as fd 3.
                    if inherit_as_fd3(fd) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd.arg("-c")
            .arg(format!("read _ignored; {script}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own session: a Ctrl-C to the test's process group must not kill the watchdog
            // before it has cleaned up.
            .process_group(0);
        let mut child = cmd.spawn().context("start exit watchdog (sh)")?;
        let stdin = child.stdin.take();
        Ok(Self {
            stdin,
            child: Some(child),
        })
    }

    /// Runs the script now and waits for it.
    pub fn fire(mut self) {
        self.fire_inner();
    }

    /// Ends the watchdog without running its script (the work was done the normal way).
    pub fn disarm(mut self) {
        self.stdin.take();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn fire_inner(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"\n");
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }
}

impl Drop for ExitWatchdog {
    fn drop(&mut self) {
        self.fire_inner();
    }
}

/// Makes `fd` the child's fd 3 without close-on-exec. `dup2(3, 3)` would keep the flag, so
/// when the descriptor already is 3 the flag is cleared instead.
fn inherit_as_fd3(fd: std::os::fd::RawFd) -> i32 {
    const F_SETFD: i32 = 2;
    unsafe extern "C" {
        fn dup2(oldfd: i32, newfd: i32) -> i32;
        fn fcntl(fd: i32, cmd: i32, ...) -> i32;
    }
    // SAFETY: async-signal-safe calls on descriptor numbers open in the parent at fork time.
    unsafe {
        if fd == 3 {
            fcntl(3, F_SETFD, 0)
        } else {
            dup2(fd, 3)
        }
    }
}

/// Resident memory (bytes) of every process in process group `pgid` (a [`ProcessGroup`] and
/// the children that stayed in it).
pub(crate) fn group_resident_bytes(pgid: u32) -> u64 {
    host_procs::processes()
        .unwrap_or_default()
        .iter()
        .filter(|p| p.pgid == pgid)
        .filter_map(|p| host_procs::resident_bytes(p.pid))
        .sum()
}

/// The last `n` lines of a process's log file, for an error that says why it exited.
pub(crate) fn log_tail(path: &Path, n: usize) -> String {
    let Ok(text) = std::fs::read(path) else {
        return String::from("(no log)");
    };
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// For tests that prove cleanup after an abort: the test runs an `#[ignore]`d helper test of its
/// own binary in a child process; the helper starts things, reports them and aborts, so no
/// destructor and no unwinding runs; the test then checks that everything went anyway.
pub mod abort_probe {
    use std::path::{Path, PathBuf};

    use anyhow::{Context, Result, bail};

    const REPORT_FILE: &str = "ESC_TESTBED_PIDFILE";

    /// In the helper: whether the test started it (run directly, it should refuse).
    pub fn requested() -> bool {
        std::env::var_os(REPORT_FILE).is_some()
    }

    /// In the helper: reports the run's directory and the pids it started, then aborts.
    pub fn report_and_abort(dir: &Path, pids: &[u32]) -> ! {
        let file = std::env::var_os(REPORT_FILE).expect("started by abort_probe::run");
        let mut text = format!("{}\n", dir.display());
        for pid in pids {
            text.push_str(&format!("{pid}\n"));
        }
        std::fs::write(file, text).expect("write the abort report");
        std::process::abort();
    }

    /// In the test: runs the helper test `helper` of this binary, checks that it aborted, and
    /// returns what it reported (directory, pids).
    pub fn run(helper: &str) -> Result<(PathBuf, Vec<u32>)> {
        let report = tempfile::NamedTempFile::new()?;
        let status = std::process::Command::new(std::env::current_exe()?)
            .args(["--exact", helper, "--ignored", "--nocapture"])
            .env(REPORT_FILE, report.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()?;
        if status.success() {
            bail!("helper {helper} exited normally instead of aborting");
        }
        let text = std::fs::read_to_string(report.path())?;
        let mut lines = text.lines();
        let dir = PathBuf::from(
            lines
                .next()
                .with_context(|| format!("{helper} reported nothing"))?,
        );
        let pids = lines.map(str::parse).collect::<Result<_, _>>()?;
        Ok((dir, pids))
    }
}
