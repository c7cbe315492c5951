//! The backup's target as the operator itself reaches it: the Secrets it names (checked in the
//! preflight, mounted into the mover), and reading back or deleting a stored artifact with
//! credentials held in memory for the length of one call.

use std::time::Duration;

use super::job::MoverSecrets;
use crate::api::{BackupTarget, EscCluster, Time};
use crate::controller::secrets::{self, credentials_of, known_hosts_of, text_of};
use crate::mover::SinkSpec;
use crate::mover::sink::{self, SinkError, StoreAccess, s3, sftp};
use crate::plan::backup::StoredArtifact;
use crate::plan::report::Problem;

/// S3 credential keys of the target's credentials Secret.
pub const ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
pub const SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
pub const SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";
/// The CA bundle key of the S3 CA Secret.
pub const CA_CERT: &str = "ca.crt";

/// The target and what reaching it needs, read from its Secrets.
pub struct TargetAccess {
    pub sink: SinkSpec,
    pub access: StoreAccess,
}

/// The Secrets the mover mounts.
pub fn mover_secrets(cluster: &EscCluster, target: &BackupTarget) -> MoverSecrets {
    let ssh = &cluster.spec.ssh;
    let (target_credentials, target_known_hosts, target_ca) = match (&target.s3, &target.scp) {
        (Some(s3), _) => (
            s3.connection
                .credentials_secret_ref
                .as_ref()
                .map(|r| r.name.clone()),
            None,
            s3.connection
                .ca_bundle_secret_ref
                .as_ref()
                .map(|r| r.name.clone()),
        ),
        (None, Some(scp)) => (
            Some(scp.credentials_secret_ref.name.clone()),
            Some(scp.known_hosts_secret_ref.name.clone()),
            None,
        ),
        (None, None) => (None, None, None),
    };
    MoverSecrets {
        esc_credentials: ssh.credentials_secret_ref.name.clone(),
        esc_known_hosts: ssh.known_hosts_secret_ref.name.clone(),
        target_credentials,
        target_known_hosts,
        target_ca,
    }
}

/// Reads and checks the target's Secrets: every key the mover will need is there.
pub async fn load(
    client: &kube::Client,
    namespace: &str,
    target: &BackupTarget,
    field_root: &str,
    sink: &SinkSpec,
) -> Result<TargetAccess, Problem> {
    match (sink, &target.s3, &target.scp) {
        (SinkSpec::S3(_), Some(target), _) => {
            let c = &target.connection;
            let credentials = match &c.credentials_secret_ref {
                None => s3::S3Credentials::Ambient,
                Some(r) => {
                    let field = &format!("{field_root}.s3.credentialsSecretRef");
                    let secret = secrets::read(client, namespace, &r.name, field).await?;
                    let key = |k: &str| text_of(namespace, &r.name, &secret.data, k);
                    let missing = |k: &str| {
                        Problem::new(
                            "SecretKeyMissing",
                            format!(
                                "Secret {namespace}/{} (named in {field}) has no non-empty key \
                                 {k}: add it",
                                r.name
                            ),
                        )
                    };
                    let id = key(ACCESS_KEY_ID)?.ok_or_else(|| missing(ACCESS_KEY_ID))?;
                    let secret_key =
                        key(SECRET_ACCESS_KEY)?.ok_or_else(|| missing(SECRET_ACCESS_KEY))?;
                    s3::S3Credentials::from_keys(
                        id.trim(),
                        secret_key.trim(),
                        key(SESSION_TOKEN)?.map(|t| t.trim().to_owned()),
                    )
                }
            };
            let ca_bundle_pem = match &c.ca_bundle_secret_ref {
                None => None,
                Some(r) => {
                    let field = &format!("{field_root}.s3.caBundleSecretRef");
                    let secret = secrets::read(client, namespace, &r.name, field).await?;
                    let pem =
                        text_of(namespace, &r.name, &secret.data, CA_CERT)?.ok_or_else(|| {
                            Problem::new(
                                "SecretKeyMissing",
                                format!(
                                    "Secret {namespace}/{} (named in {field}) has no key \
                                     {CA_CERT}: add the PEM CA bundle",
                                    r.name
                                ),
                            )
                        })?;
                    Some(pem.into_bytes())
                }
            };
            Ok(TargetAccess {
                sink: sink.clone(),
                access: StoreAccess::S3(s3::S3Access {
                    credentials,
                    ca_bundle_pem,
                }),
            })
        }
        (SinkSpec::Sftp(_), _, Some(scp)) => {
            let creds_field = &format!("{field_root}.scp.credentialsSecretRef");
            let hosts_field = &format!("{field_root}.scp.knownHostsSecretRef");
            let creds = secrets::read(
                client,
                namespace,
                &scp.credentials_secret_ref.name,
                creds_field,
            )
            .await?;
            let hosts = secrets::read(
                client,
                namespace,
                &scp.known_hosts_secret_ref.name,
                hosts_field,
            )
            .await?;
            Ok(TargetAccess {
                sink: sink.clone(),
                access: StoreAccess::Sftp(sftp::SshAccess {
                    credentials: credentials_of(
                        namespace,
                        &scp.credentials_secret_ref.name,
                        &creds.data,
                    )?,
                    known_hosts: known_hosts_of(
                        namespace,
                        &scp.known_hosts_secret_ref.name,
                        &hosts.data,
                    )?,
                }),
            })
        }
        _ => Err(Problem::new(
            "NoTarget",
            format!("{field_root} sets neither s3 nor scp"),
        )),
    }
}

fn problem(e: SinkError) -> Problem {
    Problem::new(e.reason, e.message)
}

/// How long the operator waits to reach an scp target.
const SFTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// The preflight's look at the target: it takes a file at the artifact's place.
pub async fn probe(target: &TargetAccess) -> Result<(), Problem> {
    sink::probe_writable(&target.sink, &target.access, SFTP_CONNECT_TIMEOUT)
        .await
        .map_err(|e| {
            Problem::new(
                e.reason,
                format!(
                    "the backup target {} is not writable: {}",
                    target.sink.uri(),
                    e.message
                ),
            )
        })
}

/// Reads the stored artifact back: size, and the SHA-256 its metadata and sidecar record.
pub async fn verify(target: &TargetAccess) -> Result<StoredArtifact, Problem> {
    let stored = sink::verify_stored(&target.sink, &target.access, SFTP_CONNECT_TIMEOUT)
        .await
        .map_err(problem)?;
    Ok(StoredArtifact {
        uri: target.sink.uri(),
        size: stored.size,
        sha256: stored.sha256.to_string(),
    })
}

/// Deletes the stored artifact and its sidecar (`deletionPolicy: Delete`); absent is no error.
pub async fn delete(target: &TargetAccess) -> Result<(), Problem> {
    sink::delete_stored(&target.sink, &target.access, SFTP_CONNECT_TIMEOUT)
        .await
        .map_err(problem)
}

/// Removes what a killed mover left in the store for this run's artifact (incomplete multipart
/// uploads, SFTP temporary files) since `since`; returns how many went.
pub async fn remove_leftovers(target: &TargetAccess, since: Time) -> Result<u32, Problem> {
    sink::remove_leftovers(
        &target.sink,
        &target.access,
        SFTP_CONNECT_TIMEOUT,
        since.0.as_second(),
    )
    .await
    .map_err(problem)
}
