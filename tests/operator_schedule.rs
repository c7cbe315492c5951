//! EscBackupSchedule end to end on the real control plane: `esc-operator run` (a child process
//! under the RBAC of `manifests/rbac/operator.yaml`) with its clock in a file
//! (`--test-clock-file`, testing only), so that hours and seasons pass in seconds; the runs are
//! real EscBackups of a simulated ESC into MinIO.
//!
//! The clock moves only where a test writes it; the operator reads the file about every second.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use esc_operator::api::{
    BackupInclude, BackupTarget, BackupTemplate, DeletionPolicy, EscBackup, EscBackupSchedule,
    EscBackupScheduleSpec, EscBackupScheduleStatus, EscCluster, LocalObjectRef, Retention,
    RunPhase, S3Connection, S3Target,
};
use esc_testbed::cluster::{TestCluster, TestNamespace};
use esc_testbed::operator::{Operator, operator_identity};
use esc_testbed::operator_image::OperatorImage;
use esc_testbed::s3::{S3Kind, S3Server};
use esc_testbed::sshd::{SimEsc, SimSpec};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};

mod esc_fixture;
use esc_fixture::{SshSecrets, cluster_spec, create_ssh_secrets, ready, tail, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_esc-operator");
const BUCKET: &str = "esc-backups";
const CONVERGE: Duration = Duration::from_secs(30);
/// A whole backup: the mover Job's pod starts on the node in a few seconds.
const BACKUP: Duration = Duration::from_secs(120);

fn cluster() -> &'static TestCluster {
    TestCluster::shared()
}

/// One test's world: a namespace, the operator on a file clock, and (when asked) a simulated
/// ESC with its EscCluster `esc` Ready and a MinIO bucket.
struct Fixture {
    ns: TestNamespace,
    operator: Operator,
    kubeconfig: PathBuf,
    clock: PathBuf,
    template: PathBuf,
    run_dir: PathBuf,
    dir: tempfile::TempDir,
    esc: Option<(SimEsc, SshSecrets, S3Server)>,
}

impl Fixture {
    async fn start(prefix: &str, now: &str, with_esc: bool) -> Result<Fixture> {
        let cluster = cluster();
        let image = OperatorImage::shared();
        if with_esc {
            image.import_into(cluster)?;
        }
        cluster.install_crds(&esc_operator::api::crds()).await?;
        let ns = cluster.namespace(prefix).await?;
        let dir = tempfile::tempdir()?;
        let kubeconfig =
            operator_identity(cluster, ns.name(), "esc-operator", &[ns.name()], dir.path()).await?;
        let run_dir = PathBuf::from(format!("/var/tmp/esc-operator-test-{}", ns.name()));
        std::fs::create_dir_all(&run_dir)?;
        std::process::Command::new("chmod")
            .arg("1777")
            .arg(&run_dir)
            .status()?;
        let template = dir.path().join("mover.yaml");
        std::fs::write(
            &template,
            format!(
                "image: {}\nimagePullPolicy: Never\nhostNetwork: true\nactiveDeadlineSeconds: 300\n",
                image.name
            ),
        )?;
        let clock = dir.path().join("now");
        std::fs::write(&clock, now)?;
        let esc = if with_esc {
            let sim = SimEsc::start(SimSpec::standalone())?;
            sim.share_first_client_key()?;
            let secrets = create_ssh_secrets(&cluster.client(), ns.name(), "esc", &sim).await?;
            let s3 = S3Server::start(S3Kind::Minio).await?;
            s3.create_bucket(BUCKET).await?;
            Some((sim, secrets, s3))
        } else {
            None
        };
        let operator = start_operator(
            &kubeconfig,
            ns.name(),
            &clock,
            &template,
            &run_dir,
            dir.path(),
            "op-1",
        )?;
        let mut f = Fixture {
            ns,
            operator,
            kubeconfig,
            clock,
            template,
            run_dir,
            dir,
            esc,
        };
        f.operator.wait_ready(Duration::from_secs(60)).await?;
        if let Some((sim, secrets, s3)) = &f.esc {
            let clusters: Api<EscCluster> = Api::namespaced(cluster.client(), f.ns.name());
            clusters
                .create(
                    &PostParams::default(),
                    &EscCluster::new("esc", cluster_spec(sim, secrets)),
                )
                .await?;
            wait_for(&clusters, "esc", "Ready", CONVERGE, ready, || {
                tail(&f.operator.log(), 40)
            })
            .await?;
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some("s3-creds".into()),
                    ..ObjectMeta::default()
                },
                data: Some(
                    [
                        ("AWS_ACCESS_KEY_ID", s3.access_key()),
                        ("AWS_SECRET_ACCESS_KEY", s3.secret_key()),
                    ]
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
                ),
                ..Secret::default()
            };
            Api::<Secret>::namespaced(cluster.client(), f.ns.name())
                .create(&PostParams::default(), &secret)
                .await?;
        }
        Ok(f)
    }

    fn set_clock(&self, now: &str) -> Result<()> {
        // Written whole and renamed: the operator never reads half a timestamp.
        let tmp = self.dir.path().join("now.tmp");
        std::fs::write(&tmp, now)?;
        std::fs::rename(&tmp, &self.clock)?;
        Ok(())
    }

    fn s3(&self) -> &S3Server {
        &self.esc.as_ref().expect("a fixture with ESC").2
    }

    fn schedules(&self) -> Api<EscBackupSchedule> {
        Api::namespaced(cluster().client(), self.ns.name())
    }

    fn backups(&self) -> Api<EscBackup> {
        Api::namespaced(cluster().client(), self.ns.name())
    }

    /// An S3 target in MinIO (bucket `bucket`), prefix `prod/`.
    fn s3_target(&self, bucket: &str) -> BackupTarget {
        BackupTarget {
            s3: Some(S3Target {
                connection: S3Connection {
                    bucket: bucket.into(),
                    region: None,
                    endpoint: Some(self.s3().endpoint()),
                    force_path_style: true,
                    credentials_secret_ref: Some(LocalObjectRef {
                        name: "s3-creds".into(),
                    }),
                    ca_bundle_secret_ref: None,
                    checksum_mode: Default::default(),
                },
                prefix: Some("prod/".into()),
                storage_class: None,
                sse: None,
            }),
            scp: None,
        }
    }

    async fn create_schedule(
        &self,
        name: &str,
        cluster_ref: &str,
        schedule: &str,
        target: BackupTarget,
        tune: impl FnOnce(&mut EscBackupScheduleSpec),
    ) -> Result<()> {
        let mut spec = EscBackupScheduleSpec {
            cluster_ref: LocalObjectRef {
                name: cluster_ref.into(),
            },
            schedule: schedule.into(),
            time_zone: None,
            suspend: false,
            starting_deadline_seconds: None,
            template: BackupTemplate {
                target,
                include: BackupInclude::default(),
                deletion_policy: DeletionPolicy::Delete,
            },
            retention: Retention::default(),
        };
        tune(&mut spec);
        self.schedules()
            .create(&PostParams::default(), &EscBackupSchedule::new(name, spec))
            .await?;
        Ok(())
    }

    async fn patch_spec(&self, name: &str, spec: serde_json::Value) -> Result<()> {
        self.schedules()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "spec": spec })),
            )
            .await?;
        Ok(())
    }

    /// Polls the schedule until `pred` holds on its status.
    async fn wait_schedule(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(&EscBackupScheduleStatus) -> bool,
    ) -> Result<EscBackupScheduleStatus> {
        let deadline = Instant::now() + CONVERGE;
        loop {
            let status = self.schedules().get(name).await?.status.unwrap_or_default();
            if pred(&status) {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!(
                    "EscBackupSchedule {name}: not {what} within {CONVERGE:?}; status: {}\noperator log:\n{}",
                    serde_json::to_string_pretty(&status)?,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Polls the EscBackup until it exists and `pred` holds on its phase.
    async fn wait_backup(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(Option<RunPhase>) -> bool,
    ) -> Result<EscBackup> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(b) = self.backups().get_opt(name).await?
                && pred(b.status.as_ref().and_then(|s| s.phase))
            {
                return Ok(b);
            }
            if Instant::now() > deadline {
                bail!(
                    "EscBackup {name}: not {what} within {timeout:?}; runs: {:?}\noperator log:\n{}",
                    self.run_names().await?,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until the EscBackup is gone (its finalizer applied the deletion policy).
    async fn wait_gone(&self, name: &str) -> Result<()> {
        let deadline = Instant::now() + CONVERGE;
        while self.backups().get_opt(name).await?.is_some() {
            if Instant::now() > deadline {
                bail!("EscBackup {name} still exists\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(())
    }

    /// The EscBackups in the namespace, by name.
    async fn run_names(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .backups()
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .map(|b| b.metadata.name.clone().unwrap_or_default())
            .collect();
        names.sort();
        Ok(names)
    }

    /// The reasons of the Events on schedule `name`, oldest first.
    async fn event_reasons(&self, name: &str) -> Result<Vec<String>> {
        let events: Api<Event> = Api::namespaced(cluster().client(), self.ns.name());
        let mut list: Vec<Event> = events
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("EscBackupSchedule")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
            })
            .collect();
        list.sort_by_key(|e| e.metadata.creation_timestamp.clone().map(|t| t.0));
        Ok(list.into_iter().filter_map(|e| e.reason).collect())
    }

    fn artifact_key(&self, backup: &str) -> String {
        format!("prod/{}/esc/{backup}.tar", self.ns.name())
    }

    fn log_tail(&self) -> String {
        tail(
            &self
                .operator
                .log()
                .lines()
                .filter(|l| !l.contains("esccluster"))
                .collect::<Vec<_>>()
                .join("\n"),
            60,
        )
    }

    /// SIGKILL the operator (an outage), then start a new one with the same settings.
    fn kill_operator(&mut self) {
        self.operator.kill();
    }

    async fn restart_operator(&mut self, name: &str) -> Result<()> {
        self.operator = start_operator(
            &self.kubeconfig,
            self.ns.name(),
            &self.clock,
            &self.template,
            &self.run_dir,
            self.dir.path(),
            name,
        )?;
        self.operator.wait_ready(Duration::from_secs(60)).await
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

fn start_operator(
    kubeconfig: &Path,
    ns: &str,
    clock: &Path,
    template: &Path,
    run_dir: &Path,
    dir: &Path,
    name: &str,
) -> Result<Operator> {
    let args = [
        format!("--namespaces={ns}"),
        format!("--lease-namespace={ns}"),
        "--lease-duration=6s".to_owned(),
        "--log-level=info,esc_operator=debug".to_owned(),
        format!("--run-directory={}", run_dir.display()),
        format!("--mover-template={}", template.display()),
        format!("--test-clock-file={}", clock.display()),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Operator::start(Path::new(BIN), kubeconfig, name, &args, dir)
}

fn time(
    s: &EscBackupScheduleStatus,
    f: fn(&EscBackupScheduleStatus) -> Option<&esc_operator::api::Time>,
) -> Option<String> {
    f(s).map(|t| t.0.to_string())
}

fn next_is(at: &'static str) -> impl Fn(&EscBackupScheduleStatus) -> bool {
    move |s| time(s, |s| s.next_schedule_time.as_ref()).as_deref() == Some(at)
}

fn condition<'a>(s: &'a EscBackupScheduleStatus, t: &str) -> Option<(&'a str, &'a str)> {
    s.conditions
        .iter()
        .find(|c| c.type_ == t)
        .map(|c| (c.status.as_str(), c.reason.as_str()))
}

fn succeeded(p: Option<RunPhase>) -> bool {
    p == Some(RunPhase::Succeeded)
}

fn failed(p: Option<RunPhase>) -> bool {
    p == Some(RunPhase::Failed)
}

fn exists(_: Option<RunPhase>) -> bool {
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_come_on_time_never_overlap_pause_when_suspended_and_catch_up_once_after_an_outage()
-> Result<()> {
    let mut f = Fixture::start("sch-run", "2026-03-01T00:30:00Z", true).await?;
    let target = f.s3_target(BUCKET);
    f.create_schedule("hourly", "esc", "0 * * * *", target, |s| {
        s.starting_deadline_seconds = Some(1800);
    })
    .await?;
    let s = f
        .wait_schedule(
            "hourly",
            "scheduled for 01:00",
            next_is("2026-03-01T01:00:00Z"),
        )
        .await?;
    assert_eq!(condition(&s, "Ready"), Some(("True", "Scheduled")));
    assert_eq!(condition(&s, "Stalled"), Some(("False", "Valid")));
    assert!(f.run_names().await?.is_empty());

    // 01:00: one run. While it is active, 02:00 comes due: skipped, not queued.
    f.set_clock("2026-03-01T01:00:00Z")?;
    f.wait_backup("hourly-202603010100", "created", CONVERGE, exists)
        .await?;
    f.set_clock("2026-03-01T02:00:00Z")?;
    let s = f
        .wait_schedule("hourly", "skipping 02:00", |s| {
            s.last_skipped
                .as_ref()
                .is_some_and(|k| k.reason == "Overlap")
        })
        .await?;
    let skipped = s.last_skipped.clone().unwrap();
    assert_eq!(skipped.scheduled_time.0.to_string(), "2026-03-01T02:00:00Z");
    assert!(
        skipped.message.contains("hourly-202603010100"),
        "{}",
        skipped.message
    );
    assert_eq!(s.active.as_deref(), Some("hourly-202603010100"));
    let first = f
        .wait_backup("hourly-202603010100", "Succeeded", BACKUP, succeeded)
        .await?;
    // Its run ended: still nothing for 02:00 (not queued); the status shows the success.
    let s = f
        .wait_schedule("hourly", "showing the success", |s| {
            s.active.is_none() && s.last_successful_time.is_some()
        })
        .await?;
    assert_eq!(
        s.last_successful_time,
        first.status.as_ref().unwrap().completed_at
    );
    assert_eq!(f.run_names().await?, ["hourly-202603010100"]);
    assert_eq!(
        f.operator
            .metric(&format!(
                "esc_backup_schedule_skipped_runs_total{{namespace=\"{}\",name=\"hourly\"}}",
                f.ns.name()
            ))
            .await?,
        Some(1.0)
    );
    assert_eq!(
        f.operator
            .metric(&format!(
                "esc_backup_schedule_last_success_timestamp_seconds{{namespace=\"{}\",name=\"hourly\"}}",
                f.ns.name()
            ))
            .await?,
        Some(s.last_successful_time.as_ref().unwrap().0.as_second() as f64)
    );

    // Suspended across 03:00: nothing. Resumed at 03:10: 03:00 is not made up.
    f.patch_spec("hourly", serde_json::json!({"suspend": true}))
        .await?;
    f.wait_schedule("hourly", "suspended", |s| {
        condition(s, "Ready") == Some(("True", "Suspended")) && s.next_schedule_time.is_none()
    })
    .await?;
    f.set_clock("2026-03-01T03:00:00Z")?;
    f.wait_schedule("hourly", "past 03:00", |s| {
        time(s, |s| s.last_considered_time.as_ref()).as_deref() == Some("2026-03-01T03:00:00Z")
    })
    .await?;
    f.set_clock("2026-03-01T03:10:00Z")?;
    f.patch_spec("hourly", serde_json::json!({"suspend": false}))
        .await?;
    f.wait_schedule(
        "hourly",
        "resumed for 04:00",
        next_is("2026-03-01T04:00:00Z"),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(f.run_names().await?, ["hourly-202603010100"]);

    // The operator is down from 03:10 to 09:20: six hourly times pass. One run starts, for
    // 09:00 (20 minutes late, within the 30-minute deadline); the five before it are missed.
    f.kill_operator();
    f.set_clock("2026-03-01T09:20:00Z")?;
    f.restart_operator("op-2").await?;
    f.wait_backup("hourly-202603010900", "Succeeded", BACKUP, succeeded)
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        f.run_names().await?,
        ["hourly-202603010100", "hourly-202603010900"]
    );
    let s = f
        .wait_schedule(
            "hourly",
            "after the catch-up",
            next_is("2026-03-01T10:00:00Z"),
        )
        .await?;
    assert_eq!(
        s.last_skipped.as_ref().map(|k| k.reason.as_str()),
        Some("Missed")
    );
    assert_eq!(
        time(&s, |s| s.last_schedule_time.as_ref()).as_deref(),
        Some("2026-03-01T09:00:00Z")
    );
    assert_eq!(
        f.operator
            .metric(&format!(
                "esc_backup_schedule_missed_runs_total{{namespace=\"{}\",name=\"hourly\"}}",
                f.ns.name()
            ))
            .await?,
        Some(5.0)
    );
    let reasons = f.event_reasons("hourly").await?;
    for reason in ["RunCreated", "RunSkipped", "MissedRuns"] {
        assert!(reasons.iter().any(|r| r == reason), "{reasons:?}");
    }
    // Another outage, this time past the deadline: 10:00 is 40 minutes late and is not run.
    f.kill_operator();
    f.set_clock("2026-03-01T10:40:00Z")?;
    f.restart_operator("op-3").await?;
    let s = f
        .wait_schedule("hourly", "missing 10:00", |s| {
            s.last_skipped
                .as_ref()
                .is_some_and(|k| k.reason == "DeadlineExceeded")
        })
        .await?;
    assert_eq!(
        s.last_skipped.unwrap().scheduled_time.0.to_string(),
        "2026-03-01T10:00:00Z"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(f.run_names().await?.len(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_exactly_the_old_runs_and_their_artifacts_but_never_the_last_good_one()
-> Result<()> {
    let f = Fixture::start("sch-keep", "2026-03-01T00:30:00Z", true).await?;
    f.create_schedule("keep", "esc", "0 * * * *", f.s3_target(BUCKET), |s| {
        s.retention = Retention {
            keep_last: Some(1),
            failed_history_limit: Some(1),
            ..Retention::default()
        };
    })
    .await?;
    f.wait_schedule("keep", "scheduled", next_is("2026-03-01T01:00:00Z"))
        .await?;
    f.set_clock("2026-03-01T01:00:00Z")?;
    f.wait_backup("keep-202603010100", "Succeeded", BACKUP, succeeded)
        .await?;
    let first = f.artifact_key("keep-202603010100");
    assert!(f.s3().head_object(BUCKET, &first).await?.is_some());
    f.set_clock("2026-03-01T02:00:00Z")?;
    f.wait_backup("keep-202603010200", "Succeeded", BACKUP, succeeded)
        .await?;
    // A newer run succeeded: keepLast 1 removes the older one, and deletionPolicy Delete its
    // artifact and checksum sidecar.
    f.wait_gone("keep-202603010100").await?;
    assert_eq!(f.s3().head_object(BUCKET, &first).await?, None);
    assert_eq!(
        f.s3()
            .head_object(BUCKET, &format!("{first}.sha256"))
            .await?,
        None
    );
    let good = f.artifact_key("keep-202603010200");
    assert!(f.s3().head_object(BUCKET, &good).await?.is_some());

    // Now every run fails (a bucket that does not exist). The last good run stays; failed
    // runs are kept up to failedHistoryLimit (1).
    f.patch_spec(
        "keep",
        serde_json::json!({"template": {"target": {"s3": {"bucket": "no-such-bucket"}}}}),
    )
    .await?;
    f.set_clock("2026-03-01T03:00:00Z")?;
    f.wait_backup("keep-202603010300", "Failed", BACKUP, failed)
        .await?;
    f.set_clock("2026-03-01T04:00:00Z")?;
    f.wait_backup("keep-202603010400", "Failed", BACKUP, failed)
        .await?;
    f.wait_gone("keep-202603010300").await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        f.run_names().await?,
        ["keep-202603010200", "keep-202603010400"]
    );
    assert!(f.s3().head_object(BUCKET, &good).await?.is_some());
    // (The recorder folds repeated Events of one reason into a series: presence is what counts.)
    let reasons = f.event_reasons("keep").await?;
    assert!(reasons.iter().any(|r| r == "RunDeleted"), "{reasons:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daylight_saving_runs_once_both_ways_and_invalid_schedules_stall() -> Result<()> {
    // No ESC: the runs fail at once (no such EscCluster), which is all this test needs of them.
    let f = Fixture::start("sch-dst", "2026-03-28T12:00:00Z", false).await?;
    let target = BackupTarget {
        s3: Some(S3Target {
            connection: S3Connection {
                bucket: BUCKET.into(),
                region: None,
                endpoint: Some("http://127.0.0.1:9".into()),
                force_path_style: true,
                credentials_secret_ref: None,
                ca_bundle_secret_ref: None,
                checksum_mode: Default::default(),
            },
            prefix: None,
            storage_class: None,
            sse: None,
        }),
        scp: None,
    };
    f.create_schedule("berlin", "nowhere", "30 2 * * *", target.clone(), |s| {
        s.time_zone = Some("Europe/Berlin".into());
        s.starting_deadline_seconds = Some(60);
    })
    .await?;
    // Spring forward: 02:30 does not exist on 29 March; it runs at 03:00 CEST (01:00 UTC).
    f.wait_schedule("berlin", "scheduled", next_is("2026-03-29T01:00:00Z"))
        .await?;
    f.set_clock("2026-03-29T01:00:00Z")?;
    f.wait_backup("berlin-202603290100", "Failed", CONVERGE, failed)
        .await?;
    f.wait_schedule("berlin", "on to the 30th", next_is("2026-03-30T00:30:00Z"))
        .await?;
    // Fall back: 02:30 comes twice on 25 October; only the first (00:30 UTC) runs.
    f.set_clock("2026-10-25T00:00:00Z")?;
    f.wait_schedule(
        "berlin",
        "before the repeated hour",
        next_is("2026-10-25T00:30:00Z"),
    )
    .await?;
    f.set_clock("2026-10-25T00:30:00Z")?;
    f.wait_backup("berlin-202610250030", "Failed", CONVERGE, failed)
        .await?;
    f.set_clock("2026-10-25T01:30:00Z")?;
    let s = f
        .wait_schedule("berlin", "past the second 02:30", |s| {
            time(s, |s| s.next_schedule_time.as_ref()).as_deref() == Some("2026-10-26T01:30:00Z")
                && time(s, |s| s.last_considered_time.as_ref()).as_deref()
                    == Some("2026-10-25T00:30:00Z")
        })
        .await?;
    assert_eq!(
        time(&s, |s| s.last_schedule_time.as_ref()).as_deref(),
        Some("2026-10-25T00:30:00Z")
    );
    // Nothing due: the operator looks at its clock every second and writes nothing. The
    // 00:30 run first ends (its end is a real status change: the active run goes).
    f.wait_schedule("berlin", "the 00:30 run ended", |s| s.active.is_none())
        .await?;
    let version = f.schedules().get("berlin").await?.metadata.resource_version;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        f.schedules().get("berlin").await?.metadata.resource_version,
        version,
        "the status was written while nothing changed"
    );
    let runs = f.run_names().await?;
    assert_eq!(
        runs,
        ["berlin-202603290100", "berlin-202610250030"],
        "{runs:?}"
    );

    // What admission lets through but the operator's parser refuses: Stalled, with what to fix.
    for (name, schedule, reason, says) in [
        ("never", "0 0 30 2 *", "NeverFires", "never fires"),
        ("backwards", "0 5-1 * * *", "InvalidSchedule", "write 1-5"),
    ] {
        f.create_schedule(name, "nowhere", schedule, target.clone(), |_| {})
            .await?;
        let s = f
            .wait_schedule(name, "Stalled", |s| condition(s, "Stalled").is_some())
            .await?;
        assert_eq!(condition(&s, "Stalled"), Some(("True", reason)));
        assert_eq!(condition(&s, "Ready"), Some(("False", reason)));
        let message = &s
            .conditions
            .iter()
            .find(|c| c.type_ == "Stalled")
            .unwrap()
            .message;
        assert!(message.contains(says), "{message}");
        assert_eq!(s.next_schedule_time, None);
    }
    let schedule: EscBackupSchedule = f.schedules().get("berlin").await?;
    assert!(schedule.status.is_some());
    Ok(())
}
