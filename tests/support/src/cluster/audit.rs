//! The API server's audit log: the policy the test bed starts kube-apiserver with, and reading
//! the events back, so a test can say who wrote what and when ("an idle operator writes
//! nothing", "only the lease holder writes status").
//!
//! The policy records every write (`create`, `update`, `patch`, `delete`, `deletecollection`)
//! at `Metadata` level — who, what object, when, the response code; never a body — and nothing
//! else: no reads, no watches, and none of the cluster's own machinery (controller-manager and
//! its per-controller ServiceAccounts in `kube-system`, the scheduler, the kubelet, the API
//! server itself), whose steady background writes (node leases, node status) would drown the
//! tests' and the operator's. One event per request: the `RequestReceived` stage is omitted, so
//! each write is logged once, when its response is complete (with its code).

use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context, Result};
use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;

use super::TestCluster;

/// The audit policy (`audit.k8s.io/v1`), see the module documentation.
pub(super) const POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: None
    users: ["system:kube-controller-manager", "system:kube-scheduler", "system:apiserver"]
  - level: None
    userGroups: ["system:nodes", "system:serviceaccounts:kube-system"]
  - level: Metadata
    verbs: ["create", "update", "patch", "delete", "deletecollection"]
  - level: None
"#;

/// The extra field of a bound ServiceAccount token that names the pod it was issued for.
const POD_NAME_EXTRA: &str = "authentication.kubernetes.io/pod-name";

/// One write request, as the audit log records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    /// The authenticated user: `system:serviceaccount:<namespace>:<name>` for a ServiceAccount.
    pub user: String,
    /// The pod a ServiceAccount token was bound to (tokens the kubelet mounts into pods are), so
    /// that writes of pods sharing one ServiceAccount can be told apart. `None` for other
    /// credentials (client certificates, TokenRequest tokens without a bound pod).
    pub pod: Option<String>,
    pub verb: String,
    /// API group of the object; empty for the core group.
    pub api_group: String,
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// HTTP status code of the response (a refused or conflicting write is logged too).
    pub code: Option<u16>,
    /// When the API server received the request (microsecond precision).
    pub received: SystemTime,
    /// A server-side dry run (`?dryRun=All`): logged like a write, but it changed nothing
    /// (Flux dry-runs every apply to compute its diff).
    pub dry_run: bool,
}

impl AuditEvent {
    /// `resource` or `resource/subresource`, e.g. `escclusters/status`.
    pub fn full_resource(&self) -> String {
        match &self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource),
            None => self.resource.clone(),
        }
    }

    /// A one-line description for failure messages and reports.
    pub fn describe(&self) -> String {
        let at = Timestamp::try_from(self.received)
            .map(|t| t.to_string())
            .unwrap_or_default();
        format!(
            "{at} {} {} {}/{} {} -> {}{}",
            self.user,
            self.verb,
            self.namespace.as_deref().unwrap_or("-"),
            self.full_resource(),
            self.name.as_deref().unwrap_or("-"),
            self.code.map(|c| c.to_string()).unwrap_or_default(),
            self.pod
                .as_deref()
                .map(|p| format!(" (pod {p})"))
                .unwrap_or_default(),
        )
    }
}

impl TestCluster {
    /// The API server's audit log (JSON lines; see [`AuditEvent`]).
    pub fn audit_log_path(&self) -> std::path::PathBuf {
        self.dir.join("logs/audit.log")
    }

    /// The write requests the API server received at or after `since`, ordered by that time.
    ///
    /// The log backend writes each event before the response is sent (`--audit-log-mode`
    /// `blocking`, the default), so a write whose call has returned is in the log.
    pub fn audit_events_since(&self, since: SystemTime) -> Result<Vec<AuditEvent>> {
        read_audit_log(&self.audit_log_path(), since)
    }
}

/// The events in the log file received at or after `since`, ordered by the time the request
/// was received (the log is in the order the responses completed).
fn read_audit_log(path: &Path, since: SystemTime) -> Result<Vec<AuditEvent>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    // A line still being written has no newline yet: it is read next time.
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    let mut events = complete
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(parse_line)
        .collect::<Result<Vec<_>>>()
        .with_context(|| format!("parse {}", path.display()))?;
    events.retain(|e| e.received >= since);
    events.sort_by_key(|e| e.received);
    Ok(events)
}

/// The fields of an `audit.k8s.io/v1` Event that [`AuditEvent`] keeps.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEvent {
    verb: String,
    #[serde(default, rename = "requestURI")]
    request_uri: String,
    user: RawUser,
    object_ref: Option<RawObjectRef>,
    response_status: Option<RawStatus>,
    request_received_timestamp: String,
}

#[derive(Deserialize)]
struct RawUser {
    #[serde(default)]
    username: String,
    #[serde(default)]
    extra: std::collections::BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawObjectRef {
    #[serde(default)]
    api_group: String,
    #[serde(default)]
    resource: String,
    subresource: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct RawStatus {
    code: Option<u16>,
}

fn parse_line(line: &str) -> Result<AuditEvent> {
    let raw: RawEvent = serde_json::from_str(line)
        .with_context(|| format!("an audit event that does not parse: {line}"))?;
    let received: Timestamp = raw
        .request_received_timestamp
        .parse()
        .with_context(|| format!("requestReceivedTimestamp in {line}"))?;
    let object = raw.object_ref.unwrap_or_default();
    Ok(AuditEvent {
        pod: raw
            .user
            .extra
            .get(POD_NAME_EXTRA)
            .and_then(|v| v.first())
            .cloned(),
        user: raw.user.username,
        verb: raw.verb,
        api_group: object.api_group,
        resource: object.resource,
        subresource: object.subresource,
        namespace: object.namespace,
        name: object.name,
        code: raw.response_status.and_then(|s| s.code),
        received: SystemTime::from(received),
        dry_run: raw
            .request_uri
            .split_once('?')
            .is_some_and(|(_, query)| query.split('&').any(|kv| kv == "dryRun=All")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_status_patch_by_a_pod_token_keeps_who_what_and_when() {
        let line = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"0b0e","stage":"ResponseComplete","requestURI":"/apis/escoperator.dev/v1alpha1/namespaces/ns/escclusters/pair/status?fieldManager=esc-operator\u0026force=true","verb":"patch","user":{"username":"system:serviceaccount:ns:esc-operator","uid":"u","groups":["system:serviceaccounts","system:serviceaccounts:ns","system:authenticated"],"extra":{"authentication.kubernetes.io/credential-id":["JTI=1"],"authentication.kubernetes.io/pod-name":["esc-operator-a-6d5"],"authentication.kubernetes.io/pod-uid":["p"]}},"sourceIPs":["127.0.0.1"],"userAgent":"esc-operator","objectRef":{"resource":"escclusters","namespace":"ns","name":"pair","apiGroup":"escoperator.dev","apiVersion":"v1alpha1","subresource":"status"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-11-20T10:00:01.250000Z","stageTimestamp":"2026-11-20T10:00:01.260000Z"}"#;
        let e = parse_line(line).unwrap();
        assert_eq!(e.user, "system:serviceaccount:ns:esc-operator");
        assert_eq!(e.pod.as_deref(), Some("esc-operator-a-6d5"));
        assert_eq!(e.verb, "patch");
        assert_eq!(e.api_group, "escoperator.dev");
        assert_eq!(e.full_resource(), "escclusters/status");
        assert_eq!(e.namespace.as_deref(), Some("ns"));
        assert_eq!(e.name.as_deref(), Some("pair"));
        assert_eq!(e.code, Some(200));
        let at: Timestamp = "2026-11-20T10:00:01.25Z".parse().unwrap();
        assert_eq!(e.received, SystemTime::from(at));
        assert!(!e.dry_run);
    }

    #[test]
    fn a_server_side_dry_run_is_marked() {
        let event = |uri: &str| {
            format!(
                r#"{{"verb":"patch","requestURI":"{uri}","user":{{"username":"admin"}},"objectRef":{{"resource":"secrets","namespace":"ns","name":"s","apiVersion":"v1"}},"responseStatus":{{"code":200}},"requestReceivedTimestamp":"2026-11-20T10:00:01Z"}}"#
            )
        };
        let dry =
            r"/api/v1/namespaces/ns/secrets/s?dryRun=All\u0026fieldManager=kustomize-controller";
        assert!(parse_line(&event(dry)).unwrap().dry_run);
        let real = "/api/v1/namespaces/ns/secrets/s?fieldManager=dryRun%3DAll";
        assert!(!parse_line(&event(real)).unwrap().dry_run);
        assert!(
            !parse_line(&event("/api/v1/namespaces/ns/secrets/s"))
                .unwrap()
                .dry_run
        );
    }

    #[test]
    fn events_are_read_in_received_order_and_a_partial_last_line_waits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let event = |at: &str, name: &str| {
            format!(
                r#"{{"verb":"create","user":{{"username":"admin"}},"objectRef":{{"resource":"configmaps","namespace":"ns","name":"{name}","apiVersion":"v1"}},"responseStatus":{{"code":201}},"requestReceivedTimestamp":"{at}"}}"#
            )
        };
        let text = format!(
            "{}\n{}\n{}",
            event("2026-11-20T10:00:02Z", "second"),
            event("2026-11-20T10:00:01Z", "first"),
            &event("2026-11-20T10:00:03Z", "partial")[..40],
        );
        std::fs::write(&path, text).unwrap();
        let names = |since: SystemTime| -> Vec<String> {
            read_audit_log(&path, since)
                .unwrap()
                .into_iter()
                .map(|e| e.name.unwrap())
                .collect()
        };
        assert_eq!(names(SystemTime::UNIX_EPOCH), ["first", "second"]);
        let first: Timestamp = "2026-11-20T10:00:01Z".parse().unwrap();
        let just_after = SystemTime::from(first) + Duration::from_micros(1);
        assert_eq!(names(just_after), ["second"]);
        let events = read_audit_log(&path, SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(events[0].api_group, "");
        assert_eq!(events[0].pod, None);
        assert!(
            read_audit_log(&dir.path().join("absent"), SystemTime::UNIX_EPOCH)
                .unwrap()
                .is_empty()
        );
    }
}
