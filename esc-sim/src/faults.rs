//! Fault injection, per node and per command. Faults live in `<node>/faults.json`; escadm takes
//! the ones matching its command (under the simulator's lock) before it runs.

use serde::{Deserialize, Serialize};

/// One injected fault.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Fault {
    /// Which command it hits: `op_mode show`, `op_mode set`, `status`, `backup`, `restore`,
    /// `stop`, `restart`, `log collect`; a first word (`op_mode`, `log`) matches its
    /// sub-commands; `None` matches every command.
    pub command: Option<String>,
    pub fault: FaultKind,
    /// How many matching commands it hits before it is used up; `None`: until cleared.
    pub times: Option<u32>,
}

impl Fault {
    /// A fault on `command` (None = any) that hits once.
    pub fn once(command: Option<&str>, fault: FaultKind) -> Fault {
        Fault {
            command: command.map(str::to_owned),
            fault,
            times: Some(1),
        }
    }

    /// A fault on `command` (None = any) that hits until cleared.
    pub fn always(command: Option<&str>, fault: FaultKind) -> Fault {
        Fault {
            command: command.map(str::to_owned),
            fault,
            times: None,
        }
    }

    pub fn matches(&self, command: &str) -> bool {
        match &self.command {
            None => true,
            Some(c) => c == command || command.split(' ').next() == Some(c.as_str()),
        }
    }
}

/// What a fault does.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// Fail at once with this exit code and one `ERROR: ` line on stderr (message or a default);
    /// the command has no effect.
    Exit { code: i32, message: Option<String> },
    /// Sleep this long before doing anything, then run the command normally. (A client that
    /// gives up meanwhile does not stop it: the command still runs, as a real one would.)
    Hang { seconds: f64 },
    /// Print this many lines of garbage (control characters, invalid UTF-8) before the output.
    Garbage { lines: u32 },
    /// Print these lines (or one D-MONA warning when empty) before the output.
    Warnings { lines: Vec<String> },
    /// Run the command, print `after_lines` lines of its output, then kill this SSH session
    /// (the sshd process serving it), so the client sees the connection drop with no exit status.
    DropConnection { after_lines: u32 },
    /// Print the output one line at a time with this delay before each line.
    Slow { line_delay_ms: u64 },
    /// Backup and log collect: write only `after_bytes` bytes of the archive, then fail with
    /// "No space left on device" (exit 8), leaving the truncated file behind as tar would.
    DiskFull { after_bytes: u64 },
}

impl FaultKind {
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::Exit { .. } => "exit",
            FaultKind::Hang { .. } => "hang",
            FaultKind::Garbage { .. } => "garbage",
            FaultKind::Warnings { .. } => "warnings",
            FaultKind::DropConnection { .. } => "drop_connection",
            FaultKind::Slow { .. } => "slow",
            FaultKind::DiskFull { .. } => "disk_full",
        }
    }
}

/// Takes the faults that hit `command` out of `faults`, counting down (and removing) the
/// limited ones. Returns what to apply, in the order the faults were added.
pub fn take_matching(faults: &mut Vec<Fault>, command: &str) -> Vec<FaultKind> {
    let mut hit = Vec::new();
    for f in faults.iter_mut() {
        if f.matches(command) && f.times != Some(0) {
            hit.push(f.fault.clone());
            if let Some(t) = f.times.as_mut() {
                *t -= 1;
            }
        }
    }
    faults.retain(|f| f.times != Some(0));
    hit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_and_counting_down() {
        let mut faults = vec![
            Fault::once(
                Some("backup"),
                FaultKind::Exit {
                    code: 9,
                    message: None,
                },
            ),
            Fault::always(Some("op_mode"), FaultKind::Slow { line_delay_ms: 1 }),
            Fault::always(None, FaultKind::Warnings { lines: vec![] }),
        ];
        assert_eq!(take_matching(&mut faults, "status").len(), 1);
        let hit = take_matching(&mut faults, "op_mode set");
        assert_eq!(hit.len(), 2);
        let hit = take_matching(&mut faults, "backup");
        assert_eq!(hit[0].name(), "exit");
        assert_eq!(faults.len(), 2, "the once-fault is used up");
        assert_eq!(take_matching(&mut faults, "backup").len(), 1);
    }

    #[test]
    fn json_shape_is_stable() {
        let f = Fault::once(Some("backup"), FaultKind::DiskFull { after_bytes: 100 });
        let s = serde_json::to_string(&f).unwrap();
        assert_eq!(
            s,
            r#"{"command":"backup","fault":{"kind":"disk_full","after_bytes":100},"times":1}"#
        );
        let back: Fault = serde_json::from_str(&s).unwrap();
        assert_eq!(back, f);
    }
}
