//! The artifact a restore reads: `spec.source` resolved to a store location, the checksum it
//! must have, and the Secrets that reach it — from a `Succeeded` EscBackup (its target and
//! its verified artifact) or from an explicit S3 object or scp file.

use std::path::Path;

use kube::api::Api;

use crate::api::{BackupTarget, EscBackup, EscRestoreSpec, RunPhase, S3Target};
use crate::controller::backup::job::{
    MoverTemplate, TARGET_CA_DIR, TARGET_CREDENTIALS_DIR, TARGET_KNOWN_HOSTS_DIR,
};
use crate::controller::backup::request::sink;
use crate::controller::backup::target::{self, TargetAccess};
use crate::mover::{S3Sink, SftpSink, SinkSpec};
use crate::plan::report::Problem;
use crate::plan::restore::SourceView;

/// A resolved source.
#[derive(Clone, Debug)]
pub struct Source {
    pub view: SourceView,
    /// The location's connection settings and Secrets, in the shape a backup target has.
    pub target: BackupTarget,
    /// Where those settings are in the user's objects (for messages naming a Secret's field).
    pub field_root: String,
    pub sink: SinkSpec,
}

/// Resolves `spec.source`. A `backupRef` must name a `Succeeded` EscBackup with an artifact; a
/// `sha256` given beside it must be that artifact's.
pub async fn resolve(
    client: &kube::Client,
    namespace: &str,
    spec: &EscRestoreSpec,
    template: &MoverTemplate,
) -> Result<Source, Problem> {
    let source = &spec.source;
    if let Some(r) = &source.backup_ref {
        let backups: Api<EscBackup> = Api::namespaced(client.clone(), namespace);
        let backup = backups.get_opt(&r.name).await.map_err(|e| {
            Problem::new(
                "BackupUnreadable",
                format!("reading EscBackup {}: {e}", r.name),
            )
        })?;
        let Some(backup) = backup else {
            return Err(Problem::new(
                "BackupNotFound",
                format!(
                    "EscBackup {} (spec.source.backupRef) does not exist in this namespace",
                    r.name
                ),
            ));
        };
        let status = backup.status.clone().unwrap_or_default();
        let artifact = match (status.phase, &status.artifact) {
            (Some(RunPhase::Succeeded), Some(a)) => a.clone(),
            (phase, _) => {
                return Err(Problem::new(
                    "BackupNotSucceeded",
                    format!(
                        "EscBackup {} is {}, not Succeeded: only a verified artifact is restored",
                        r.name,
                        phase.map_or("not started".to_owned(), |p| format!("{p:?}"))
                    ),
                ));
            }
        };
        if let Some(pinned) = &source.sha256
            && !pinned.eq_ignore_ascii_case(&artifact.sha256)
        {
            return Err(Problem::new(
                "ChecksumMismatch",
                format!(
                    "spec.source.sha256 {pinned} differs from EscBackup {}'s artifact SHA-256 {}",
                    r.name, artifact.sha256
                ),
            ));
        }
        let sink = sink(&backup.spec, namespace, &r.name, template)?;
        if sink.uri() != artifact.uri {
            return Err(Problem::new(
                "ArtifactMoved",
                format!(
                    "EscBackup {} recorded its artifact at {}, but its target now points to {}",
                    r.name,
                    artifact.uri,
                    sink.uri()
                ),
            ));
        }
        return Ok(Source {
            view: SourceView {
                uri: artifact.uri.clone(),
                sha256: artifact.sha256.to_lowercase(),
                backup: Some(r.name.clone()),
            },
            target: backup.spec.target.clone(),
            field_root: format!("EscBackup {}'s spec.target", r.name),
            sink,
        });
    }
    let sha256 = source.sha256.clone().ok_or_else(|| {
        Problem::new(
            "ChecksumMissing",
            "spec.source.sha256 is required with an s3 or scp source",
        )
    })?;
    if let Some(s3) = &source.s3 {
        let c = &s3.connection;
        let sink = SinkSpec::S3(S3Sink {
            bucket: c.bucket.clone(),
            key: s3.key.clone(),
            region: c.region.clone(),
            endpoint: c.endpoint.clone(),
            force_path_style: c.force_path_style,
            checksum_mode: c.checksum_mode,
            storage_class: None,
            sse: None,
            part_size_bytes: template.s3_part_size_mib.saturating_mul(1 << 20),
            concurrency: template.s3_concurrency,
            credentials_dir: c
                .credentials_secret_ref
                .as_ref()
                .map(|_| TARGET_CREDENTIALS_DIR.into()),
            ca_bundle_file: c
                .ca_bundle_secret_ref
                .as_ref()
                .map(|_| Path::new(TARGET_CA_DIR).join("ca.crt")),
        });
        return Ok(Source {
            view: SourceView {
                uri: sink.uri(),
                sha256: sha256.to_lowercase(),
                backup: None,
            },
            target: BackupTarget {
                s3: Some(S3Target {
                    connection: c.clone(),
                    prefix: None,
                    storage_class: None,
                    sse: None,
                }),
                scp: None,
            },
            field_root: "spec.source".to_owned(),
            sink,
        });
    }
    if let Some(scp) = &source.scp {
        let sink = SinkSpec::Sftp(SftpSink {
            host: scp.host.clone(),
            port: scp.port,
            user: scp.user.clone(),
            path: scp.path.clone(),
            credentials_dir: TARGET_CREDENTIALS_DIR.into(),
            known_hosts_file: Path::new(TARGET_KNOWN_HOSTS_DIR).join("known_hosts"),
        });
        return Ok(Source {
            view: SourceView {
                uri: sink.uri(),
                sha256: sha256.to_lowercase(),
                backup: None,
            },
            target: BackupTarget {
                s3: None,
                scp: Some(scp.clone()),
            },
            field_root: "spec.source".to_owned(),
            sink,
        });
    }
    Err(Problem::new(
        "NoSource",
        "spec.source sets none of backupRef, s3 or scp",
    ))
}

/// The source's Secrets, read and checked.
pub async fn access(
    client: &kube::Client,
    namespace: &str,
    source: &Source,
) -> Result<TargetAccess, Problem> {
    target::load(
        client,
        namespace,
        &source.target,
        &source.field_root,
        &source.sink,
    )
    .await
}
