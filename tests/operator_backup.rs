//! EscBackup end to end: `esc-operator run` (a child process under the RBAC of
//! `manifests/rbac/operator.yaml`) against the ESC simulator behind sshd, its mover Job run by
//! the test bed's real node from the operator's own image, into MinIO / versitygw or over SFTP
//! into the test sshd.
//!
//! Every peer listens on loopback, so the mover pods use the host network (the mover template
//! the operator is given here); `the_default_mover_pod_passes_restricted` checks the template
//! a real site gets.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use esc_operator::api::{
    BackupInclude, BackupStep, BackupTarget, ChecksumMode, DeletionPolicy, EscBackup,
    EscBackupSpec, EscBackupStatus, EscCluster, LocalObjectRef, RunPhase, S3Connection, S3Target,
    ScpLocation,
};
use esc_operator::mover::ArchiveReader;
use esc_operator::plan::backup::{current_step, mover_job_name};
use esc_testbed::cluster::{TestCluster, TestNamespace};
use esc_testbed::operator::{Operator, operator_identity};
use esc_testbed::operator_image::OperatorImage;
use esc_testbed::s3::{S3Kind, S3Server};
use esc_testbed::sshd::{FaultKind, Mode, SimEsc, SimSpec, What};
use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};

mod esc_fixture;
/// EscRestore end to end, on the same fixture (a restore needs a backup first).
#[path = "operator_backup/restore.rs"]
mod restore;
use esc_fixture::{SshSecrets, cluster_spec, create_ssh_secrets, ready, tail, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_esc-operator");
const BUCKET: &str = "esc-backups";
const CONVERGE: Duration = Duration::from_secs(30);
/// A whole backup: the Job's pod starts on the node in a few seconds.
const BACKUP: Duration = Duration::from_secs(120);

fn cluster() -> &'static TestCluster {
    TestCluster::shared()
}

/// One test's world: a namespace, a simulated ESC with its EscCluster `esc` Ready, the
/// operator (watching only the namespace) with a mover template for the test bed.
struct Fixture {
    ns: TestNamespace,
    sim: SimEsc,
    secrets: SshSecrets,
    operator: Operator,
    kubeconfig: PathBuf,
    run_dir: PathBuf,
    /// The nodes' state directory (the restore history).
    state_dir: PathBuf,
    template: PathBuf,
    dir: tempfile::TempDir,
}

impl Fixture {
    async fn start(prefix: &str, spec: SimSpec) -> Result<Fixture> {
        let cluster = cluster();
        let image = OperatorImage::shared();
        image.import_into(cluster)?;
        cluster.install_crds(&esc_operator::api::crds()).await?;
        let ns = cluster.namespace(prefix).await?;
        let sim = SimEsc::start(spec)?;
        sim.share_first_client_key()?;
        let dir = tempfile::tempdir()?;
        let kubeconfig =
            operator_identity(cluster, ns.name(), "esc-operator", &[ns.name()], dir.path()).await?;
        let secrets = create_ssh_secrets(&cluster.client(), ns.name(), "esc", &sim).await?;
        // The nodes' run directories: shared by the simulated nodes' account, like /var/tmp.
        let run_dir = PathBuf::from(format!("/var/tmp/esc-operator-test-{}", ns.name()));
        std::fs::create_dir_all(&run_dir)?;
        let state_dir = PathBuf::from(format!("/var/tmp/esc-operator-state-{}", ns.name()));
        for d in [&run_dir, &state_dir] {
            std::fs::create_dir_all(d)?;
            std::process::Command::new("chmod")
                .arg("1777")
                .arg(d)
                .status()?;
        }
        let template = dir.path().join("mover.yaml");
        std::fs::write(
            &template,
            format!(
                "image: {}\nimagePullPolicy: Never\nhostNetwork: true\nactiveDeadlineSeconds: 300\n",
                image.name
            ),
        )?;
        let operator = start_operator(
            &kubeconfig,
            ns.name(),
            "op-1",
            dir.path(),
            &[&run_dir, &state_dir],
            &template,
            &[],
        )?;
        let mut f = Fixture {
            ns,
            sim,
            secrets,
            operator,
            kubeconfig,
            run_dir,
            state_dir,
            template,
            dir,
        };
        f.operator.wait_ready(Duration::from_secs(60)).await?;
        let spec = cluster_spec(&f.sim, &f.secrets);
        f.clusters()
            .create(&PostParams::default(), &EscCluster::new("esc", spec))
            .await?;
        wait_for(&f.clusters(), "esc", "Ready", CONVERGE, ready, || {
            tail(&f.operator.log(), 40)
        })
        .await?;
        Ok(f)
    }

    /// SIGKILLs the operator and starts another one named `name` (same settings), ready.
    async fn replace_operator(&mut self, name: &str) -> Result<()> {
        self.replace_operator_with(name, &[]).await
    }

    /// SIGKILLs the operator and starts another one named `name` with `extra` flags, ready.
    async fn replace_operator_with(&mut self, name: &str, extra: &[&str]) -> Result<()> {
        self.operator.kill();
        let mut next = start_operator(
            &self.kubeconfig,
            self.ns.name(),
            name,
            self.dir.path(),
            &[&self.run_dir, &self.state_dir],
            &self.template,
            extra,
        )?;
        next.wait_ready(Duration::from_secs(60)).await?;
        self.operator = next;
        Ok(())
    }

    /// SIGKILLs the operator and starts another one named `name` whose mover template is
    /// `yaml` (the template file is rewritten; the next replacement keeps it).
    async fn replace_operator_with_template(&mut self, name: &str, yaml: &str) -> Result<()> {
        std::fs::write(&self.template, yaml)?;
        self.replace_operator(name).await
    }

    fn clusters(&self) -> Api<EscCluster> {
        Api::namespaced(cluster().client(), self.ns.name())
    }

    fn backups(&self) -> Api<EscBackup> {
        Api::namespaced(cluster().client(), self.ns.name())
    }

    async fn secret(&self, name: &str, data: &[(&str, &str)]) -> Result<()> {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        };
        Api::<Secret>::namespaced(cluster().client(), self.ns.name())
            .create(&PostParams::default(), &secret)
            .await?;
        Ok(())
    }

    /// An S3 target on `s3` with credentials in Secret `s3-creds`.
    async fn s3_target(
        &self,
        s3: &S3Server,
        secret_key: &str,
        mode: ChecksumMode,
    ) -> Result<BackupTarget> {
        let name = format!("s3-creds-{}", rand_suffix());
        self.secret(
            &name,
            &[
                ("AWS_ACCESS_KEY_ID", s3.access_key()),
                ("AWS_SECRET_ACCESS_KEY", secret_key),
            ],
        )
        .await?;
        Ok(BackupTarget {
            s3: Some(S3Target {
                connection: S3Connection {
                    bucket: BUCKET.into(),
                    region: None,
                    endpoint: Some(s3.endpoint()),
                    force_path_style: true,
                    credentials_secret_ref: Some(LocalObjectRef { name }),
                    ca_bundle_secret_ref: None,
                    checksum_mode: mode,
                },
                prefix: Some("prod/".into()),
                storage_class: None,
                sse: None,
            }),
            scp: None,
        })
    }

    async fn create_backup(
        &self,
        name: &str,
        target: BackupTarget,
        tune: impl FnOnce(&mut EscBackupSpec),
    ) -> Result<()> {
        let mut spec = EscBackupSpec {
            cluster_ref: LocalObjectRef { name: "esc".into() },
            target,
            include: BackupInclude::default(),
            ipt_check: None,
            deletion_policy: DeletionPolicy::Retain,
            after_backup: Default::default(),
        };
        tune(&mut spec);
        self.backups()
            .create(&PostParams::default(), &EscBackup::new(name, spec))
            .await?;
        Ok(())
    }

    async fn wait_backup(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&EscBackupStatus) -> bool,
    ) -> Result<EscBackupStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.backups().get(name).await?.status.unwrap_or_default();
            if pred(&status) {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!(
                    "EscBackup {name}: not {what} within {timeout:?}; status: {}\noperator log:\n{}\njobs:\n{}",
                    serde_json::to_string_pretty(&status)?,
                    tail(
                        &self
                            .operator
                            .log()
                            .lines()
                            .filter(|l| !l.contains("esccluster"))
                            .collect::<Vec<_>>()
                            .join("\n"),
                        80
                    ),
                    self.job_summary().await
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn job_summary(&self) -> String {
        let jobs: Api<Job> = Api::namespaced(cluster().client(), self.ns.name());
        match jobs.list(&ListParams::default()).await {
            Ok(list) => list
                .items
                .iter()
                .map(|j| {
                    format!(
                        "{}: {}",
                        j.metadata.name.clone().unwrap_or_default(),
                        serde_json::to_string(&j.status).unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
            Err(e) => e.to_string(),
        }
    }

    async fn jobs(&self) -> Result<Vec<Job>> {
        Ok(Api::<Job>::namespaced(cluster().client(), self.ns.name())
            .list(&ListParams::default())
            .await?
            .items)
    }

    /// Files and directories left in the run directory.
    fn leftovers(&self) -> Vec<String> {
        std::fs::read_dir(&self.run_dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Log archives left on the nodes.
    fn log_archives(&self) -> Vec<String> {
        self.sim
            .nodes()
            .iter()
            .flat_map(|n| {
                std::fs::read_dir(n.var_tmp_dir())
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("esc_log"))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The escadm commands and mode changes in the journal, in order, as short words.
    fn journal_words(&self) -> Result<Vec<String>> {
        Ok(self
            .sim
            .journal()?
            .entries()
            .iter()
            .filter_map(|e| match &e.what {
                What::Command { command, args, .. } => {
                    let line = format!("{command} {}", args.join(" "));
                    let word = if line.starts_with("restore") {
                        "restore"
                    } else if line.starts_with("restart") {
                        "restart"
                    } else if line.contains("backup") {
                        "backup"
                    } else if line.contains("log") {
                        "log-collect"
                    } else if line.contains("op_mode") && line.contains("set") {
                        if line.contains("maintenance") {
                            "set-maintenance"
                        } else {
                            "set-operation"
                        }
                    } else if line.starts_with("stop") {
                        "stop"
                    } else {
                        return None;
                    };
                    Some(format!("{}:{word}", e.node))
                }
                _ => None,
            })
            .collect())
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.run_dir);
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

fn rand_suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}

fn start_operator(
    kubeconfig: &Path,
    ns: &str,
    name: &str,
    dir: &Path,
    [run_dir, state_dir]: &[&Path; 2],
    template: &Path,
    extra: &[&str],
) -> Result<Operator> {
    let mut args = vec![
        format!("--namespaces={ns}"),
        format!("--lease-namespace={ns}"),
        "--lease-duration=6s".to_owned(),
        "--log-level=info,esc_operator=debug".to_owned(),
        format!("--run-directory={}", run_dir.display()),
        format!("--state-directory={}", state_dir.display()),
        format!("--mover-template={}", template.display()),
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Operator::start(Path::new(BIN), kubeconfig, name, &args, dir)
}

fn succeeded(s: &EscBackupStatus) -> bool {
    s.phase == Some(RunPhase::Succeeded)
}

fn failed(s: &EscBackupStatus) -> bool {
    s.phase == Some(RunPhase::Failed)
}

/// Reads the stored archive back: the manifest, then every member checked against its size and
/// digest. Returns the manifest and the members' names.
async fn read_back(bytes: Vec<u8>) -> Result<(esc_operator::mover::Manifest, Vec<String>)> {
    let reader = ArchiveReader::open(std::io::Cursor::new(bytes)).await?;
    let manifest = reader.manifest().clone();
    let names = manifest.members.iter().map(|m| m.name.clone()).collect();
    let checked = reader.verify().await?;
    assert_eq!(checked, manifest.members.len());
    Ok((manifest, names))
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_backup_to_s3_is_stored_verified_with_one_window_before_the_transfer()
-> Result<()> {
    let f = Fixture::start("bk-standalone", SimSpec::standalone()).await?;
    for kind in [S3Kind::Minio, S3Kind::Versity] {
        let s3 = S3Server::start(kind).await?;
        s3.create_bucket(BUCKET).await?;
        let name = format!("nightly-{}", kind.name());
        let target = f
            .s3_target(&s3, s3.secret_key(), ChecksumMode::WhenSupported)
            .await?;
        f.create_backup(&name, target, |_| {}).await?;
        let s = f.wait_backup(&name, "Succeeded", BACKUP, succeeded).await?;
        let artifact = s.artifact.clone().context("no artifact")?;
        let key = format!("prod/{}/esc/{name}.tar", f.ns.name());
        assert_eq!(artifact.uri, format!("s3://{BUCKET}/{key}"));
        let bytes = s3.get_object(BUCKET, &key).await?;
        assert_eq!(bytes.len() as i64, artifact.size);
        assert_eq!(sha256_hex(&bytes), artifact.sha256);
        let (manifest, members) = read_back(bytes).await?;
        assert_eq!(manifest.cluster.name, "esc");
        assert_eq!(manifest.esc_version.to_string(), artifact.esc_version);
        assert!(
            members.iter().any(|m| m.starts_with("database")),
            "{members:?}"
        );
        assert!(members.iter().any(|m| m.starts_with("logs")), "{members:?}");
        let sidecar = s3.get_object(BUCKET, &format!("{key}.sha256")).await?;
        assert!(String::from_utf8(sidecar)?.starts_with(&artifact.sha256));
        assert_eq!(s3.list_multipart_uploads(BUCKET).await?, []);
        let window = s.maintenance.clone().context("no maintenance window")?;
        assert!(window.ended_at.is_some(), "{window:?}");
        s3.stop()?;
    }
    // The manual's order, one window each around `escadm backup` alone, back in operation.
    let words = f.journal_words()?;
    let per_backup = [
        "esc:set-maintenance",
        "esc:backup",
        "esc:set-operation",
        "esc:log-collect",
    ];
    assert_eq!(words, [per_backup, per_backup].concat(), "{words:?}");
    let modes = f.sim.journal()?.mode_changes();
    assert_eq!(modes.last().map(|m| m.2), Some(Mode::Operation));
    // Each window closed before its mover Job existed, so before any byte was transferred.
    let back_in_operation: Vec<u64> = f
        .sim
        .journal()?
        .events()
        .filter(|(_, ev)| {
            matches!(
                ev,
                esc_testbed::sshd::Event::ModeChanged {
                    to: Mode::Operation,
                    ..
                }
            )
        })
        .map(|(e, _)| e.time_ms)
        .collect();
    let mut created: Vec<i64> = f
        .jobs()
        .await?
        .iter()
        .filter_map(|j| j.metadata.creation_timestamp.as_ref())
        .map(|t| t.0.as_millisecond())
        .collect();
    created.sort();
    assert_eq!(back_in_operation.len(), 2, "{back_in_operation:?}");
    for (restored, job) in back_in_operation.iter().zip(&created) {
        // The API server keeps whole seconds: the Job may read up to 999 ms early.
        assert!(
            (*restored as i64) < job + 1000,
            "operation mode restored at {restored} ms, the mover Job created at {job} ms"
        );
    }
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
    assert!(f.log_archives().is_empty(), "{:?}", f.log_archives());
    assert_eq!(f.jobs().await?.len(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_backups_over_sftp_and_to_s3_collect_both_logs_standby_first_and_can_stop_esc()
-> Result<()> {
    let f = Fixture::start("bk-ha-sftp", SimSpec::ha()).await?;
    // The scp target: the standby's own sshd, into its data directory.
    let host = &f.sim.nodes()[1];
    let target = BackupTarget {
        s3: None,
        scp: Some(ScpLocation {
            host: host.address().to_string(),
            port: host.port(),
            user: host.key_user().into(),
            path: host.data_dir().display().to_string(),
            credentials_secret_ref: LocalObjectRef {
                name: f.secrets.credentials.clone(),
            },
            known_hosts_secret_ref: LocalObjectRef {
                name: f.secrets.known_hosts.clone(),
            },
        }),
    };
    f.create_backup("pair", target, |_| {}).await?;
    let s = f
        .wait_backup("pair", "Succeeded", BACKUP, succeeded)
        .await?;
    let stored = host
        .data_dir()
        .join(format!("{}-esc-pair.tar", f.ns.name()));
    let bytes = std::fs::read(&stored).with_context(|| format!("read {}", stored.display()))?;
    assert_eq!(bytes.len() as i64, s.artifact.as_ref().unwrap().size);
    let (manifest, members) = read_back(bytes).await?;
    assert_eq!(manifest.nodes.len(), 2);
    assert_eq!(
        members.iter().filter(|m| m.starts_with("logs")).count(),
        2,
        "{members:?}"
    );
    let words = f.journal_words()?;
    assert_eq!(
        words,
        [
            "esc-b:log-collect",
            "esc-a:set-maintenance",
            "esc-a:backup",
            "esc-a:set-operation",
            "esc-a:log-collect"
        ],
        "{words:?}"
    );
    // No temp name left beside the artifact; the sidecar is there.
    let names: Vec<String> = std::fs::read_dir(host.data_dir())?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".part")), "{names:?}");
    assert!(
        names.iter().any(|n| n.ends_with(".tar.sha256")),
        "{names:?}"
    );
    assert!(f.leftovers().is_empty() && f.log_archives().is_empty());

    // To S3 on both servers, then the manual's migration flow: after a verified backup,
    // the standby is stopped first, then the master, each checked with `status --v`.
    for kind in [S3Kind::Minio, S3Kind::Versity] {
        let s3 = S3Server::start(kind).await?;
        s3.create_bucket(BUCKET).await?;
        let name = format!("pair-{}", kind.name());
        let target = f
            .s3_target(&s3, s3.secret_key(), ChecksumMode::WhenSupported)
            .await?;
        let stop = kind == S3Kind::Versity;
        f.create_backup(&name, target, |s| {
            if stop {
                s.after_backup = esc_operator::api::AfterBackup::StopServices;
            }
        })
        .await?;
        let s = f.wait_backup(&name, "Succeeded", BACKUP, succeeded).await?;
        let key = format!("prod/{}/esc/{name}.tar", f.ns.name());
        let (_, members) = read_back(s3.get_object(BUCKET, &key).await?).await?;
        assert_eq!(
            members.iter().filter(|m| m.starts_with("logs")).count(),
            2,
            "{members:?}"
        );
        if stop {
            assert_eq!(f.sim.journal()?.stops(), ["esc-b", "esc-a"]);
            let steps: Vec<_> = s.steps.iter().map(|st| st.name).collect();
            assert!(
                steps.ends_with(&[BackupStep::StopStandby, BackupStep::StopMaster]),
                "{steps:?}"
            );
        }
        s3.stop()?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_end_failed_with_a_reason_esc_in_operation_and_nothing_left() -> Result<()> {
    let mut f = Fixture::start("bk-fail", SimSpec::standalone()).await?;
    let s3 = S3Server::start(S3Kind::Minio).await?;
    s3.create_bucket(BUCKET).await?;

    // Wrong S3 credentials: refused in the preflight (it probes the target with a write),
    // before anything is asked of ESC.
    let target = f
        .s3_target(
            &s3,
            "wrong-secret-wrong-secret",
            ChecksumMode::WhenSupported,
        )
        .await?;
    f.create_backup("wrong-creds", target, |_| {}).await?;
    let s = f
        .wait_backup("wrong-creds", "Failed", BACKUP, failed)
        .await?;
    let failure = s.failure.clone().context("no failure")?;
    assert_eq!(failure.step, "Preflight", "{failure:?}");
    assert!(!failure.reason.is_empty() && !s.message.clone().unwrap().is_empty());
    assert!(f.journal_words()?.is_empty(), "{:?}", f.journal_words()?);
    let log = f.operator.log();
    assert!(
        !log.contains("wrong-secret-wrong-secret"),
        "a secret reached the log"
    );
    assert!(
        !serde_json::to_string(&s)?.contains("wrong-secret"),
        "a secret reached the status"
    );

    // escadm backup fails on the node (disk full): the window closes at once.
    f.sim.nodes()[0].fault_once("backup", FaultKind::DiskFull { after_bytes: 100 })?;
    let target = f
        .s3_target(&s3, s3.secret_key(), ChecksumMode::WhenSupported)
        .await?;
    f.create_backup("disk-full", target, |_| {}).await?;
    let s = f.wait_backup("disk-full", "Failed", BACKUP, failed).await?;
    let failure = s.failure.clone().context("no failure")?;
    assert_eq!(failure.step, "BackupDatabase", "{failure:?}");
    let cluster = f.clusters().get("esc").await?.status.unwrap_or_default();
    assert!(cluster.maintenance_holders.is_empty(), "{cluster:?}");
    assert_eq!(
        f.sim.journal()?.mode_changes().last().map(|m| m.2),
        Some(Mode::Operation)
    );
    assert_eq!(s3.list_multipart_uploads(BUCKET).await?, []);
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
    assert!(f.log_archives().is_empty(), "{:?}", f.log_archives());

    // A bucket that does not exist: the preflight names it, ESC is not touched.
    let before = f.journal_words()?.len();
    let mut target = f
        .s3_target(&s3, s3.secret_key(), ChecksumMode::WhenSupported)
        .await?;
    target.s3.as_mut().unwrap().connection.bucket = "no-such-bucket".into();
    f.create_backup("no-bucket", target, |_| {}).await?;
    let s = f.wait_backup("no-bucket", "Failed", BACKUP, failed).await?;
    let failure = s.failure.clone().context("no failure")?;
    assert_eq!(
        (failure.step.as_str(), failure.reason.as_str()),
        ("Preflight", "NoSuchBucket"),
        "{failure:?}"
    );
    assert!(failure.message.contains("no-such-bucket"), "{failure:?}");
    assert_eq!(f.journal_words()?.len(), before);

    // Less room on the master than the operator asks for: the preflight says so (with what
    // `df` reported), ESC is not touched.
    f.replace_operator_with("op-roomy", &["--min-node-free-space-mib=1000000000"])
        .await?;
    let target = f
        .s3_target(&s3, s3.secret_key(), ChecksumMode::WhenSupported)
        .await?;
    f.create_backup("no-room", target, |_| {}).await?;
    let s = f.wait_backup("no-room", "Failed", BACKUP, failed).await?;
    let failure = s.failure.clone().context("no failure")?;
    assert_eq!(
        (failure.step.as_str(), failure.reason.as_str()),
        ("Preflight", "InsufficientSpace"),
        "{failure:?}"
    );
    assert!(failure.message.contains("bytes free"), "{failure:?}");
    assert_eq!(f.journal_words()?.len(), before);
    f.replace_operator("op-again").await?;

    // The bucket goes while the master's logs are collected (after the window): the mover
    // fails with the store's reason, and nothing is left on the nodes.
    f.sim.nodes()[0].fault_once("log", FaultKind::Hang { seconds: 4.0 })?;
    let target = f
        .s3_target(&s3, s3.secret_key(), ChecksumMode::WhenSupported)
        .await?;
    f.create_backup("bucket-gone", target, |_| {}).await?;
    f.wait_backup("bucket-gone", "in CollectMasterLogs", BACKUP, |s| {
        current_step(s) == Some(BackupStep::CollectMasterLogs)
    })
    .await?;
    s3.client().delete_bucket().bucket(BUCKET).send().await?;
    let s = f
        .wait_backup("bucket-gone", "Failed", BACKUP, failed)
        .await?;
    let failure = s.failure.clone().context("no failure")?;
    assert_eq!(
        (failure.step.as_str(), failure.reason.as_str()),
        ("Upload", "NoSuchBucket"),
        "{failure:?}"
    );
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
    assert!(f.log_archives().is_empty(), "{:?}", f.log_archives());
    s3.create_bucket(BUCKET).await?;

    // Cancelled by deletion while `escadm backup` runs: the window closes, the files go, the
    // object goes.
    f.sim.nodes()[0].fault_once("backup", FaultKind::Hang { seconds: 4.0 })?;
    let target = f
        .s3_target(&s3, s3.secret_key(), ChecksumMode::WhenSupported)
        .await?;
    f.create_backup("cancelled", target, |_| {}).await?;
    f.wait_backup("cancelled", "in BackupDatabase", BACKUP, |s| {
        current_step(s) == Some(BackupStep::BackupDatabase)
    })
    .await?;
    f.backups()
        .delete("cancelled", &DeleteParams::default())
        .await?;
    let deadline = Instant::now() + BACKUP;
    while f.backups().get_opt("cancelled").await?.is_some() {
        if Instant::now() > deadline {
            bail!(
                "EscBackup cancelled not gone:\n{}",
                tail(&f.operator.log(), 40)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let cluster = f.clusters().get("esc").await?.status.unwrap_or_default();
    assert!(cluster.maintenance_holders.is_empty(), "{cluster:?}");
    assert_eq!(
        f.sim.journal()?.mode_changes().last().map(|m| m.2),
        Some(Mode::Operation)
    );
    // The detached backup may still be finishing on the node: its directory goes with the
    // cleanup, which waits for nothing; give the hung command its seconds, then look.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());

    // An scp target whose host key is not the one known: refused in the preflight.
    let node = &f.sim.nodes()[0];
    f.secret(
        "wrong-known-hosts",
        &[(
            "known_hosts",
            &format!(
                "[{}]:{} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n",
                node.address(),
                node.port()
            ),
        )],
    )
    .await?;
    let before = f.journal_words()?.len();
    let target = BackupTarget {
        s3: None,
        scp: Some(ScpLocation {
            host: node.address().to_string(),
            port: node.port(),
            user: node.key_user().into(),
            path: node.data_dir().display().to_string(),
            credentials_secret_ref: LocalObjectRef {
                name: f.secrets.credentials.clone(),
            },
            known_hosts_secret_ref: LocalObjectRef {
                name: "wrong-known-hosts".into(),
            },
        }),
    };
    f.create_backup("wrong-host-key", target, |_| {}).await?;
    let s = f
        .wait_backup("wrong-host-key", "Failed", BACKUP, failed)
        .await?;
    let failure = s.failure.clone().context("no failure")?;
    assert_eq!(
        (failure.step.as_str(), failure.reason.as_str()),
        ("Preflight", "HostKeyMismatch"),
        "{failure:?}"
    );
    assert!(failure.message.contains("SHA256:"), "{failure:?}");
    assert_eq!(f.journal_words()?.len(), before);

    // Someone else's Job under the mover Job's name (RBAC cannot tell the operator's Jobs from
    // others in the namespace; ownership can): the run fails, the Job is neither read as the
    // result nor deleted, ESC is back in operation and nothing is left on the node.
    f.sim.nodes()[0].fault_once("log", FaultKind::Hang { seconds: 4.0 })?;
    let target = f
        .s3_target(&s3, s3.secret_key(), ChecksumMode::WhenSupported)
        .await?;
    f.create_backup("squatted", target, |_| {}).await?;
    f.wait_backup("squatted", "in CollectMasterLogs", BACKUP, |s| {
        current_step(s) == Some(BackupStep::CollectMasterLogs)
    })
    .await?;
    let uid = f.backups().get("squatted").await?.metadata.uid.unwrap();
    let squatter = mover_job_name("squatted", &uid);
    let jobs: Api<Job> = Api::namespaced(self::cluster().client(), f.ns.name());
    let foreign: Job = serde_json::from_value(serde_json::json!({
        "metadata": { "name": squatter, "labels": { "job-name": squatter } },
        "spec": {
            "suspend": true,
            "template": { "spec": {
                "restartPolicy": "Never",
                "containers": [{ "name": "mover", "image": "localhost/not-the-mover:none" }]
            }}
        }
    }))?;
    let created = jobs.create(&PostParams::default(), &foreign).await?;
    let s = f.wait_backup("squatted", "Failed", BACKUP, failed).await?;
    let failure = s.failure.clone().context("no failure")?;
    assert_eq!(
        (failure.step.as_str(), failure.reason.as_str()),
        ("Upload", "MoverJobNotOwned"),
        "{failure:?}"
    );
    assert!(failure.message.contains(&squatter), "{failure:?}");
    let kept = jobs
        .get_opt(&squatter)
        .await?
        .context("the foreign Job was deleted")?;
    assert_eq!(kept.metadata.uid, created.metadata.uid);
    assert!(kept.metadata.owner_references.is_none());
    assert_eq!(
        f.sim.journal()?.mode_changes().last().map(|m| m.2),
        Some(Mode::Operation)
    );
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
    jobs.delete(&squatter, &DeleteParams::default()).await?;

    // The mover OOM-killed mid-transfer: a memory limit below one S3 part, and a log archive
    // bigger than a part (incompressible, so the archive is too). The kill is the reason; the
    // multipart upload the killed mover could not abort is aborted by the operator.
    let ballast = f.sim.nodes()[0].log_dir().join("ballast.log");
    std::io::copy(
        &mut std::io::Read::take(std::fs::File::open("/dev/urandom")?, 24 << 20),
        &mut std::fs::File::create(&ballast)?,
    )?;
    let normal_template = std::fs::read_to_string(&f.template)?;
    f.replace_operator_with_template(
        "op-oom",
        &format!("{normal_template}resources:\n  limits:\n    memory: 12Mi\ns3PartSizeMiB: 16\n"),
    )
    .await?;
    let target = f
        .s3_target(&s3, s3.secret_key(), ChecksumMode::WhenSupported)
        .await?;
    f.create_backup("oom", target, |_| {}).await?;
    let s = f.wait_backup("oom", "Failed", BACKUP, failed).await?;
    let failure = s.failure.clone().context("no failure")?;
    assert_eq!(
        (failure.step.as_str(), failure.reason.as_str()),
        ("Upload", "MoverOOMKilled"),
        "{failure:?}\n{}",
        f.job_summary().await
    );
    assert_eq!(s3.list_multipart_uploads(BUCKET).await?, []);
    // The killed mover could not abort its upload: the operator's cleanup did.
    assert!(
        f.operator
            .log()
            .contains("removed what the mover left in the store"),
        "{}",
        tail(&f.operator.log(), 40)
    );
    assert_eq!(
        f.sim.journal()?.mode_changes().last().map(|m| m.2),
        Some(Mode::Operation)
    );
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
    assert!(f.log_archives().is_empty(), "{:?}", f.log_archives());
    std::fs::remove_file(&ballast)?;
    f.replace_operator_with_template("op-fed", &normal_template)
        .await?;

    // A missing EscCluster fails fast in the preflight, nothing sent to ESC.
    let before = f.journal_words()?.len();
    let target = f
        .s3_target(&s3, s3.secret_key(), ChecksumMode::WhenSupported)
        .await?;
    f.create_backup("no-cluster", target, |s| s.cluster_ref.name = "nope".into())
        .await?;
    let s = f
        .wait_backup("no-cluster", "Failed", CONVERGE, failed)
        .await?;
    assert_eq!(s.failure.unwrap().reason, "ClusterNotFound");
    assert_eq!(f.journal_words()?.len(), before);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_backups_on_one_cluster_run_one_after_the_other_and_delete_removes_the_artifact()
-> Result<()> {
    let f = Fixture::start("bk-queue", SimSpec::standalone()).await?;
    let s3 = S3Server::start(S3Kind::Versity).await?;
    s3.create_bucket(BUCKET).await?;
    let target = f
        .s3_target(&s3, s3.secret_key(), ChecksumMode::WhenRequired)
        .await?;
    f.create_backup("first", target.clone(), |s| {
        s.deletion_policy = DeletionPolicy::Delete
    })
    .await?;
    f.create_backup("second", target, |_| {}).await?;
    let second = f
        .wait_backup("second", "Pending or Running", CONVERGE, |s| {
            s.phase.is_some()
        })
        .await?;
    let first = f.backups().get("first").await?.status.unwrap_or_default();
    if first.phase != Some(RunPhase::Succeeded) {
        assert_eq!(second.phase, Some(RunPhase::Pending), "{second:?}");
        assert_eq!(second.queue_position, Some(1));
    }
    f.wait_backup("first", "Succeeded", BACKUP, succeeded)
        .await?;
    f.wait_backup("second", "Succeeded", BACKUP, succeeded)
        .await?;
    // The windows did not overlap: maintenance, backup, operation, twice.
    let words: Vec<String> = f
        .journal_words()?
        .into_iter()
        .filter(|w| !w.ends_with("log-collect"))
        .collect();
    let one = ["esc:set-maintenance", "esc:backup", "esc:set-operation"];
    assert_eq!(words, [one, one].concat(), "{words:?}");

    // deletionPolicy Delete: the object and its sidecar go with the EscBackup.
    let key = format!("prod/{}/esc/first.tar", f.ns.name());
    assert!(s3.head_object(BUCKET, &key).await?.is_some());
    f.backups()
        .delete("first", &DeleteParams::default())
        .await?;
    let deadline = Instant::now() + CONVERGE;
    while f.backups().get_opt("first").await?.is_some() {
        if Instant::now() > deadline {
            bail!(
                "EscBackup first not deleted:\n{}",
                tail(&f.operator.log(), 40)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(s3.head_object(BUCKET, &key).await?.is_none());
    assert!(
        s3.head_object(BUCKET, &format!("{key}.sha256"))
            .await?
            .is_none()
    );
    // Retain (the default) keeps it.
    f.backups()
        .delete("second", &DeleteParams::default())
        .await?;
    let second_key = format!("prod/{}/esc/second.tar", f.ns.name());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(s3.head_object(BUCKET, &second_key).await?.is_some());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_killed_mid_backup_resumes_without_a_second_window_or_job() -> Result<()> {
    let mut f = Fixture::start("bk-restart", SimSpec::standalone()).await?;
    let s3 = S3Server::start(S3Kind::Minio).await?;
    s3.create_bucket(BUCKET).await?;
    // escadm backup takes 6 s: the operator dies while ESC is in maintenance for it.
    f.sim.nodes()[0].fault_once("backup", FaultKind::Hang { seconds: 6.0 })?;
    let target = f
        .s3_target(&s3, s3.secret_key(), ChecksumMode::WhenSupported)
        .await?;
    f.create_backup("nightly", target, |_| {}).await?;
    f.wait_backup("nightly", "in BackupDatabase", BACKUP, |s| {
        current_step(s) == Some(BackupStep::BackupDatabase)
    })
    .await?;
    f.replace_operator("op-2").await?;
    f.wait_backup("nightly", "Succeeded", BACKUP, succeeded)
        .await?;
    let words: Vec<String> = f
        .journal_words()?
        .into_iter()
        .filter(|w| !w.ends_with("log-collect"))
        .collect();
    assert_eq!(
        words,
        ["esc:set-maintenance", "esc:backup", "esc:set-operation"],
        "one window, one backup: {words:?}"
    );
    assert_eq!(f.jobs().await?.len(), 1);
    Ok(())
}

/// The default mover pod (no host network) is admitted where `restricted` is enforced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_mover_pod_passes_restricted() -> Result<()> {
    use esc_operator::controller::backup::job::{
        MoverJobInput, MoverSecrets, MoverTemplate, mover_job,
    };
    let cluster = TestCluster::shared_control_plane();
    let ns = cluster
        .namespace_with_labels(
            "bk-restricted",
            &[("pod-security.kubernetes.io/enforce", "restricted")],
        )
        .await?;
    let secrets = MoverSecrets {
        esc_credentials: "esc-ssh".into(),
        esc_known_hosts: "esc-known-hosts".into(),
        target_credentials: Some("s3".into()),
        target_known_hosts: None,
        target_ca: None,
    };
    let owner = k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        api_version: "escoperator.dev/v1alpha1".into(),
        kind: "EscBackup".into(),
        name: "b".into(),
        uid: "00000000-0000-0000-0000-000000000000".into(),
        controller: Some(true),
        block_owner_deletion: None,
    };
    let default = MoverTemplate::default();
    let job = mover_job(&MoverJobInput {
        name: "b-mover",
        namespace: ns.name(),
        owner: owner.clone(),
        run_label: (esc_operator::controller::backup::job::BACKUP_LABEL, "b"),
        command: "backup",
        image: "localhost/esc-operator:dev",
        request_json: "{}".into(),
        secrets: &secrets,
        template: &default,
    });
    let pod = k8s_openapi::api::core::v1::Pod {
        metadata: ObjectMeta {
            name: Some("mover".into()),
            ..ObjectMeta::default()
        },
        spec: job.spec.unwrap().template.spec,
        status: None,
    };
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(cluster.client(), ns.name());
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    pods.create(&dry, &pod)
        .await
        .context("restricted refused the default mover pod")?;
    // The namespace does enforce: the host-network template is refused there.
    let host = MoverTemplate {
        host_network: true,
        ..MoverTemplate::default()
    };
    let job = mover_job(&MoverJobInput {
        name: "b-mover",
        namespace: ns.name(),
        owner,
        run_label: (esc_operator::controller::backup::job::BACKUP_LABEL, "b"),
        command: "backup",
        image: "localhost/esc-operator:dev",
        request_json: "{}".into(),
        secrets: &secrets,
        template: &host,
    });
    let pod = k8s_openapi::api::core::v1::Pod {
        spec: job.spec.unwrap().template.spec,
        ..pod
    };
    match pods.create(&dry, &pod).await {
        Err(kube::Error::Api(e)) if e.code == 403 => Ok(()),
        other => bail!("restricted admitted a hostNetwork mover pod: {other:?}"),
    }
}
