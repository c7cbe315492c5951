//! The escadm commands the operator drives, as typed values rendered to command lines. Pure.
//!
//! No command carries a secret: backup and restore take a [`RemotePath`] on the node (never an
//! `scp://user:password@...` URL — the operator moves the file itself), and the mode value is
//! always spelled correctly (`maintenance`, not the seed manual's typo `maintenace`).
//!
//! Owns: [`EscadmCommand`]. Imports the leaf [`crate::esc::vocab`] and [`crate::esc::remote`].

use crate::esc::remote::{CommandLine, RemotePath};
use crate::esc::vocab::OpMode;

/// An escadm invocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EscadmCommand {
    /// `escadm op_mode show`.
    OpModeShow,
    /// `escadm op_mode set --mode=MODE [--ipt_check=true]`: with `ipt_check`, ESC refuses to
    /// enter MAINTENANCE while transactions are in flight.
    OpModeSet { mode: OpMode, ipt_check: bool },
    /// `escadm status --v`.
    Status,
    /// `escadm backup --file PATH` (a path on the node).
    Backup { file: RemotePath },
    /// `escadm restore --file PATH` (a path on the node).
    Restore { file: RemotePath },
    /// `escadm stop`.
    Stop,
    /// `escadm restart`.
    Restart,
    /// `escadm log collect`.
    LogCollect,
}

impl EscadmCommand {
    /// The short name used in errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            EscadmCommand::OpModeShow => "escadm op_mode show",
            EscadmCommand::OpModeSet { .. } => "escadm op_mode set",
            EscadmCommand::Status => "escadm status --v",
            EscadmCommand::Backup { .. } => "escadm backup",
            EscadmCommand::Restore { .. } => "escadm restore",
            EscadmCommand::Stop => "escadm stop",
            EscadmCommand::Restart => "escadm restart",
            EscadmCommand::LogCollect => "escadm log collect",
        }
    }

    /// The command as an argument vector, ready to render.
    pub fn command_line(&self) -> CommandLine {
        let mut argv: Vec<String> = vec!["escadm".into()];
        match self {
            EscadmCommand::OpModeShow => argv.extend(["op_mode".into(), "show".into()]),
            EscadmCommand::OpModeSet { mode, ipt_check } => {
                argv.extend([
                    "op_mode".into(),
                    "set".into(),
                    format!("--mode={}", mode.as_arg()),
                ]);
                if *ipt_check {
                    argv.push("--ipt_check=true".into());
                }
            }
            EscadmCommand::Status => argv.extend(["status".into(), "--v".into()]),
            EscadmCommand::Backup { file } => {
                argv.extend(["backup".into(), "--file".into(), file.as_str().into()])
            }
            EscadmCommand::Restore { file } => {
                argv.extend(["restore".into(), "--file".into(), file.as_str().into()])
            }
            EscadmCommand::Stop => argv.push("stop".into()),
            EscadmCommand::Restart => argv.push("restart".into()),
            EscadmCommand::LogCollect => argv.extend(["log".into(), "collect".into()]),
        }
        CommandLine::new(self.name(), argv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(c: EscadmCommand) -> String {
        c.command_line().render(false)
    }

    #[test]
    fn command_lines_match_the_manual() {
        assert_eq!(line(EscadmCommand::OpModeShow), "escadm op_mode show");
        assert_eq!(
            line(EscadmCommand::OpModeSet {
                mode: OpMode::Maintenance,
                ipt_check: true
            }),
            "escadm op_mode set --mode=maintenance --ipt_check=true"
        );
        assert_eq!(
            line(EscadmCommand::OpModeSet {
                mode: OpMode::Operation,
                ipt_check: false
            }),
            "escadm op_mode set --mode=operation"
        );
        assert_eq!(line(EscadmCommand::Status), "escadm status --v");
        let f = RemotePath::new("/tmp/db_file_name.tar.bz2").unwrap();
        assert_eq!(
            line(EscadmCommand::Backup { file: f.clone() }),
            "escadm backup --file /tmp/db_file_name.tar.bz2"
        );
        assert_eq!(
            line(EscadmCommand::Restore { file: f }),
            "escadm restore --file /tmp/db_file_name.tar.bz2"
        );
        assert_eq!(line(EscadmCommand::Stop), "escadm stop");
        assert_eq!(line(EscadmCommand::Restart), "escadm restart");
        assert_eq!(line(EscadmCommand::LogCollect), "escadm log collect");
        assert_eq!(
            EscadmCommand::Status.command_line().render(true),
            "sudo -n -- escadm status --v"
        );
    }

    #[test]
    fn never_the_manuals_typo() {
        let l = line(EscadmCommand::OpModeSet {
            mode: OpMode::Maintenance,
            ipt_check: false,
        });
        assert!(l.contains("--mode=maintenance") && !l.contains("maintenace"));
    }

    #[test]
    fn a_quoted_path_cannot_inject() {
        let f = RemotePath::new("/tmp/x; reboot").unwrap();
        assert_eq!(
            line(EscadmCommand::Backup { file: f }),
            "escadm backup --file '/tmp/x; reboot'"
        );
    }
}
