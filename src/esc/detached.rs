//! Long escadm commands (`backup`, `log collect`, `restore`) run *detached* on the node, so
//! that neither an operator restart nor a dropped SSH connection cuts them: a closed session
//! would hang up an attached command halfway through a database dump.
//!
//! A run lives in its own directory on the node, `<base>/<name>/`:
//! - `pid`  written by the run's shell as it starts (its process id);
//! - `out`, `err` the command's standard output and error;
//! - `rc`   its exit code, written (via a rename, so never half-written) when it ends.
//!
//! Starting is idempotent: the start script refuses when `pid` exists, so a controller that
//! crashed between sending the start and recording it can send it again without running the
//! command twice. Polling answers one of four words ([`crate::esc::parse::parse_run_state`]
//! reads them and fails closed on anything else).
//!
//! Owns: [`RunDir`] (the scripts). Pure. Imports [`crate::esc::escadm`] and
//! [`crate::esc::remote`].

use crate::esc::escadm::EscadmCommand;
use crate::esc::remote::{CommandLine, PathError, RemotePath, shell_quote};

/// At most this much of a finished run's stdout is read back (escadm prints a few lines).
pub const MAX_OUTPUT: u64 = 64 * 1024;

/// The directory of one detached run on a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunDir(RemotePath);

impl RunDir {
    /// `<base>/<name>`. `name` is an id the caller makes unique and stable across restarts
    /// (for instance an EscBackup's uid and its step): 1–100 characters of `[A-Za-z0-9._-]`,
    /// not starting with a dot, so the directory can never be `.`, `..` or a path.
    pub fn new(base: &RemotePath, name: &str) -> Result<Self, PathError> {
        let valid = !name.is_empty()
            && name.len() <= 100
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !valid {
            return Err(PathError::new(
                name,
                "is not a run name (1-100 of A-Z a-z 0-9 . _ -, not starting with '.')",
            ));
        }
        let base = base.as_str().trim_end_matches('/');
        Ok(RunDir(RemotePath::new(format!("{base}/{name}"))?))
    }

    /// The directory.
    pub fn path(&self) -> &RemotePath {
        &self.0
    }

    /// A file inside the directory (such as the backup archive the run writes).
    pub fn file(&self, name: &str) -> Result<RemotePath, PathError> {
        RemotePath::new(format!("{}/{name}", self.0.as_str()))
    }

    /// Starts `command` detached (`setsid`, stdin from /dev/null, no terminal) unless this
    /// directory already holds a run. Prints `started` or `already`; the directory is created
    /// with mode 0700 (the files hold escadm's output). The session's `sudo` setting wraps the
    /// whole script, so escadm inside it runs with the same rights as an attached command.
    pub fn start(&self, command: &EscadmCommand) -> CommandLine {
        let escadm = command.command_line().render(false);
        // `$$` in the inner shell is the run's own pid; `rc` appears in one rename.
        let inner = format!(
            "echo $$ > pid.tmp && mv pid.tmp pid; {escadm} > out 2> err < /dev/null; \
             echo $? > rc.tmp; mv rc.tmp rc"
        );
        let script = format!(
            "umask 077 && mkdir -p -- \"$1\" && cd -- \"$1\" || exit 1; \
             if [ -e pid ] || [ -e pid.tmp ]; then echo already; exit 0; fi; \
             : > pid.tmp; setsid sh -c {} > /dev/null 2>&1 < /dev/null & \
             echo started",
            shell_quote(&inner)
        );
        CommandLine::new(
            "start detached",
            ["sh", "-c", &script, "sh", self.0.as_str()],
        )
    }

    /// Reports the run's state: `absent` (never started), `running`, `exited <code>`, or
    /// `lost` (started, no exit code, and its process is gone — the node rebooted or someone
    /// killed it). `/proc/<pid>/stat` rather than `kill -0`: the run may belong to root (sudo),
    /// which a signal probe from the login user cannot tell from a dead process; and a zombie
    /// (state `Z`, ended but not yet reaped) is not running. A process found gone is looked
    /// for `rc` again: the run's shell execs its last command (the `mv` that makes `rc`), so it
    /// can end between the first look for `rc` and the look at `/proc` — a run that just
    /// finished, not a lost one.
    pub fn poll(&self) -> CommandLine {
        let script = "cd -- \"$1\" 2>/dev/null || { echo absent; exit 0; }; \
             if [ -f rc ]; then echo \"exited $(cat rc)\"; \
             elif [ -f pid ]; then p=$(cat pid); \
               st=$(sed -n 's/^.*) \\(.\\).*$/\\1/p' \"/proc/$p/stat\" 2>/dev/null); \
               if [ -n \"$p\" ] && [ -n \"$st\" ] && [ \"$st\" != Z ]; then echo running; \
               elif [ -f rc ]; then echo \"exited $(cat rc)\"; \
               else echo lost; fi; \
             elif [ -f pid.tmp ]; then echo running; \
             else echo absent; fi";
        CommandLine::new("poll detached", ["sh", "-c", script, "sh", self.0.as_str()])
    }

    /// The first [`MAX_OUTPUT`] bytes of the run's stdout (`out`) or stderr (`err`).
    pub fn read(&self, stream: RunStream) -> CommandLine {
        let file = format!("{}/{}", self.0.as_str(), stream.file_name());
        CommandLine::new(
            "read detached output",
            ["head", "-c", &MAX_OUTPUT.to_string(), "--", &file],
        )
    }

    /// Removes the directory and everything in it (`rm -rf`): only ever this run's directory,
    /// whose name [`RunDir::new`] checked.
    pub fn remove(&self) -> CommandLine {
        CommandLine::new("rm -rf", ["rm", "-rf", "--", self.0.as_str()])
    }
}

/// Which output of a run to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStream {
    Stdout,
    Stderr,
}

impl RunStream {
    fn file_name(self) -> &'static str {
        match self {
            RunStream::Stdout => "out",
            RunStream::Stderr => "err",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> RemotePath {
        RemotePath::new("/var/tmp/esc-operator/").unwrap()
    }

    #[test]
    fn names_cannot_escape_the_base() {
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "a b",
            "x;reboot",
            &"a".repeat(101),
        ] {
            assert!(RunDir::new(&base(), bad).is_err(), "{bad:?} accepted");
        }
        let run = RunDir::new(&base(), "0f1e-backup.db").unwrap();
        assert_eq!(run.path().as_str(), "/var/tmp/esc-operator/0f1e-backup.db");
        assert_eq!(
            run.file("db.tar.bz2").unwrap().as_str(),
            "/var/tmp/esc-operator/0f1e-backup.db/db.tar.bz2"
        );
    }

    #[test]
    fn the_start_script_quotes_the_command_and_passes_the_directory_as_an_argument() {
        let run = RunDir::new(&base(), "r1").unwrap();
        let file = run.file("db.tar.bz2").unwrap();
        let line = run.start(&EscadmCommand::Backup { file });
        assert_eq!(line.argv()[0], "sh");
        assert_eq!(line.argv()[4], "/var/tmp/esc-operator/r1");
        let script = &line.argv()[2];
        assert!(
            script.contains("escadm backup --file /var/tmp/esc-operator/r1/db.tar.bz2 > out"),
            "{script}"
        );
        assert!(script.contains("setsid sh -c"), "{script}");
        assert!(script.contains("echo already"), "{script}");
    }

    /// The scripts run for real in a local shell: a run starts once, reports `running`, then
    /// its exit code, and its output reads back.
    #[test]
    fn the_scripts_work_in_a_real_shell() {
        let tmp = tempfile::tempdir().unwrap();
        let base = RemotePath::new(tmp.path().to_str().unwrap()).unwrap();
        let run = RunDir::new(&base, "r1").unwrap();
        let sh = |line: &CommandLine| {
            let out = std::process::Command::new(&line.argv()[0])
                .args(&line.argv()[1..])
                .env("PATH", format!("{}:/usr/bin:/bin", tmp.path().display()))
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        // A fake escadm on PATH: sleeps a little, prints, fails with 3.
        let fake = tmp.path().join("escadm");
        std::fs::write(
            &fake,
            "#!/bin/sh\nsleep 0.3\necho \"out: $*\"\necho oops >&2\nexit 3\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();

        assert_eq!(sh(&run.poll()), "absent\n");
        assert_eq!(sh(&run.start(&EscadmCommand::LogCollect)), "started\n");
        assert_eq!(sh(&run.start(&EscadmCommand::LogCollect)), "already\n");
        assert_eq!(sh(&run.poll()), "running\n");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while sh(&run.poll()) == "running\n" && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert_eq!(sh(&run.poll()), "exited 3\n");
        assert_eq!(sh(&run.read(RunStream::Stdout)), "out: log collect\n");
        assert_eq!(sh(&run.read(RunStream::Stderr)), "oops\n");
        // The pid of a finished run names no process: without `rc` it counts as lost.
        std::fs::remove_file(tmp.path().join("r1/rc")).unwrap();
        assert_eq!(sh(&run.poll()), "lost\n");
        sh(&run.remove());
        assert!(!tmp.path().join("r1").exists());
        assert_eq!(sh(&run.poll()), "absent\n");
    }
}
