//! The mover's input: [`MoverRequest`] (a backup) or [`StageRequest`] (a restore's staging), the
//! JSON the controller puts in the Job's environment ([`REQUEST_ENV`]), and their checks. A
//! request holds no secret: credentials arrive as files in read-only Secret volumes, and the
//! request only names their directories.
//!
//! The controller builds the request (it knows the cluster, the nodes and the files it left on
//! them); the mover reads it, checks it ([`MoverRequest::validate`],
//! [`StageRequest::validate`]) before any network I/O, and for a backup fills the manifest's
//! members with the sizes and digests it takes on the nodes.
//!
//! Owns: the request schemas (the contract between the EscBackup and EscRestore controllers and
//! the mover; the version is [`REQUEST_VERSION`]), [`RequestError`]. Pure; imports [`crate::mover::manifest`],
//! the ESC vocabulary ([`RemotePath`]) and the [`crate::api`] storage words.

use std::collections::HashSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::api::{ChecksumMode, ServerSideEncryption};
use crate::esc::{RemotePath, Sha256Digest};
use crate::mover::manifest::{Manifest, ManifestError, MemberKind};

/// The environment variable that carries the request's JSON.
pub const REQUEST_ENV: &str = "ESC_MOVER_REQUEST";

/// The request version this build reads and writes. A change to the schema bumps it, so a mover
/// from an older image refuses a newer controller's request instead of misreading it.
pub const REQUEST_VERSION: u32 = 1;

/// The smallest multipart part S3 accepts (except the last).
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// The largest part S3 accepts.
pub const MAX_PART_SIZE: u64 = 5 << 30;
/// The default part size.
pub const DEFAULT_PART_SIZE: u64 = 8 << 20;
/// The default number of parts in flight.
pub const DEFAULT_CONCURRENCY: u32 = 4;
/// The most parts in flight: memory is about `part_size × (concurrency + 1)`.
pub const MAX_CONCURRENCY: u32 = 32;

/// What one mover run does: read `members` from the nodes over SSH and stream them, after the
/// manifest, into one archive in `sink`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MoverRequest {
    /// [`REQUEST_VERSION`].
    pub version: u32,
    /// The manifest's fields the controller knows (cluster, nodes and roles, escVersion,
    /// createdAt), with `members: []`: the mover fills them (size and SHA-256 taken on the node
    /// with `stat` and `sha256sum` before streaming) and sets `finishedAt` when they are known.
    pub manifest: Manifest,
    pub ssh: MoverSsh,
    /// The files to read, in archive order.
    pub members: Vec<MemberSource>,
    pub sink: SinkSpec,
    /// The period of the JSON progress lines on stdout, in seconds.
    #[serde(default = "default_progress_interval")]
    pub progress_interval_seconds: u64,
}

fn default_progress_interval() -> u64 {
    5
}

/// What one restore staging run does: read the artifact from `store`, check it whole, and write
/// its database member to `stagedPath` on `node`.
///
/// The staged file is what `escadm restore` reads next; the controller runs that step itself,
/// so the mover's part ends once the file is on the node and verified there.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StageRequest {
    /// [`REQUEST_VERSION`].
    pub version: u32,
    /// Where the artifact is: the same location a backup writes (write-only fields such as the
    /// part size, storage class or SSE are not used for reading).
    pub store: SinkSpec,
    /// The whole artifact's expected SHA-256 (64 lower-case hex): nothing is kept unless every
    /// byte matches.
    pub sha256: String,
    pub ssh: MoverSsh,
    pub node: StageNode,
    /// Absolute path on the node for the database member (its parent directory is created).
    pub staged_path: String,
    /// The period of the JSON progress lines on stdout, in seconds.
    #[serde(default = "default_progress_interval")]
    pub progress_interval_seconds: u64,
}

/// The ESC node the database member is staged on (the one `escadm restore` runs on).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StageNode {
    /// The node's name in the EscCluster's spec (for messages).
    pub name: String,
    /// Where to reach the node over SSH.
    pub host: String,
    pub port: u16,
}

/// How the mover logs in to the ESC nodes (the same user and credentials for all).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MoverSsh {
    pub user: String,
    /// A directory with the file `ssh-privatekey` (and optional `passphrase`), or `password`:
    /// the keys of the cluster's credentials Secret, mounted as a volume.
    pub credentials_dir: PathBuf,
    /// An OpenSSH known_hosts file: host keys are always verified.
    pub known_hosts_file: PathBuf,
    /// TCP connect plus SSH handshake, per node.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_seconds: u64,
    /// Run the node-side commands (`stat`, `sha256sum`, `cat`) through `sudo -n`, as the
    /// operator runs escadm for such a cluster (`spec.ssh.sudo`): the files escadm wrote as root
    /// are readable by root only.
    #[serde(default)]
    pub sudo: bool,
}

fn default_connect_timeout() -> u64 {
    20
}

/// One file on one node: a member of the archive.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MemberSource {
    pub kind: MemberKind,
    /// The node's name (one of the manifest's `nodes`).
    pub node: String,
    /// Where to reach the node over SSH.
    pub host: String,
    pub port: u16,
    /// The absolute path of the file on the node.
    pub path: String,
    /// An absent file is skipped, not an error (the dynamic mapping file exists only on some
    /// nodes). A file that exists but cannot be read is still an error.
    #[serde(default)]
    pub optional: bool,
}

/// Where the archive goes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub enum SinkSpec {
    S3(S3Sink),
    Sftp(SftpSink),
}

/// An S3 object (multipart upload) and its `.sha256` sidecar.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct S3Sink {
    pub bucket: String,
    /// The object's key; the sidecar is `KEY.sha256`.
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub force_path_style: bool,
    #[serde(default)]
    pub checksum_mode: ChecksumMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse: Option<ServerSideEncryption>,
    /// Multipart part size ([`MIN_PART_SIZE`] to [`MAX_PART_SIZE`]).
    #[serde(default = "default_part_size")]
    pub part_size_bytes: u64,
    /// Parts in flight (1 to [`MAX_CONCURRENCY`]).
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// A directory with the files `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (and optional
    /// `AWS_SESSION_TOKEN`); `None`: the ambient credentials (environment, web identity,
    /// instance profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_dir: Option<PathBuf>,
    /// A PEM CA bundle that signed the endpoint's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle_file: Option<PathBuf>,
}

fn default_part_size() -> u64 {
    DEFAULT_PART_SIZE
}

fn default_concurrency() -> u32 {
    DEFAULT_CONCURRENCY
}

/// A file on an SSH host, written over SFTP; the sidecar is `PATH.sha256`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SftpSink {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// The final absolute path of the artifact.
    pub path: String,
    /// Files `ssh-privatekey` (and optional `passphrase`) or `password`.
    pub credentials_dir: PathBuf,
    /// An OpenSSH known_hosts file with the host's key.
    pub known_hosts_file: PathBuf,
}

/// A request the mover refuses before doing anything.
#[derive(Debug, Error)]
pub enum RequestError {
    #[error(
        "the environment variable {REQUEST_ENV} is not set: the mover runs only in a Job the operator made"
    )]
    Missing,
    #[error("the request in {REQUEST_ENV} is not valid JSON of the request schema: {0}")]
    Unreadable(String),
    #[error(
        "the request's version {found} is not the {REQUEST_VERSION} this mover reads: the operator and the mover image differ"
    )]
    Version { found: u32 },
    #[error("the request is invalid: {0}")]
    Invalid(String),
    #[error("the request's manifest is invalid: {0}")]
    Manifest(#[from] ManifestError),
}

impl RequestError {
    /// A short, stable CamelCase reason.
    pub fn reason(&self) -> &'static str {
        match self {
            RequestError::Missing => "RequestMissing",
            RequestError::Unreadable(_) => "RequestUnreadable",
            RequestError::Version { .. } => "RequestVersionMismatch",
            RequestError::Invalid(_) | RequestError::Manifest(_) => "RequestInvalid",
        }
    }
}

fn invalid(detail: impl Into<String>) -> RequestError {
    RequestError::Invalid(detail.into())
}

/// Deserializes a request of [`REQUEST_VERSION`]. The version is read first, alone: a newer
/// schema deserves "versions differ", not a complaint about a field this build does not know.
fn parse_versioned<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, RequestError> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| RequestError::Unreadable(e.to_string()))?;
    match value.get("version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(REQUEST_VERSION) => {}
        Some(v) => {
            return Err(RequestError::Version {
                found: u32::try_from(v).unwrap_or(u32::MAX),
            });
        }
        None => {
            return Err(RequestError::Unreadable(
                "no version (a positive integer)".into(),
            ));
        }
    }
    serde_json::from_value(value).map_err(|e| RequestError::Unreadable(e.to_string()))
}

/// The checks both requests make of the SSH login to the ESC nodes.
fn validate_ssh(ssh: &MoverSsh) -> Result<(), RequestError> {
    if ssh.user.is_empty() {
        return Err(invalid("ssh.user is empty"));
    }
    if ssh.connect_timeout_seconds == 0 {
        return Err(invalid("ssh.connectTimeoutSeconds must be at least 1"));
    }
    Ok(())
}

impl MoverRequest {
    /// Reads and checks the request from [`REQUEST_ENV`].
    pub fn from_env() -> Result<Self, RequestError> {
        let json = std::env::var(REQUEST_ENV).map_err(|_| RequestError::Missing)?;
        Self::parse(&json)
    }

    /// Parses and checks a request.
    pub fn parse(json: &str) -> Result<Self, RequestError> {
        let request: MoverRequest = parse_versioned(json)?;
        request.validate()?;
        Ok(request)
    }

    /// The request as JSON, for the Job's environment (checked first: the controller never
    /// starts a Job the mover would refuse).
    pub fn to_json(&self) -> Result<String, RequestError> {
        self.validate()?;
        serde_json::to_string(self).map_err(|e| invalid(e.to_string()))
    }

    /// The rules beyond the schema.
    pub fn validate(&self) -> Result<(), RequestError> {
        if self.version != REQUEST_VERSION {
            return Err(RequestError::Version {
                found: self.version,
            });
        }
        if !self.manifest.members.is_empty() {
            return Err(invalid(
                "manifest.members must be empty: the mover fills them from the nodes",
            ));
        }
        // The manifest's own rules, except those about members (it has none yet).
        self.manifest.validate_header()?;
        if self.progress_interval_seconds == 0 {
            return Err(invalid("progressIntervalSeconds must be at least 1"));
        }
        validate_ssh(&self.ssh)?;
        self.validate_members()?;
        self.sink.validate("sink")
    }

    fn validate_members(&self) -> Result<(), RequestError> {
        let nodes: HashSet<&str> = self
            .manifest
            .nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect();
        let mut databases = 0;
        let mut seen = HashSet::new();
        for (i, m) in self.members.iter().enumerate() {
            let at = format!("members[{i}]");
            if !nodes.contains(m.node.as_str()) {
                return Err(invalid(format!(
                    "{at}: node {:?} is not among the manifest's nodes",
                    m.node
                )));
            }
            if m.host.is_empty() || m.port == 0 {
                return Err(invalid(format!("{at}: host and port are required")));
            }
            RemotePath::new(m.path.clone()).map_err(|e| invalid(format!("{at}: {e}")))?;
            if m.kind == MemberKind::Database {
                databases += 1;
                if m.optional {
                    return Err(invalid(format!("{at}: the database can not be optional")));
                }
            }
            // The manifest names members by kind (and node, for logs): two sources with the
            // same name would collide in the archive.
            let name = match m.kind {
                MemberKind::Logs => format!("logs-{}", m.node),
                other => other.to_string(),
            };
            if !seen.insert(name.clone()) {
                return Err(invalid(format!("{at}: a second {name} member")));
            }
        }
        if databases != 1 {
            return Err(invalid(format!(
                "{databases} database members; exactly one is required"
            )));
        }
        Ok(())
    }
}

impl StageRequest {
    /// Reads and checks the request from [`REQUEST_ENV`].
    pub fn from_env() -> Result<Self, RequestError> {
        let json = std::env::var(REQUEST_ENV).map_err(|_| RequestError::Missing)?;
        Self::parse(&json)
    }

    /// Parses and checks a request.
    pub fn parse(json: &str) -> Result<Self, RequestError> {
        let request: StageRequest = parse_versioned(json)?;
        request.validate()?;
        Ok(request)
    }

    /// The request as JSON, for the Job's environment (checked first: the controller never
    /// starts a Job the mover would refuse).
    pub fn to_json(&self) -> Result<String, RequestError> {
        self.validate()?;
        serde_json::to_string(self).map_err(|e| invalid(e.to_string()))
    }

    /// The rules beyond the schema.
    pub fn validate(&self) -> Result<(), RequestError> {
        if self.version != REQUEST_VERSION {
            return Err(RequestError::Version {
                found: self.version,
            });
        }
        self.expected_sha256()?;
        if self.progress_interval_seconds == 0 {
            return Err(invalid("progressIntervalSeconds must be at least 1"));
        }
        validate_ssh(&self.ssh)?;
        if self.node.name.is_empty() || self.node.host.is_empty() || self.node.port == 0 {
            return Err(invalid("node: name, host and port are required"));
        }
        let path = RemotePath::new(self.staged_path.clone())
            .map_err(|e| invalid(format!("stagedPath: {e}")))?;
        // The mover creates the parent and removes the file on failure: a path that names a
        // directory, or climbs out of one, would make either touch something else.
        if path.as_str().ends_with('/') || path.as_str().split('/').any(|c| c == "..") {
            return Err(invalid(
                "stagedPath must be a file path, not ending in '/' and without '..' components",
            ));
        }
        self.store.validate("store")
    }

    /// [`StageRequest::sha256`] as a digest; the request is refused unless it is 64 lower-case
    /// hex digits (the spelling the backup's status and sidecar use, so one digest has one
    /// spelling everywhere).
    pub fn expected_sha256(&self) -> Result<Sha256Digest, RequestError> {
        let well_formed = self.sha256.len() == 64
            && self
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !well_formed {
            return Err(invalid(format!(
                "sha256 must be 64 lower-case hex digits (the artifact's SHA-256), not {:?}",
                crate::esc::text::clip(&self.sha256, 80)
            )));
        }
        self.sha256
            .parse()
            .map_err(|e| invalid(format!("sha256: {e}")))
    }
}

impl S3Sink {
    fn validate(&self, at: &str) -> Result<(), RequestError> {
        if self.bucket.is_empty() {
            return Err(invalid(format!("{at}.s3.bucket is empty")));
        }
        if self.key.is_empty() || self.key.ends_with('/') || self.key.len() > 1000 {
            return Err(invalid(format!(
                "{at}.s3.key must be an object key (not empty, not ending in '/', at most 1000 bytes)"
            )));
        }
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size_bytes) {
            return Err(invalid(format!(
                "{at}.s3.partSizeBytes {} is outside {MIN_PART_SIZE}..={MAX_PART_SIZE} (S3's limits)",
                self.part_size_bytes
            )));
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return Err(invalid(format!(
                "{at}.s3.concurrency {} is outside 1..={MAX_CONCURRENCY}",
                self.concurrency
            )));
        }
        if let Some(endpoint) = &self.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(invalid(format!(
                "{at}.s3.endpoint must be an http:// or https:// URL"
            )));
        }
        if let Some(endpoint) = &self.endpoint
            && endpoint.contains('@')
        {
            return Err(invalid(format!(
                "{at}.s3.endpoint must not hold credentials"
            )));
        }
        Ok(())
    }

    /// `s3://BUCKET/KEY`.
    pub fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    /// The sidecar's key.
    pub fn sidecar_key(&self) -> String {
        format!("{}.sha256", self.key)
    }
}

impl SftpSink {
    fn validate(&self, at: &str) -> Result<(), RequestError> {
        if self.host.is_empty() || self.port == 0 || self.user.is_empty() {
            return Err(invalid(format!(
                "{at}.sftp: host, port and user are required"
            )));
        }
        RemotePath::new(self.path.clone()).map_err(|e| invalid(format!("{at}.sftp.path: {e}")))?;
        if self.path.ends_with('/') || self.path.split('/').any(|c| c == "..") {
            return Err(invalid(format!(
                "{at}.sftp.path must be the artifact's file path, without '..' components"
            )));
        }
        Ok(())
    }

    /// `sftp://USER@HOST:PORT/PATH`.
    pub fn uri(&self) -> String {
        format!(
            "sftp://{}@{}:{}{}",
            self.user, self.host, self.port, self.path
        )
    }

    /// The sidecar's path.
    pub fn sidecar_path(&self) -> String {
        format!("{}.sha256", self.path)
    }
}

impl SinkSpec {
    /// The store's rules; `at` names the field in messages (`sink` of a backup, `store` of a
    /// staging run).
    fn validate(&self, at: &str) -> Result<(), RequestError> {
        match self {
            SinkSpec::S3(s3) => s3.validate(at),
            SinkSpec::Sftp(sftp) => sftp.validate(at),
        }
    }

    /// Where the artifact is stored, as a URI.
    pub fn uri(&self) -> String {
        match self {
            SinkSpec::S3(s) => s.uri(),
            SinkSpec::Sftp(s) => s.uri(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request as the controller would write it (HA, S3).
    pub(crate) fn example_json() -> serde_json::Value {
        serde_json::json!({
            "version": 1,
            "manifest": {
                "formatVersion": 1,
                "cluster": {"namespace": "esc", "name": "prod"},
                "nodes": [{"name": "esc-a", "role": "MASTER"}, {"name": "esc-b", "role": "BACKUP"}],
                "escVersion": "5.10.0.95",
                "createdAt": "2026-11-29T10:00:00Z",
                "finishedAt": "2026-11-29T10:00:00Z",
                "members": []
            },
            "ssh": {
                "user": "admin",
                "credentialsDir": "/var/run/esc/ssh",
                "knownHostsFile": "/var/run/esc/known_hosts/known_hosts",
                "connectTimeoutSeconds": 10
            },
            "members": [
                {"kind": "Database", "node": "esc-a", "host": "10.0.0.5", "port": 22, "path": "/tmp/db.tar.bz2"},
                {"kind": "Logs", "node": "esc-a", "host": "10.0.0.5", "port": 22, "path": "/tmp/logs-a.tar.gz"},
                {"kind": "Logs", "node": "esc-b", "host": "10.0.0.6", "port": 22, "path": "/tmp/logs-b.tar.gz"},
                {"kind": "DynamicMapping", "node": "esc-a", "host": "10.0.0.5", "port": 22,
                 "path": "/opt/cisco/esc/esc-dynamic-mapping/dynamic_mappings.xml", "optional": true}
            ],
            "sink": {"s3": {"bucket": "backups", "key": "esc/prod/b1.tar", "endpoint": "https://minio:9000",
                            "forcePathStyle": true, "checksumMode": "WhenRequired",
                            "credentialsDir": "/var/run/esc/s3"}},
            "progressIntervalSeconds": 2
        })
    }

    fn parse(v: &serde_json::Value) -> Result<MoverRequest, RequestError> {
        MoverRequest::parse(&v.to_string())
    }

    #[test]
    fn the_example_parses_with_defaults_and_round_trips() {
        let r = parse(&example_json()).unwrap();
        let SinkSpec::S3(s3) = &r.sink else {
            panic!("{:?}", r.sink)
        };
        assert_eq!(s3.part_size_bytes, DEFAULT_PART_SIZE);
        assert_eq!(s3.concurrency, DEFAULT_CONCURRENCY);
        assert_eq!(s3.checksum_mode, ChecksumMode::WhenRequired);
        assert_eq!(s3.uri(), "s3://backups/esc/prod/b1.tar");
        assert!(r.members[3].optional && !r.members[0].optional);
        assert_eq!(MoverRequest::parse(&r.to_json().unwrap()).unwrap(), r);
        let mut v = example_json();
        v.as_object_mut().unwrap().remove("progressIntervalSeconds");
        assert_eq!(parse(&v).unwrap().progress_interval_seconds, 5);
    }

    #[test]
    fn sftp_sink_parses() {
        let mut v = example_json();
        v["sink"] = serde_json::json!({"sftp": {"host": "backup.example", "port": 2222, "user": "esc",
            "path": "/srv/esc/b1.tar", "credentialsDir": "/c", "knownHostsFile": "/k"}});
        let r = parse(&v).unwrap();
        assert_eq!(
            r.sink.uri(),
            "sftp://esc@backup.example:2222/srv/esc/b1.tar"
        );
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        type Change = Box<dyn Fn(&mut serde_json::Value)>;
        let cases: Vec<(&str, Change, &str)> = vec![
            (
                "RequestVersionMismatch",
                Box::new(|v| v["version"] = 2.into()),
                "version 2",
            ),
            (
                "RequestUnreadable",
                Box::new(|v| v["surprise"] = 1.into()),
                "unknown field",
            ),
            (
                "RequestUnreadable",
                Box::new(|v| v["sink"] = serde_json::json!({"ftp": {}})),
                "unknown variant",
            ),
            (
                "RequestInvalid",
                Box::new(|v| v["members"][0]["path"] = "tmp/db".into()),
                "must be absolute",
            ),
            (
                "RequestInvalid",
                Box::new(|v| v["members"][1]["node"] = "esc-z".into()),
                "esc-z",
            ),
            (
                "RequestInvalid",
                Box::new(|v| {
                    v["members"].as_array_mut().unwrap().remove(0);
                }),
                "0 database members",
            ),
            (
                "RequestInvalid",
                Box::new(|v| v["members"][2]["node"] = "esc-a".into()),
                "second logs-esc-a",
            ),
            (
                "RequestInvalid",
                Box::new(|v| v["members"][0]["optional"] = true.into()),
                "can not be optional",
            ),
            (
                "RequestInvalid",
                Box::new(|v| v["sink"]["s3"]["partSizeBytes"] = (1 << 20).into()),
                "partSizeBytes",
            ),
            (
                "RequestInvalid",
                Box::new(|v| v["sink"]["s3"]["concurrency"] = 0.into()),
                "concurrency",
            ),
            (
                "RequestInvalid",
                Box::new(|v| v["sink"]["s3"]["key"] = "dir/".into()),
                "sink.s3.key",
            ),
            (
                "RequestInvalid",
                Box::new(|v| v["sink"]["s3"]["endpoint"] = "http://u:p@h".into()),
                "credentials",
            ),
            (
                "RequestInvalid",
                Box::new(|v| v["progressIntervalSeconds"] = 0.into()),
                "progressIntervalSeconds",
            ),
            (
                "RequestInvalid",
                Box::new(|v| v["manifest"]["nodes"] = serde_json::json!([])),
                "no nodes",
            ),
            (
                "RequestInvalid",
                Box::new(|v| {
                    v["manifest"]["members"] = serde_json::json!([{
                "name": "database", "path": "database/x", "kind": "Database", "size": 1,
                "sha256": "00".repeat(32), "sourceNode": "esc-a"}])
                }),
                "must be empty",
            ),
        ];
        for (reason, change, needle) in cases {
            let mut v = example_json();
            change(&mut v);
            let err = parse(&v).unwrap_err();
            assert_eq!(err.reason(), reason, "{err}");
            assert!(err.to_string().contains(needle), "{needle:?} not in: {err}");
        }
        assert_eq!(
            MoverRequest::parse("{").unwrap_err().reason(),
            "RequestUnreadable"
        );
        assert_eq!(
            MoverRequest::parse("{}").unwrap_err().reason(),
            "RequestUnreadable"
        );
    }

    /// A staging request as the restore controller would write it (S3).
    fn stage_json() -> serde_json::Value {
        serde_json::json!({
            "version": 1,
            "store": {"s3": {"bucket": "backups", "key": "esc/prod/b1.tar",
                             "endpoint": "https://minio:9000", "forcePathStyle": true,
                             "credentialsDir": "/var/run/esc/s3"}},
            "sha256": "ab".repeat(32),
            "ssh": {"user": "admin", "credentialsDir": "/var/run/esc/ssh",
                    "knownHostsFile": "/var/run/esc/known_hosts/known_hosts", "sudo": true},
            "node": {"name": "esc-a", "host": "10.0.0.5", "port": 22},
            "stagedPath": "/var/tmp/esc-restore/r1/db.tar.bz2"
        })
    }

    fn parse_stage(v: &serde_json::Value) -> Result<StageRequest, RequestError> {
        StageRequest::parse(&v.to_string())
    }

    #[test]
    fn a_stage_request_parses_with_defaults_and_round_trips() {
        let r = parse_stage(&stage_json()).unwrap();
        assert_eq!(r.progress_interval_seconds, 5);
        assert_eq!(r.ssh.connect_timeout_seconds, 20);
        assert!(r.ssh.sudo);
        assert_eq!(r.node.port, 22);
        assert_eq!(r.expected_sha256().unwrap(), Sha256Digest([0xab; 32]));
        assert_eq!(r.store.uri(), "s3://backups/esc/prod/b1.tar");
        assert_eq!(StageRequest::parse(&r.to_json().unwrap()).unwrap(), r);
        let v: serde_json::Value = serde_json::from_str(&r.to_json().unwrap()).unwrap();
        assert_eq!(v["stagedPath"], "/var/tmp/esc-restore/r1/db.tar.bz2");
        assert_eq!(v["progressIntervalSeconds"], 5);

        let mut sftp = stage_json();
        sftp["store"] = serde_json::json!({"sftp": {"host": "backup.example", "port": 2222,
            "user": "esc", "path": "/srv/esc/b1.tar", "credentialsDir": "/c", "knownHostsFile": "/k"}});
        assert_eq!(
            parse_stage(&sftp).unwrap().store.uri(),
            "sftp://esc@backup.example:2222/srv/esc/b1.tar"
        );
    }

    #[test]
    fn stage_refusals_say_what_is_wrong() {
        type Change = Box<dyn Fn(&mut serde_json::Value)>;
        let cases: Vec<(&str, Change, &str)> = vec![
            (
                "RequestVersionMismatch",
                Box::new(|v| v["version"] = 2.into()),
                "version 2",
            ),
            (
                "RequestUnreadable",
                Box::new(|v| v["surprise"] = 1.into()),
                "unknown field",
            ),
            (
                "RequestUnreadable",
                Box::new(|v| v["node"]["zone"] = "a".into()),
                "unknown field",
            ),
            (
                "RequestUnreadable",
                Box::new(|v| v["store"]["s3"]["extra"] = 1.into()),
                "unknown field",
            ),
            (
                "RequestUnreadable",
                Box::new(|v| v["store"] = serde_json::json!({"ftp": {}})),
                "unknown variant",
            ),
            (
                "RequestUnreadable",
                Box::new(|v| {
                    v.as_object_mut().unwrap().remove("sha256");
                }),
                "sha256",
            ),
            (
                "RequestInvalid",
                Box::new(|v| v["sha256"] = "AB".repeat(32).into()),
                "lower-case",
            ),
            (
                "RequestInvalid",
                Box::new(|v| v["sha256"] = "ab".repeat(31).into()),
                "64 lower-case hex",
            ),
            (
                "RequestInvalid",
                Box::new(|v| v["sha256"] = format!("{}zz", "ab".repeat(31)).into()),
                "64 lower-case hex",
            ),
            (
                "RequestInvalid",
                Box::new(|v| v["sha256"] = "".into()),
                "64 lower-case hex",
            ),
            (
                "RequestInvalid",
                Box::new(|v| v["stagedPath"] = "var/tmp/db.tar.bz2".into()),
                "must be absolute",
            ),
            (
                "RequestInvalid",
                Box::new(|v| v["stagedPath"] = "/var/tmp/".into()),
                "not ending in '/'",
            ),
            (
                "RequestInvalid",
                Box::new(|v| v["stagedPath"] = "/var/tmp/../etc/db".into()),
                "'..'",
            ),
            (
                "RequestInvalid",
                Box::new(|v| v["stagedPath"] = "/var/tmp/a\nb".into()),
                "control",
            ),
            (
                "RequestInvalid",
                Box::new(|v| v["node"]["port"] = 0.into()),
                "node",
            ),
            (
                "RequestInvalid",
                Box::new(|v| v["node"]["host"] = "".into()),
                "node",
            ),
            (
                "RequestInvalid",
                Box::new(|v| v["ssh"]["user"] = "".into()),
                "ssh.user",
            ),
            (
                "RequestInvalid",
                Box::new(|v| v["progressIntervalSeconds"] = 0.into()),
                "progressIntervalSeconds",
            ),
            (
                "RequestInvalid",
                Box::new(|v| v["store"]["s3"]["key"] = "dir/".into()),
                "store.s3.key",
            ),
            (
                "RequestInvalid",
                Box::new(|v| v["store"]["s3"]["endpoint"] = "http://u:p@h".into()),
                "store.s3.endpoint must not hold credentials",
            ),
        ];
        for (reason, change, needle) in cases {
            let mut v = stage_json();
            change(&mut v);
            let err = parse_stage(&v).unwrap_err();
            assert_eq!(err.reason(), reason, "{needle}: {err}");
            assert!(err.to_string().contains(needle), "{needle:?} not in: {err}");
        }
        assert_eq!(
            StageRequest::parse("{").unwrap_err().reason(),
            "RequestUnreadable"
        );
        assert_eq!(
            StageRequest::parse("{}").unwrap_err().reason(),
            "RequestUnreadable"
        );
        // A backup's request is not a staging request, and the other way round.
        assert_eq!(
            parse_stage(&example_json()).unwrap_err().reason(),
            "RequestUnreadable"
        );
        assert_eq!(
            parse(&stage_json()).unwrap_err().reason(),
            "RequestUnreadable"
        );
        // to_json refuses what parse would.
        let mut r = parse_stage(&stage_json()).unwrap();
        r.staged_path = "relative".into();
        assert_eq!(r.to_json().unwrap_err().reason(), "RequestInvalid");
    }
}
