//! The mover's request for one backup: which files on which nodes, in archive order, and where
//! the archive goes. Pure: built from the EscBackup, its EscCluster and the files the run left
//! on the nodes (recorded in status).

use std::path::Path;

use super::job::{
    ESC_CREDENTIALS_DIR, ESC_KNOWN_HOSTS_DIR, MoverTemplate, TARGET_CA_DIR, TARGET_CREDENTIALS_DIR,
    TARGET_KNOWN_HOSTS_DIR,
};
use crate::api::{EscBackupSpec, EscBackupStatus, EscCluster, NodeFileKind, Time};
use crate::esc::EscVersion;
use crate::mover::{
    ClusterRef, FORMAT_VERSION, Manifest, MemberKind, MemberSource, MoverRequest, MoverSsh,
    NodeEntry, NodeRole, REQUEST_VERSION, S3Sink, SftpSink, SinkSpec,
};
use crate::plan::report::Problem;

/// ESC's default dynamic mapping file (the manual: back it up with the logs when ESC uses one).
pub const DYNAMIC_MAPPING_FILE: &str = "/opt/cisco/esc/esc-dynamic-mapping/dynamic_mappings.xml";

/// Where the artifact of `backup` goes: `<prefix><namespace>/<cluster>/<backup>.tar` in S3,
/// `<path>/<namespace>-<cluster>-<backup>.tar` on an scp host.
pub fn sink(
    spec: &EscBackupSpec,
    namespace: &str,
    backup: &str,
    template: &MoverTemplate,
) -> Result<SinkSpec, Problem> {
    let cluster = &spec.cluster_ref.name;
    if let Some(s3) = &spec.target.s3 {
        let c = &s3.connection;
        return Ok(SinkSpec::S3(S3Sink {
            bucket: c.bucket.clone(),
            key: format!(
                "{}{namespace}/{cluster}/{backup}.tar",
                s3.prefix.as_deref().unwrap_or("")
            ),
            region: c.region.clone(),
            endpoint: c.endpoint.clone(),
            force_path_style: c.force_path_style,
            checksum_mode: c.checksum_mode,
            storage_class: s3.storage_class.clone(),
            sse: s3.sse.clone(),
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
        }));
    }
    if let Some(scp) = &spec.target.scp {
        return Ok(SinkSpec::Sftp(SftpSink {
            host: scp.host.clone(),
            port: scp.port,
            user: scp.user.clone(),
            path: format!(
                "{}/{namespace}-{cluster}-{backup}.tar",
                scp.path.trim_end_matches('/')
            ),
            credentials_dir: TARGET_CREDENTIALS_DIR.into(),
            known_hosts_file: Path::new(TARGET_KNOWN_HOSTS_DIR).join("known_hosts"),
        }));
    }
    Err(Problem::new(
        "NoTarget",
        "spec.target sets neither s3 nor scp",
    ))
}

/// The nodes' roles at backup time.
pub struct Roles<'a> {
    pub master: &'a str,
    pub standby: Option<&'a str>,
}

/// What a request is made from.
pub struct RequestInput<'a> {
    pub cluster: &'a EscCluster,
    pub spec: &'a EscBackupSpec,
    /// The run's status: the files it left on the nodes.
    pub status: &'a EscBackupStatus,
    pub namespace: &'a str,
    pub backup: &'a str,
    pub roles: Roles<'a>,
    /// The master's ESC version.
    pub esc_version: &'a str,
    /// When the run started.
    pub created_at: &'a Time,
    pub template: &'a MoverTemplate,
}

/// How a mover logs in to the cluster's nodes: the cluster's user, its Secrets as mounted.
pub fn mover_ssh(cluster: &EscCluster) -> MoverSsh {
    let connect: std::time::Duration = cluster.spec.ssh.connect_timeout.into();
    MoverSsh {
        user: cluster.spec.ssh.user.clone(),
        credentials_dir: ESC_CREDENTIALS_DIR.into(),
        known_hosts_file: Path::new(ESC_KNOWN_HOSTS_DIR).join("known_hosts"),
        connect_timeout_seconds: connect.as_secs().max(1),
        sudo: cluster.spec.ssh.sudo,
    }
}

/// The mover's request.
pub fn mover_request(input: &RequestInput<'_>) -> Result<MoverRequest, Problem> {
    let RequestInput {
        cluster,
        spec,
        status,
        namespace,
        backup,
        roles: _,
        esc_version,
        created_at,
        template,
    } = *input;
    let roles = &input.roles;
    let esc_version: EscVersion = esc_version.parse().map_err(|_| {
        Problem::new(
            "EscVersionUnknown",
            format!("the master's ESC version {esc_version:?} is not understood"),
        )
    })?;
    let node_spec = |name: &str| cluster.spec.nodes.iter().find(|n| n.name == name);
    let member = |kind: MemberKind, node: &str, path: &str, optional: bool| {
        let n = node_spec(node).ok_or_else(|| {
            Problem::new(
                "NodeUnknown",
                format!("node {node} is not in the EscCluster's spec.nodes"),
            )
        })?;
        Ok::<_, Problem>(MemberSource {
            kind,
            node: node.to_owned(),
            host: n.host.clone(),
            port: n.port,
            path: path.to_owned(),
            optional,
        })
    };
    let file = |kind: NodeFileKind, node: &str| {
        status
            .node_files
            .iter()
            .find(|f| f.kind == kind && f.node == node)
            .map(|f| f.path.clone())
    };
    let mut members = Vec::new();
    let database = file(NodeFileKind::Database, roles.master).ok_or_else(|| {
        Problem::new(
            "NoDatabaseFile",
            "the run recorded no database archive on the master",
        )
    })?;
    members.push(member(
        MemberKind::Database,
        roles.master,
        &database,
        false,
    )?);
    if spec.include.logs {
        for node in roles.standby.into_iter().chain([roles.master]) {
            if let Some(path) = file(NodeFileKind::Logs, node) {
                members.push(member(MemberKind::Logs, node, &path, false)?);
            }
        }
    }
    if spec.include.dynamic_mapping {
        members.push(member(
            MemberKind::DynamicMapping,
            roles.master,
            DYNAMIC_MAPPING_FILE,
            true,
        )?);
    }
    let mut nodes = vec![NodeEntry {
        name: roles.master.to_owned(),
        role: if roles.standby.is_some() {
            NodeRole::Master
        } else {
            NodeRole::Standalone
        },
    }];
    if let Some(standby) = roles.standby {
        nodes.push(NodeEntry {
            name: standby.to_owned(),
            role: NodeRole::Backup,
        });
    }
    Ok(MoverRequest {
        version: REQUEST_VERSION,
        manifest: Manifest {
            format_version: FORMAT_VERSION,
            cluster: ClusterRef {
                namespace: namespace.to_owned(),
                name: spec.cluster_ref.name.clone(),
            },
            nodes,
            esc_version,
            created_at: created_at.clone(),
            finished_at: created_at.clone(),
            members: Vec::new(),
        },
        ssh: mover_ssh(cluster),
        members,
        sink: sink(spec, namespace, backup, template)?,
        progress_interval_seconds: 5,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        BackupInclude, BackupTarget, DeletionPolicy, EscClusterSpec, EscNodeSpec, LocalObjectRef,
        MaintenanceSpec, NodeFile, S3Connection, S3Target, SshSpec, Topology,
    };
    use k8s_openapi::jiff::Timestamp;

    fn cluster() -> EscCluster {
        EscCluster::new(
            "prod",
            EscClusterSpec {
                topology: Topology::Ha,
                nodes: ["esc-a", "esc-b"]
                    .iter()
                    .enumerate()
                    .map(|(i, n)| EscNodeSpec {
                        name: (*n).into(),
                        host: format!("10.0.0.{}", i + 1),
                        port: 22,
                    })
                    .collect(),
                ssh: SshSpec {
                    user: "admin".into(),
                    credentials_secret_ref: LocalObjectRef { name: "c".into() },
                    known_hosts_secret_ref: LocalObjectRef { name: "k".into() },
                    sudo: false,
                    connect_timeout: std::time::Duration::from_secs(10).into(),
                },
                maintenance: MaintenanceSpec::default(),
                probe_interval: std::time::Duration::from_secs(60).into(),
            },
        )
    }

    fn spec(logs: bool, mapping: bool) -> EscBackupSpec {
        EscBackupSpec {
            cluster_ref: LocalObjectRef {
                name: "prod".into(),
            },
            target: BackupTarget {
                s3: Some(S3Target {
                    connection: S3Connection {
                        bucket: "esc-backups".into(),
                        region: None,
                        endpoint: Some("https://minio.example:9000".into()),
                        force_path_style: true,
                        credentials_secret_ref: Some(LocalObjectRef { name: "s3".into() }),
                        ca_bundle_secret_ref: None,
                        checksum_mode: Default::default(),
                    },
                    prefix: Some("esc/".into()),
                    storage_class: None,
                    sse: None,
                }),
                scp: None,
            },
            include: BackupInclude {
                logs,
                dynamic_mapping: mapping,
            },
            ipt_check: None,
            deletion_policy: DeletionPolicy::Retain,
            after_backup: Default::default(),
        }
    }

    fn status() -> EscBackupStatus {
        let file = |node: &str, kind, path: &str| NodeFile {
            node: node.into(),
            kind,
            path: path.into(),
        };
        EscBackupStatus {
            node_files: vec![
                file(
                    "esc-b",
                    NodeFileKind::RunDirectory,
                    "/var/tmp/esc-operator/x-standby-logs",
                ),
                file("esc-b", NodeFileKind::Logs, "/var/tmp/esc_log-b.tar.bz2"),
                file(
                    "esc-a",
                    NodeFileKind::Database,
                    "/var/tmp/esc-operator/x-database/esc-db.tar.bz2",
                ),
                file("esc-a", NodeFileKind::Logs, "/var/tmp/esc_log-a.tar.bz2"),
            ],
            ..EscBackupStatus::default()
        }
    }

    fn request(spec: &EscBackupSpec, status: &EscBackupStatus) -> Result<MoverRequest, Problem> {
        let cluster = cluster();
        let at = Time(Timestamp::from_second(1_800_000_000).unwrap());
        mover_request(&RequestInput {
            cluster: &cluster,
            spec,
            status,
            namespace: "esc",
            backup: "nightly",
            roles: Roles {
                master: "esc-a",
                standby: Some("esc-b"),
            },
            esc_version: "5.10.0.86",
            created_at: &at,
            template: &MoverTemplate::default(),
        })
    }

    #[test]
    fn the_database_comes_first_then_standby_and_master_logs_then_the_mapping() {
        let r = request(&spec(true, true), &status()).unwrap();
        let members: Vec<_> = r
            .members
            .iter()
            .map(|m| (m.kind, m.node.as_str(), m.host.as_str(), m.optional))
            .collect();
        assert_eq!(
            members,
            [
                (MemberKind::Database, "esc-a", "10.0.0.1", false),
                (MemberKind::Logs, "esc-b", "10.0.0.2", false),
                (MemberKind::Logs, "esc-a", "10.0.0.1", false),
                (MemberKind::DynamicMapping, "esc-a", "10.0.0.1", true),
            ]
        );
        assert_eq!(r.manifest.nodes.len(), 2);
        assert!(r.manifest.members.is_empty(), "the mover fills the members");
        r.validate().unwrap();
        // Only paths in the request: no secret can be in it.
        let json = r.to_json().unwrap();
        assert!(json.contains(ESC_CREDENTIALS_DIR) && json.contains(TARGET_CREDENTIALS_DIR));
        let SinkSpec::S3(s3) = r.sink else { panic!() };
        assert_eq!(s3.key, "esc/esc/prod/nightly.tar");
        assert_eq!((s3.part_size_bytes, s3.concurrency), (5 << 20, 4));
    }

    #[test]
    fn the_mover_reads_through_sudo_when_the_cluster_runs_escadm_so() {
        assert!(!request(&spec(true, true), &status()).unwrap().ssh.sudo);
        let mut cluster = cluster();
        cluster.spec.ssh.sudo = true;
        let at = Time(Timestamp::from_second(1_800_000_000).unwrap());
        let r = mover_request(&RequestInput {
            cluster: &cluster,
            spec: &spec(true, true),
            status: &status(),
            namespace: "esc",
            backup: "nightly",
            roles: Roles {
                master: "esc-a",
                standby: Some("esc-b"),
            },
            esc_version: "5.10.0.86",
            created_at: &at,
            template: &MoverTemplate::default(),
        })
        .unwrap();
        assert!(r.ssh.sudo);
    }

    #[test]
    fn without_logs_or_mapping_only_the_database() {
        let r = request(&spec(false, false), &status()).unwrap();
        assert_eq!(r.members.len(), 1);
    }

    #[test]
    fn no_database_file_no_request() {
        let mut status = status();
        status
            .node_files
            .retain(|f| f.kind != NodeFileKind::Database);
        let err = request(&spec(true, true), &status).unwrap_err();
        assert_eq!(err.reason, "NoDatabaseFile");
        let err = request(&spec(true, true), &EscBackupStatus::default()).unwrap_err();
        assert_eq!(err.reason, "NoDatabaseFile");
    }
}
