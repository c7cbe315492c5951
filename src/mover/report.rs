//! What the mover tells the operator: one [`MoverReport`] in the termination-message file at the
//! end (the kubelet copies it into the pod's status, where the controller reads it), and JSON
//! progress lines on stdout while it runs ([`ProgressLine`]).
//!
//! Both are part of the contract with the EscBackup and EscRestore controllers, beside
//! [`crate::mover::request`]. A report never holds a secret: messages are built from the
//! mover's own errors, which never quote credentials.
//!
//! Owns: [`MoverReport`], [`MoverStep`], [`ProgressLine`], and fitting a report into the
//! termination message's 4 KiB. Pure; imports [`crate::mover::manifest`], [`Sha256Digest`] and
//! [`Time`].

use serde::{Deserialize, Serialize};

use crate::api::Time;
use crate::esc::Sha256Digest;
use crate::mover::manifest::{ClusterRef, Member, digest_hex};

/// Kubernetes keeps at most 4096 bytes of a termination message.
pub const TERMINATION_MESSAGE_LIMIT: usize = 4096;

/// The step a mover run was in.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MoverStep {
    /// Reading and checking the request and the mounted credentials.
    ReadRequest,
    /// Connecting to the ESC nodes (and, for SFTP, the target host); a staging run also opens
    /// the stored artifact for reading here.
    Connect,
    /// Taking each member's size and SHA-256 on its node.
    Inspect,
    /// Streaming the archive into the sink; a staging run streams it from the store and its
    /// database member onto the node.
    Transfer,
    /// Checking the stored artifact's size (and digest metadata); a staging run checks the
    /// whole artifact's digest against the request and the staged file's on the node.
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
    /// A restore's staging run: the database member is on the node, verified.
    #[serde(rename_all = "camelCase")]
    Staged {
        staged_path: String,
        /// The database member on the node: its size and SHA-256 (re-taken on the node with
        /// `sha256sum` after the write, equal to the manifest's).
        size: u64,
        #[serde(with = "digest_hex")]
        sha256: Sha256Digest,
        /// The whole artifact as read (size, SHA-256 equal to the request's).
        artifact_size: u64,
        #[serde(with = "digest_hex")]
        artifact_sha256: Sha256Digest,
        /// From the manifest: where and when the backup was taken (the controller checks the
        /// version against the cluster's before `escadm restore`).
        esc_version: String,
        cluster: ClusterRef,
        created_at: Time,
        /// The Transfer step's duration: reading the artifact whole and writing the member.
        seconds: f64,
        /// `artifactSize / seconds`.
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

    /// Whether the run did its work (a backup stored, or a database member staged).
    pub fn succeeded(&self) -> bool {
        matches!(
            self,
            MoverReport::Succeeded { .. } | MoverReport::Staged { .. }
        )
    }

    /// The report's JSON, at most [`TERMINATION_MESSAGE_LIMIT`] bytes: a long failure message
    /// is cut (on a character boundary, marked with `…`). A success with so many members that
    /// it does not fit keeps the members' names, sizes and digests and drops their paths. A
    /// staging report is bounded by its request (a path of at most 4 KiB is the longest field):
    /// one that still does not fit keeps the end of its path, the file's name.
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
            MoverReport::Staged { staged_path, .. } => {
                let mut short = self.clone();
                let skeleton = {
                    if let MoverReport::Staged { staged_path, .. } = &mut short {
                        *staged_path = "…".into();
                    }
                    json(&short).len()
                };
                let budget = TERMINATION_MESSAGE_LIMIT.saturating_sub(skeleton);
                // Keep the tail: the file's name says more than the directories above it.
                let (mut used, mut start) = (0, staged_path.len());
                for (i, c) in staged_path.char_indices().rev() {
                    let escaped = serde_json::to_string(&c).map_or(6, |s| s.len() - 2);
                    if used + escaped > budget {
                        break;
                    }
                    used += escaped;
                    start = i;
                }
                if let MoverReport::Staged { staged_path: p, .. } = &mut short {
                    *p = format!("…{}", &staged_path[start..]);
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

    fn staged(path: &str) -> MoverReport {
        MoverReport::Staged {
            staged_path: path.into(),
            size: 3,
            sha256: Sha256Digest([1; 32]),
            artifact_size: 10240,
            artifact_sha256: Sha256Digest([0xab; 32]),
            esc_version: "5.10.0.95".into(),
            cluster: ClusterRef {
                namespace: "esc".into(),
                name: "prod".into(),
            },
            created_at: Time("2026-11-29T10:00:00Z".parse().unwrap()),
            seconds: 2.0,
            bytes_per_second: 5120.0,
        }
    }

    #[test]
    fn a_staged_report_has_the_contract_spelling() {
        let ok = staged("/var/tmp/esc-restore/r1/db.tar.bz2");
        assert!(ok.succeeded());
        assert!(!MoverReport::failed(MoverStep::Verify, "ChecksumMismatch", "x").succeeded());
        let v: serde_json::Value = serde_json::from_str(&ok.to_termination_message()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "result": "Staged",
                "stagedPath": "/var/tmp/esc-restore/r1/db.tar.bz2",
                "size": 3,
                "sha256": "01".repeat(32),
                "artifactSize": 10240,
                "artifactSha256": "ab".repeat(32),
                "escVersion": "5.10.0.95",
                "cluster": {"namespace": "esc", "name": "prod"},
                "createdAt": "2026-11-29T10:00:00Z",
                "seconds": 2.0,
                "bytesPerSecond": 5120.0
            })
        );
        let back: MoverReport = serde_json::from_value(v).unwrap();
        assert_eq!(back, ok);
    }

    #[test]
    fn a_staged_report_with_the_longest_path_fits() {
        for unit in ["a", "é", "\"", "\u{1}"] {
            let path = format!("/{}/db.tar.bz2", unit.repeat(4096));
            let text = staged(&path).to_termination_message();
            assert!(
                text.len() <= TERMINATION_MESSAGE_LIMIT,
                "{unit:?}: {}",
                text.len()
            );
            let back: MoverReport = serde_json::from_str(&text).unwrap();
            let MoverReport::Staged {
                staged_path,
                sha256,
                ..
            } = back
            else {
                panic!("{text}")
            };
            assert!(staged_path.starts_with('…') && staged_path.ends_with("/db.tar.bz2"));
            assert!(staged_path.chars().count() > 500, "{unit:?}");
            assert_eq!(sha256, Sha256Digest([1; 32]));
        }
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
