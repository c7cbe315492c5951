//! The API server's audit log of EVERY request, on request ([`super::ClusterOptions::audit_log`]):
//! the default log (`audit`) holds writes only; this one adds reads. Every request
//! that completed, at `Metadata` level (who, verb, resource, name, response code — no bodies),
//! one JSON line each, in `logs/audit.log`. For counting what a client really sends, including
//! writes that change nothing and so leave no new resourceVersion for a watch to see.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

use super::TestCluster;

/// Metadata of every request, logged once when its response is complete (a watch: when it
/// ends). `RequestReceived` and `ResponseStarted` are left out so that one line is one request.
const POLICY: &str = "\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
- level: Metadata
";

/// Writes the policy into `dir` and returns the kube-apiserver flags that log to `log`.
pub(super) fn apiserver_flags(dir: &Path, log: &Path) -> Result<Vec<String>> {
    let policy = dir.join("audit-policy-all-requests.yaml");
    std::fs::write(&policy, POLICY).with_context(|| format!("write {}", policy.display()))?;
    Ok(vec![
        format!("--audit-policy-file={}", policy.display()),
        format!("--audit-log-path={}", log.display()),
        // Never rotated while a test reads it by offset (the default rotates at 100 MB).
        "--audit-log-maxsize=100000".into(),
        // Written before the response is sent: a request the client saw answered is in the log.
        "--audit-log-mode=blocking".into(),
    ])
}

/// One completed request.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub verb: String,
    pub user: AuditUser,
    #[serde(default)]
    pub object_ref: Option<AuditObject>,
    #[serde(default)]
    pub response_status: Option<AuditStatus>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct AuditUser {
    pub username: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditObject {
    #[serde(default)]
    pub resource: String,
    #[serde(default)]
    pub subresource: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct AuditStatus {
    #[serde(default)]
    pub code: Option<u16>,
}

impl AuditEntry {
    /// `create`, `update`, `patch`, `delete`, `deletecollection`: the request asked for a change
    /// (whether or not it changed anything).
    pub fn is_write(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        )
    }

    /// `resource` or `resource/subresource` (`escclusters/status`); empty for non-resource
    /// requests such as `/readyz`.
    pub fn resource(&self) -> String {
        match &self.object_ref {
            Some(AuditObject {
                resource,
                subresource: Some(sub),
                ..
            }) => format!("{resource}/{sub}"),
            Some(o) => o.resource.clone(),
            None => String::new(),
        }
    }

    pub fn code(&self) -> Option<u16> {
        self.response_status.as_ref().and_then(|s| s.code)
    }
}

/// The audit log of a cluster started with [`super::ClusterOptions::audit_log`]. Positions are
/// byte offsets: take one before and one after what is measured, then read what lies between.
pub struct AuditLog {
    path: PathBuf,
}

impl TestCluster {
    /// The audit log; `None` when the cluster was started without one.
    pub fn audit_log(&self) -> Option<AuditLog> {
        self.options.audit_log.then(|| AuditLog {
            path: self.audit_log_path(),
        })
    }
}

impl AuditLog {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The end of the log now.
    pub fn position(&self) -> Result<u64> {
        Ok(std::fs::metadata(&self.path)
            .with_context(|| format!("stat {}", self.path.display()))?
            .len())
    }

    /// The requests logged between two positions. The API server writes each line with one
    /// write, so positions fall between lines; a line cut by either end is skipped all the same.
    pub fn between(&self, from: u64, to: u64) -> Result<Vec<AuditEntry>> {
        let mut f = std::fs::File::open(&self.path)
            .with_context(|| format!("open {}", self.path.display()))?;
        f.seek(SeekFrom::Start(from))?;
        let mut text = String::new();
        f.take(to.saturating_sub(from)).read_to_string(&mut text)?;
        text.truncate(text.rfind('\n').map_or(0, |i| i + 1));
        let mut entries = Vec::new();
        for line in text.lines().filter(|l| l.starts_with('{')) {
            entries.push(
                serde_json::from_str(line)
                    .with_context(|| format!("audit log line: {line:.200}"))?,
            );
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATCH: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a","stage":"ResponseComplete","requestURI":"/apis/escoperator.dev/v1alpha1/namespaces/n/escclusters/c/status?fieldManager=esc-operator\u0026force=true","verb":"patch","user":{"username":"system:serviceaccount:n:esc-operator","groups":["system:serviceaccounts"]},"objectRef":{"resource":"escclusters","namespace":"n","name":"c","apiGroup":"escoperator.dev","apiVersion":"v1alpha1","subresource":"status"},"responseStatus":{"metadata":{},"code":200}}"#;
    const READYZ: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"b","stage":"ResponseComplete","requestURI":"/readyz","verb":"get","user":{"username":"system:anonymous"},"responseStatus":{"metadata":{},"code":200}}"#;

    #[test]
    fn reads_whole_lines_between_positions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let first = format!("{READYZ}\n");
        // The second line is still being written: only its first half is in the file.
        let text = format!("{first}{PATCH}\n{}", &READYZ[..40]);
        std::fs::write(&path, &text).unwrap();
        let log = AuditLog { path };
        assert_eq!(log.position().unwrap(), text.len() as u64);

        let all = log.between(0, log.position().unwrap()).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].resource(), "");
        assert!(!all[0].is_write());
        assert_eq!(all[1].resource(), "escclusters/status");
        assert_eq!(all[1].user.username, "system:serviceaccount:n:esc-operator");
        assert_eq!(all[1].code(), Some(200));
        assert!(all[1].is_write());

        let later = log.between(first.len() as u64, text.len() as u64).unwrap();
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].verb, "patch");
        // A start inside a line skips that line's rest.
        let cut = log.between(5, first.len() as u64 + 10).unwrap();
        assert!(cut.is_empty(), "{cut:?}");
    }
}
