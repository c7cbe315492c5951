//! What the mover tells the operator: one [`MoverReport`] in the termination-message file at the
//! end (the kubelet copies it into the pod's status, where the controller reads it), and JSON
//! progress lines on stdout while it runs ([`ProgressLine`]).
//!
//! Both are part of the contract with the EscBackup controller, beside
//! [`crate::mover::request`]. A report never holds a secret: messages are built from the
//! mover's own errors, which never quote credentials.
//!
//! Owns: [`MoverReport`], [`MoverStep`], [`ProgressLine`], and fitting a report into the
//! termination message's 4 KiB. Pure; imports [`crate::mover::manifest`] and [`Sha256Digest`].

use serde::{Deserialize, Serialize};

use crate::esc::Sha256Digest;
use crate::mover::manifest::{Member, digest_hex};

/// Kubernetes keeps at most 4096 bytes of a termination message.
pub const TERMINATION_MESSAGE_LIMIT: usize = 4096;

/// The step a mover run was in.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MoverStep {
    /// Reading and checking the request and the mounted credentials.
    ReadRequest,
    /// Connecting to the ESC nodes (and, for SFTP, the target host).
    Connect,
    /// Taking each member's size and SHA-256 on its node.
    Inspect,
    /// Streaming the archive into the sink.
    Transfer,
    /// Checking the stored artifact's size (and digest metadata).
    Verify,
}

/// The outcome of one mover run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "result")]
pub enum MoverReport {
    #[serde(rename_all = "camelCase")]
    Succeeded {
        /// `s3://bucket/key` or `sftp://user@host:port/path`.
        uri: String,
        /// The artifact's size in bytes, as the store reports it.
        size: u64,
        /// The artifact's SHA-256 (hex).
        #[serde(with = "digest_hex")]
        sha256: Sha256Digest,
        /// The archive's members, as in its manifest.
        members: Vec<Member>,
        /// The Transfer step's duration: streaming the archive and finishing the sink
        /// (completing the upload, the digest metadata, the sidecar).
        seconds: f64,
        /// `size / seconds`.
        bytes_per_second: f64,
    },
    #[serde(rename_all = "camelCase")]
    Failed {
        step: MoverStep,
        /// A short, stable CamelCase word (`S3AccessDenied`, `HostKeyMismatch`, ...).
        reason: String,
        /// What happened and what the user can do.
        message: String,
    },
}

impl MoverReport {
    /// A failure report.
    pub fn failed(step: MoverStep, reason: impl Into<String>, message: impl Into<String>) -> Self {
        MoverReport::Failed {
            step,
            reason: reason.into(),
            message: message.into(),
        }
    }

    pub fn succeeded(&self) -> bool {
        matches!(self, MoverReport::Succeeded { .. })
    }

    /// The report's JSON, at most [`TERMINATION_MESSAGE_LIMIT`] bytes: a long failure message
    /// is cut (on a character boundary, marked with `…`). A success with so many members that
    /// it does not fit keeps the members' names, sizes and digests and drops their paths.
    pub fn to_termination_message(&self) -> String {
        let json = |r: &MoverReport| serde_json::to_string(r).unwrap_or_default();
        let full = json(self);
        if full.len() <= TERMINATION_MESSAGE_LIMIT {
            return full;
        }
        match self {
            MoverReport::Failed {
                step,
                reason,
                message,
            } => {
                // JSON escaping makes some characters longer than their text: count each
                // one's escaped length against what the rest of the report leaves.
                let skeleton = json(&MoverReport::failed(*step, reason.clone(), "…")).len();
                let budget = TERMINATION_MESSAGE_LIMIT.saturating_sub(skeleton);
                let (mut used, mut end) = (0, 0);
                for (i, c) in message.char_indices() {
                    let escaped = serde_json::to_string(&c).map_or(6, |s| s.len() - 2);
                    if used + escaped > budget {
                        break;
                    }
                    used += escaped;
                    end = i + c.len_utf8();
                }
                json(&MoverReport::failed(
                    *step,
                    reason.clone(),
                    format!("{}…", &message[..end]),
                ))
            }
            MoverReport::Succeeded { .. } => {
                let mut short = self.clone();
                if let MoverReport::Succeeded { members, .. } = &mut short {
                    for m in members.iter_mut() {
                        m.path.clear();
                    }
                }
                json(&short)
            }
        }
    }
}

/// One line of progress on stdout.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum ProgressLine {
    /// A step begins.
    Step { step: MoverStep },
    /// Bytes written to the sink so far, of the archive's total.
    #[serde(rename_all = "camelCase")]
    Progress {
        bytes: u64,
        total_bytes: u64,
        bytes_per_second: f64,
    },
}

impl ProgressLine {
    /// The line, without its newline.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Prints the line on stdout (one write, so lines never interleave).
    pub fn print(&self) {
        use std::io::Write;
        let mut line = self.to_json();
        line.push('\n');
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(line.as_bytes());
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mover::manifest::MemberKind;

    #[test]
    fn reports_have_the_contract_spelling() {
        let ok = MoverReport::Succeeded {
            uri: "s3://b/k".into(),
            size: 10240,
            sha256: Sha256Digest([0xab; 32]),
            members: vec![Member {
                name: "database".into(),
                path: "database/db.tar.bz2".into(),
                kind: MemberKind::Database,
                size: 3,
                sha256: Sha256Digest([1; 32]),
                source_node: "esc-a".into(),
            }],
            seconds: 1.5,
            bytes_per_second: 6826.0,
        };
        let v: serde_json::Value = serde_json::from_str(&ok.to_termination_message()).unwrap();
        assert_eq!(v["result"], "Succeeded");
        assert_eq!(v["sha256"], "ab".repeat(32));
        assert_eq!(v["bytesPerSecond"], 6826.0);
        assert_eq!(v["members"][0]["sourceNode"], "esc-a");
        let back: MoverReport = serde_json::from_value(v).unwrap();
        assert_eq!(back, ok);

        let failed = MoverReport::failed(MoverStep::Transfer, "NoSuchBucket", "no bucket b");
        let v: serde_json::Value = serde_json::to_value(&failed).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"result": "Failed", "step": "Transfer", "reason": "NoSuchBucket", "message": "no bucket b"})
        );

        let p = ProgressLine::Progress {
            bytes: 5,
            total_bytes: 10,
            bytes_per_second: 2.5,
        };
        assert_eq!(
            p.to_json(),
            r#"{"event":"progress","bytes":5,"totalBytes":10,"bytesPerSecond":2.5}"#
        );
        assert_eq!(
            ProgressLine::Step {
                step: MoverStep::Verify
            }
            .to_json(),
            r#"{"event":"step","step":"Verify"}"#
        );
    }

    #[test]
    fn a_long_failure_fits_the_termination_message() {
        for unit in ["x", "é", "\"", "\u{1}"] {
            let long = MoverReport::failed(MoverStep::Connect, "AuthRejected", unit.repeat(9000));
            let text = long.to_termination_message();
            assert!(
                text.len() <= TERMINATION_MESSAGE_LIMIT,
                "{unit:?}: {}",
                text.len()
            );
            let back: MoverReport = serde_json::from_str(&text).unwrap();
            let MoverReport::Failed {
                reason, message, ..
            } = back
            else {
                panic!()
            };
            assert_eq!(reason, "AuthRejected");
            assert!(
                message.ends_with('…') && message.chars().count() > 600,
                "{unit:?}"
            );
        }
    }
}
