//! The restore history kept on the ESC nodes: one JSON line per completed `escadm restore`,
//! appended to a file on every node of the cluster.
//!
//! It lives on the nodes, not in Kubernetes, because the hazard it guards against is a
//! Kubernetes-side rebuild: a GitOps tool that prunes and re-applies an EscRestore, or a
//! namespace (or a whole cluster) rebuilt from Git, brings back an EscRestore with the same spec
//! and a new UID. Nothing in Kubernetes then remembers that the restore already ran, but the
//! ESC nodes do.
//!
//! Owns: [`RestoreRecord`], the file's line format, [`parse_history`] (fail closed: a line it
//! does not understand makes the whole history unreadable, never "not restored") and the
//! commands that read and append it. Pure; imports [`crate::esc::remote`] and
//! [`crate::esc::parse::ParseError`].

use serde::{Deserialize, Serialize};

use crate::esc::parse::ParseError;
use crate::esc::remote::{CommandLine, PathError, RemotePath, shell_quote};

/// The history file's name inside the operator's state directory on a node. The node's name is
/// part of it: nodes that share a filesystem (a lab, the simulator) keep separate histories.
pub fn history_file(state_dir: &RemotePath, node: &str) -> Result<RemotePath, PathError> {
    RemotePath::new(format!(
        "{}/restore-history-{}.jsonl",
        state_dir.as_str().trim_end_matches('/'),
        node
    ))
}

/// The largest history read back (a line is ~300 bytes: thousands of restores).
pub const MAX_HISTORY_BYTES: u64 = 1 << 20;

/// One completed restore, as recorded on the nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreRecord {
    /// `namespace/name` of the EscRestore.
    pub restore: String,
    /// Its UID: the same object resuming is not a repeat.
    pub uid: String,
    /// The whole artifact's SHA-256 (hex).
    pub artifact_sha256: String,
    /// `namespace/name` of the EscCluster restored.
    pub cluster: String,
    /// When `escadm restore` succeeded (RFC 3339).
    pub restored_at: String,
}

impl RestoreRecord {
    /// The record as one line of the history file (no newline inside: JSON escapes them).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Whether `other` is this same restore (the same object) rather than a repeat.
    pub fn same_run(&self, other: &RestoreRecord) -> bool {
        self.uid == other.uid
    }
}

/// Parses a history file's content. Fail closed: any line that is not a record (a truncated
/// write, a hand edit, a newer format) makes the history unreadable as a whole; an absent file
/// is the caller's empty content.
pub fn parse_history(content: &[u8]) -> Result<Vec<RestoreRecord>, ParseError> {
    let text = std::str::from_utf8(content)
        .map_err(|_| ParseError::unexpected("restore history", "UTF-8 JSON lines", content))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<RestoreRecord>(l).map_err(|_| {
                ParseError::unexpected(
                    "restore history",
                    "one JSON restore record per line",
                    l.as_bytes(),
                )
            })
        })
        .collect()
}

/// Prints the history (empty when the file does not exist yet); fails when it exists but
/// cannot be read, or is larger than [`MAX_HISTORY_BYTES`] (then it is not complete, and a
/// partial history must not pass for the whole one).
pub fn read_history(file: &RemotePath) -> CommandLine {
    let script = format!(
        "[ -e \"$1\" ] || exit 0; \
         size=$(wc -c < \"$1\") || exit 1; \
         if [ \"$size\" -gt {MAX_HISTORY_BYTES} ]; then echo \"history larger than {MAX_HISTORY_BYTES} bytes\" >&2; exit 1; fi; \
         exec cat -- \"$1\""
    );
    CommandLine::new(
        "read restore history",
        ["sh", "-c", &script, "sh", file.as_str()],
    )
}

/// Appends `record` to the history file (directory created, mode 0700/0600), then flushes it to
/// disk: the record is what refuses a repeat after a power cut too.
pub fn append_history(file: &RemotePath, record: &RestoreRecord) -> CommandLine {
    let dir = file
        .as_str()
        .rsplit_once('/')
        .map(|(d, _)| if d.is_empty() { "/" } else { d })
        .unwrap_or("/")
        .to_owned();
    let script = format!(
        "umask 077 && mkdir -p -- \"$1\" && printf '%s\\n' {} >> \"$2\" && sync",
        shell_quote(&record.to_line())
    );
    CommandLine::new(
        "append restore history",
        ["sh", "-c", &script, "sh", &dir, file.as_str()],
    )
}

/// Free space in bytes of the filesystem holding `dir` (created first, as the run directory it
/// is): `df -Pk`, POSIX output, one data line.
pub fn free_space(dir: &RemotePath) -> CommandLine {
    CommandLine::new(
        "df",
        [
            "sh",
            "-c",
            "umask 077 && mkdir -p -- \"$1\" && exec df -Pk -- \"$1\"",
            "sh",
            dir.as_str(),
        ],
    )
}

/// Available bytes from `df -Pk` output. Fail closed: anything but the POSIX header and one
/// data line with a numeric fourth column is an error, never "enough space".
pub fn parse_free_space(output: &[u8]) -> Result<u64, ParseError> {
    let bad = || ParseError::unexpected("df -Pk", "the POSIX header and one data line", output);
    let text = std::str::from_utf8(output).map_err(|_| bad())?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().ok_or_else(bad)?;
    if !header.starts_with("Filesystem") || !header.contains("Available") {
        return Err(bad());
    }
    let data: Vec<&str> = lines.collect();
    // A long device name may wrap onto its own line in some df builds; -P forbids it, so
    // anything but one line is not understood.
    let [line] = data.as_slice() else {
        return Err(bad());
    };
    let fields: Vec<&str> = line.split_whitespace().collect();
    let available: u64 = fields.get(3).and_then(|f| f.parse().ok()).ok_or_else(bad)?;
    available.checked_mul(1024).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(uid: &str) -> RestoreRecord {
        RestoreRecord {
            restore: "prod/restore-1".into(),
            uid: uid.into(),
            artifact_sha256: "ab".repeat(32),
            cluster: "prod/esc".into(),
            restored_at: "2026-11-30T03:00:00Z".into(),
        }
    }

    #[test]
    fn records_round_trip_through_lines() {
        let text = format!("{}\n\n{}\n", record("u1").to_line(), record("u2").to_line());
        assert_eq!(
            parse_history(text.as_bytes()).unwrap(),
            vec![record("u1"), record("u2")]
        );
        assert_eq!(parse_history(b"").unwrap(), vec![]);
        assert!(record("u1").same_run(&record("u1")));
        assert!(!record("u1").same_run(&record("u2")));
    }

    #[test]
    fn an_unknown_or_truncated_line_makes_the_history_unreadable() {
        let good = record("u1").to_line();
        for bad in [
            format!("{good}\n{{\"restore\":\"x\""),
            format!("{good}\nrestored something"),
            format!("{}\n", good.replace("\"uid\"", "\"uuid\"")),
            format!("{}\n", good.replace('}', ",\"extra\":1}")),
        ] {
            assert!(parse_history(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(parse_history(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn the_append_quotes_the_record_and_the_file_name_carries_the_node() {
        let dir = RemotePath::new("/var/lib/esc-operator").unwrap();
        let file = history_file(&dir, "esc-a").unwrap();
        assert_eq!(
            file.as_str(),
            "/var/lib/esc-operator/restore-history-esc-a.jsonl"
        );
        let mut r = record("u1");
        r.restore = "ns/it's".into();
        let line = append_history(&file, &r).render(false);
        assert!(line.contains("/var/lib/esc-operator "), "{line}");
        assert!(line.contains("restore-history-esc-a.jsonl"), "{line}");
        assert!(!line.contains("it's\""), "unquoted record: {line}");
    }

    #[test]
    fn free_space_is_read_from_posix_df_output_only() {
        let ok = b"Filesystem     1024-blocks    Used Available Capacity Mounted on\n\
                   /dev/vda         263174212 60000000 35000000      64% /\n";
        assert_eq!(parse_free_space(ok).unwrap(), 35_000_000 * 1024);
        for bad in [
            &b""[..],
            b"Filesystem 1K-blocks Used Available Use% Mounted on\n",
            b"Filesystem 1K-blocks Used Available Use% Mounted on\n/dev/a 1 2 x 3% /\n",
            b"Filesystem 1K-blocks Used Available Use% Mounted on\n/dev/a 1 2 3 3% /\n/dev/b 1 2 3 3% /x\n",
            b"df: /var/tmp: No such file or directory\n",
            b"Filesystem Size Used Avail Use% Mounted on\n/dev/a 1G 2G 3G 3% /\n",
        ] {
            assert!(parse_free_space(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
