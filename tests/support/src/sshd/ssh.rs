//! Running commands on a node with the system OpenSSH client (`ssh`, `sshpass` for the
//! password user), and what they gave ([`SshOutput`]).

use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use super::SimNode;

/// What one ssh command gave.
#[derive(Clone, Debug)]
pub struct SshOutput {
    /// The ssh client's exit code: the remote command's, or 255 when the connection failed or
    /// dropped.
    pub exit: i32,
    /// stdout, lossily decoded (see `stdout_bytes` for garbage faults).
    pub stdout: String,
    pub stdout_bytes: Vec<u8>,
    pub stderr: String,
}

impl SshOutput {
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

impl SimNode {
    fn ssh_base(&self) -> Command {
        let mut c = Command::new("ssh");
        c.arg("-p")
            .arg(self.port().to_string())
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.known_hosts_file().display()
            ))
            .arg("-o")
            .arg("GlobalKnownHostsFile=/dev/null")
            .arg("-o")
            .arg("StrictHostKeyChecking=yes")
            .arg("-o")
            .arg("ConnectTimeout=10")
            .arg("-o")
            .arg("LogLevel=ERROR");
        c
    }

    /// Runs `command` on the node as the key user.
    pub fn ssh(&self, command: &str) -> Result<SshOutput> {
        run_output(self.ssh_command(command), None)
    }

    /// Runs `command` on the node as the key user, with `input` on its stdin (e.g. the
    /// password escadm prompts for when an scp URL has none).
    pub fn ssh_stdin(&self, command: &str, input: &[u8]) -> Result<SshOutput> {
        run_output(self.ssh_command(command), Some(input))
    }

    /// The `ssh` command line for `command` as the key user (key, port, known_hosts set).
    pub fn ssh_command(&self, command: &str) -> Command {
        let mut c = self.ssh_base();
        c.arg("-o")
            .arg("BatchMode=yes")
            .arg("-o")
            .arg("IdentitiesOnly=yes")
            .arg("-i")
            .arg(self.private_key_path())
            .arg(format!("{}@{}", self.key_user(), self.address()))
            .arg("--")
            .arg(command);
        c
    }

    /// Runs `command` on the node as the password user (sshpass; the password goes through
    /// the environment, never an argument).
    pub fn ssh_password(&self, command: &str) -> Result<SshOutput> {
        let mut c = Command::new("sshpass");
        c.arg("-e").arg("ssh");
        let base = self.ssh_base();
        c.args(base.get_args())
            .arg("-o")
            .arg("BatchMode=no")
            .arg("-o")
            .arg("PubkeyAuthentication=no")
            .arg("-o")
            .arg("PreferredAuthentications=password")
            .arg(format!("{}@{}", self.password_user(), self.address()))
            .arg("--")
            .arg(command)
            .env("SSHPASS", self.password());
        run_output(c, None)
    }

    /// `escadm <args>` on the node as the key user.
    pub fn escadm(&self, args: &str) -> Result<SshOutput> {
        self.ssh(&format!("escadm {args}"))
    }
}

fn run_output(mut c: Command, input: Option<&[u8]>) -> Result<SshOutput> {
    use std::io::Write;
    c.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c
        .spawn()
        .context("run ssh (openssh-client; tools/sshd/setup.sh)")?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(input).context("write ssh stdin")?;
    }
    let out = child.wait_with_output()?;
    Ok(SshOutput {
        exit: out.status.code().unwrap_or(255),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stdout_bytes: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}
