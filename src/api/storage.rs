//! Where artifacts are stored: S3 (or an S3-compatible store) and scp/SFTP hosts.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::LocalObjectRef;

/// How to reach an S3 endpoint; shared by backup targets and restore sources.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Connection {
    /// Bucket name (S3 naming rules).
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new(
        "size(self) >= 3 && self.matches('^[a-z0-9][a-z0-9.-]*[a-z0-9]$')"
    ).message("bucket must be an S3 bucket name: 3-63 lower-case letters, digits, '.' and '-'"))]
    pub bucket: String,

    /// Region. Unset: taken from the environment, or `us-east-1` for a custom endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub region: Option<String>,

    /// Endpoint URL of an S3-compatible store, such as `https://minio.example:9000`.
    /// Unset: AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^/?#@ ]+(/[^?#@ ]*)?$')")
        .message("endpoint must be an http:// or https:// URL without credentials, such as https://minio.example:9000"))]
    pub endpoint: Option<String>,

    /// Address buckets as `endpoint/bucket` instead of `bucket.endpoint` (MinIO and most
    /// S3-compatible stores need this).
    #[serde(default)]
    pub force_path_style: bool,

    /// Secret with keys `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (and optional
    /// `AWS_SESSION_TOKEN`). Unset: the mover's ambient credentials (IRSA, instance profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<LocalObjectRef>,

    /// Secret with key `ca.crt`: PEM CA bundle that signed the endpoint's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle_secret_ref: Option<LocalObjectRef>,

    /// `WhenSupported` (the AWS SDK's default: send request checksums) or `WhenRequired`
    /// (only when an operation requires one — for S3-compatible stores that reject the newer
    /// checksum headers).
    #[serde(default)]
    pub checksum_mode: ChecksumMode,
}

/// When the S3 client computes request checksums.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ChecksumMode {
    #[default]
    WhenSupported,
    WhenRequired,
}

/// Server-side encryption of stored objects.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.algorithm == 'aws:kms' || !has(self.kmsKeyId)")
    .message("sse.kmsKeyId is only valid with algorithm aws:kms"))]
pub struct ServerSideEncryption {
    pub algorithm: SseAlgorithm,
    /// KMS key id or ARN (only with `aws:kms`; unset: the bucket's default key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub kms_key_id: Option<String>,
}

/// S3 server-side encryption algorithms.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SseAlgorithm {
    #[serde(rename = "AES256")]
    Aes256,
    #[serde(rename = "aws:kms")]
    AwsKms,
}

/// A host reached over SSH, for scp/SFTP targets and sources.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScpLocation {
    /// Host name or IP address.
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new(
        "self.matches('^[A-Za-z0-9]([-A-Za-z0-9.:]*[A-Za-z0-9])?$')"
    ).message("host must be a host name or an IP address (no scheme, user or port)"))]
    pub host: String,

    /// SSH port. Default 22.
    #[serde(default = "default_ssh_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,

    /// Login user.
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z_][a-z0-9_-]*[$]?$')")
        .message("user must be a POSIX user name"))]
    pub user: String,

    /// Absolute path: the directory backups are written to, or the artifact a restore reads.
    #[schemars(length(max = 4096))]
    #[x_kube(validation = Rule::new("self.startsWith('/') && !self.contains('/../') && !self.endsWith('/..')")
        .message("path must be an absolute path without '..' components"))]
    pub path: String,

    /// Secret with key `ssh-privatekey` (optional `passphrase`) or `password`.
    pub credentials_secret_ref: LocalObjectRef,

    /// Secret with key `known_hosts` (OpenSSH format). Required: host keys are always verified.
    pub known_hosts_secret_ref: LocalObjectRef,
}

fn default_ssh_port() -> u16 {
    22
}
