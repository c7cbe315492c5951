//! The mover Job: how it is built (pure: [`mover_job`]) and how a Job and its pod are read back
//! into what the plan understands ([`job_view`], pure too).
//!
//! The pod holds no Kubernetes credentials (`automountServiceAccountToken: false`) and runs
//! under the restricted Pod Security profile (non-root 65532, read-only root filesystem, no
//! capabilities, RuntimeDefault seccomp). Secrets reach it only as read-only volumes at the
//! fixed paths below, which the request names; the request itself travels in one environment
//! variable and holds no secret. The result comes back through the termination message.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, Pod, PodSecurityContext, PodSpec, PodTemplateSpec,
    ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext, Toleration, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde::{Deserialize, Serialize};

use crate::api::TransferProgress;
use crate::mover::{MoverReport, ProgressLine, REQUEST_ENV};
use crate::plan::backup::{JobView, StoredArtifact};
use crate::plan::report::Problem;

/// Where the pod finds each Secret (read-only volumes).
pub const ESC_CREDENTIALS_DIR: &str = "/var/run/esc-mover/esc-credentials";
pub const ESC_KNOWN_HOSTS_DIR: &str = "/var/run/esc-mover/esc-known-hosts";
pub const TARGET_CREDENTIALS_DIR: &str = "/var/run/esc-mover/target-credentials";
pub const TARGET_KNOWN_HOSTS_DIR: &str = "/var/run/esc-mover/target-known-hosts";
pub const TARGET_CA_DIR: &str = "/var/run/esc-mover/target-ca";

/// The mover's user and group: the distroless `nonroot` user.
const MOVER_UID: i64 = 65532;
/// The container's name.
pub const MOVER_CONTAINER: &str = "mover";

/// Labels of every mover Job and pod.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const BACKUP_LABEL: &str = "escoperator.dev/backup";
/// On a restore's staging Job and its pod: the EscRestore's name.
pub const RESTORE_LABEL: &str = "escoperator.dev/restore";

/// Where and how mover pods run: the operator's `--mover-template` file (later the chart's
/// values). Every field has a default that suits a cluster whose pods reach the ESC nodes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MoverTemplate {
    /// The mover's image; unset: the image the operator runs from (`ESC_OPERATOR_IMAGE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    #[serde(default = "default_resources")]
    pub resources: ResourceRequirements,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// For sites where ESC's management network is reachable only from the hosts.
    #[serde(default)]
    pub host_network: bool,
    /// The Job's `activeDeadlineSeconds`: a transfer that takes longer fails.
    #[serde(default = "default_deadline")]
    pub active_deadline_seconds: i64,
    /// The Job's `ttlSecondsAfterFinished` (its pod's logs stay readable until then).
    #[serde(default = "default_ttl")]
    pub ttl_seconds_after_finished: i32,
    /// S3 multipart: the part size in MiB (5 to 5120). The mover holds about this much per part
    /// in flight, plus one being filled: 5 MiB × 4 keeps its peak near 56 MiB (measured).
    #[serde(default = "default_part_mib", rename = "s3PartSizeMiB")]
    pub s3_part_size_mib: u64,
    /// S3 multipart: parts uploaded at once (1 to 32).
    #[serde(default = "default_concurrency")]
    pub s3_concurrency: u32,
}

impl MoverTemplate {
    /// Checks the values the mover would refuse, so that a bad template stops the operator at
    /// start-up instead of failing every backup.
    pub fn validate(&self) -> Result<(), String> {
        use crate::mover::request::{MAX_CONCURRENCY, MAX_PART_SIZE, MIN_PART_SIZE};
        let part = self.s3_part_size_mib.saturating_mul(1 << 20);
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part) {
            return Err(format!(
                "s3PartSizeMiB must be between {} and {}, not {}",
                MIN_PART_SIZE >> 20,
                MAX_PART_SIZE >> 20,
                self.s3_part_size_mib
            ));
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.s3_concurrency) {
            return Err(format!(
                "s3Concurrency must be between 1 and {MAX_CONCURRENCY}, not {}",
                self.s3_concurrency
            ));
        }
        if self.active_deadline_seconds < 1 || self.ttl_seconds_after_finished < 0 {
            return Err(
                "activeDeadlineSeconds must be positive and ttlSecondsAfterFinished not negative"
                    .to_owned(),
            );
        }
        Ok(())
    }
}

fn default_part_mib() -> u64 {
    5
}

fn default_concurrency() -> u32 {
    crate::mover::request::DEFAULT_CONCURRENCY
}

impl Default for MoverTemplate {
    fn default() -> Self {
        MoverTemplate {
            image: None,
            image_pull_policy: None,
            resources: default_resources(),
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            priority_class_name: None,
            host_network: false,
            active_deadline_seconds: default_deadline(),
            ttl_seconds_after_finished: default_ttl(),
            s3_part_size_mib: default_part_mib(),
            s3_concurrency: default_concurrency(),
        }
    }
}

fn default_resources() -> ResourceRequirements {
    let q = |s: &str| Quantity(s.to_owned());
    ResourceRequirements {
        // Memory is bounded by the upload's parts: 4 in flight and one being filled, 5 MiB each
        // by default (peak RSS 58 MiB measured at 1 and 4 GiB).
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), q("100m")),
            ("memory".to_owned(), q("64Mi")),
        ])),
        limits: Some(BTreeMap::from([("memory".to_owned(), q("256Mi"))])),
        ..ResourceRequirements::default()
    }
}

fn default_deadline() -> i64 {
    6 * 3600
}

fn default_ttl() -> i32 {
    24 * 3600
}

/// The Secrets the mover needs, by name (all in the backup's namespace).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoverSecrets {
    pub esc_credentials: String,
    pub esc_known_hosts: String,
    /// S3 credentials or the scp host's credentials; `None`: ambient S3 credentials.
    pub target_credentials: Option<String>,
    /// The scp host's known_hosts.
    pub target_known_hosts: Option<String>,
    /// The S3 endpoint's CA bundle.
    pub target_ca: Option<String>,
}

/// Everything the Job is made of.
#[derive(Clone, Debug)]
pub struct MoverJobInput<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    /// The EscBackup: owner of the Job (deleting it deletes the Job).
    pub owner: OwnerReference,
    /// The run's label (`escoperator.dev/backup` or `escoperator.dev/restore`) and its value,
    /// the run's name.
    pub run_label: (&'static str, &'a str),
    /// The mover subcommand: `backup` or `stage`.
    pub command: &'static str,
    pub image: &'a str,
    /// The request's JSON (no secret in it).
    pub request_json: String,
    pub secrets: &'a MoverSecrets,
    pub template: &'a MoverTemplate,
}

/// The Job. Pure.
pub fn mover_job(input: &MoverJobInput<'_>) -> Job {
    let labels = BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            "esc-operator".to_owned(),
        ),
        (COMPONENT_LABEL.to_owned(), "mover".to_owned()),
        (MANAGED_BY_LABEL.to_owned(), "esc-operator".to_owned()),
        (input.run_label.0.to_owned(), input.run_label.1.to_owned()),
    ]);
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    let mut mount = |volume: &str, secret: &str, path: &str| {
        volumes.push(Volume {
            name: volume.to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.to_owned()),
                // Group-readable: the kubelet gives the files to the pod's fsGroup.
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: volume.to_owned(),
            mount_path: path.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    };
    let s = input.secrets;
    mount("esc-credentials", &s.esc_credentials, ESC_CREDENTIALS_DIR);
    mount("esc-known-hosts", &s.esc_known_hosts, ESC_KNOWN_HOSTS_DIR);
    if let Some(name) = &s.target_credentials {
        mount("target-credentials", name, TARGET_CREDENTIALS_DIR);
    }
    if let Some(name) = &s.target_known_hosts {
        mount("target-known-hosts", name, TARGET_KNOWN_HOSTS_DIR);
    }
    if let Some(name) = &s.target_ca {
        mount("target-ca", name, TARGET_CA_DIR);
    }
    let t = input.template;
    let container = Container {
        name: MOVER_CONTAINER.to_owned(),
        image: Some(input.image.to_owned()),
        image_pull_policy: t.image_pull_policy.clone(),
        args: Some(vec!["mover".to_owned(), input.command.to_owned()]),
        env: Some(vec![EnvVar {
            name: REQUEST_ENV.to_owned(),
            value: Some(input.request_json.clone()),
            value_from: None,
        }]),
        resources: Some(t.resources.clone()),
        volume_mounts: Some(mounts),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            run_as_user: Some(MOVER_UID),
            run_as_group: Some(MOVER_UID),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                add: None,
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                localhost_profile: None,
            }),
            ..SecurityContext::default()
        }),
        // A mover that dies before writing its report (a crash, a usage error) still explains
        // itself: the kubelet then takes the end of its log.
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    };
    Job {
        metadata: ObjectMeta {
            name: Some(input.name.to_owned()),
            namespace: Some(input.namespace.to_owned()),
            labels: Some(labels.clone()),
            owner_references: Some(vec![input.owner.clone()]),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            // One attempt: a retry would repeat the whole transfer; the operator decides.
            backoff_limit: Some(0),
            active_deadline_seconds: Some(t.active_deadline_seconds),
            ttl_seconds_after_finished: Some(t.ttl_seconds_after_finished),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".to_owned()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    host_network: t.host_network.then_some(true),
                    dns_policy: t.host_network.then(|| "ClusterFirstWithHostNet".to_owned()),
                    node_selector: (!t.node_selector.is_empty()).then(|| t.node_selector.clone()),
                    tolerations: (!t.tolerations.is_empty()).then(|| t.tolerations.clone()),
                    priority_class_name: t.priority_class_name.clone(),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(MOVER_UID),
                        run_as_group: Some(MOVER_UID),
                        fs_group: Some(MOVER_UID),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            localhost_profile: None,
                        }),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

/// A mover Job, as seen: any kind of run.
#[derive(Clone, Debug, PartialEq)]
pub enum JobState {
    Running,
    /// Completed, with a report of success (a backup's `Succeeded` or a staging's `Staged`).
    Completed(MoverReport),
    Failed(Problem),
}

/// What a backup's Job is doing. Pure. Fail closed: `Succeeded` only with a backup's report of
/// success, from a Job that `run_uid` controls.
pub fn job_view(job: &Job, pod: Option<&Pod>, run_uid: &str) -> JobView {
    match job_state(job, pod, run_uid) {
        JobState::Running => JobView::Running(None),
        JobState::Failed(p) => JobView::Failed(p),
        JobState::Completed(MoverReport::Succeeded {
            uri, size, sha256, ..
        }) => JobView::Succeeded(StoredArtifact {
            uri,
            size,
            sha256: sha256.to_string(),
        }),
        // Another run's report in a backup's Job: never taken for a stored artifact.
        JobState::Completed(_) => JobView::Failed(Problem::new(
            "MoverReportUnreadable",
            "the mover Job completed with a report that is not a backup's",
        )),
    }
}

/// Whether the object with `uid` is `meta`'s controller (the ownerReference with
/// `controller: true`). Labels and names prove nothing: anyone who may create a Job or a pod in
/// the namespace may copy them.
pub fn controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    !uid.is_empty()
        && meta
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.controller == Some(true) && o.uid == uid)
}

/// The newest of `pods` that the Job with `job_uid` controls (the Job controller makes another
/// pod only if the first is lost; `backoffLimit` is 0). Pods that merely carry its labels are
/// ignored: their termination message is not the mover's report.
pub fn newest_pod_of(pods: Vec<Pod>, job_uid: &str) -> Option<Pod> {
    pods.into_iter()
        .filter(|p| controlled_by(&p.metadata, job_uid))
        .max_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0))
}

/// What the Job is doing, from the Job and (once it ended) its pod. Pure. Fail closed: a Job
/// is `Completed` only when this run (`run_uid`) controls it, it completed, *and* its pod's
/// termination message is a mover report of success. A Job of the same name that the run did
/// not make is a failure of the run: it is never read as the run's result.
pub fn job_state(job: &Job, pod: Option<&Pod>, run_uid: &str) -> JobState {
    if !controlled_by(&job.metadata, run_uid) {
        let name = job.metadata.name.as_deref().unwrap_or_default();
        return JobState::Failed(Problem::new(
            "MoverJobNotOwned",
            format!(
                "a Job named {name} exists in this namespace but this run did not create it; the \
                 operator neither reads nor deletes it: remove or rename that Job, then create \
                 the run again"
            ),
        ));
    }
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .cloned()
        .unwrap_or_default();
    let is = |type_: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == "True")
    };
    let terminated = pod.and_then(|p| {
        p.status
            .as_ref()?
            .container_statuses
            .as_ref()?
            .iter()
            .find(|c| c.name == MOVER_CONTAINER)?
            .state
            .as_ref()?
            .terminated
            .clone()
    });
    let report = terminated
        .as_ref()
        .and_then(|t| t.message.as_deref())
        .map(|m| serde_json::from_str::<MoverReport>(m.trim()));
    if is("Complete").is_some() {
        return match report {
            Some(Ok(MoverReport::Failed {
                reason, message, ..
            })) => JobState::Failed(Problem::new(reason, message)),
            Some(Ok(done)) => JobState::Completed(done),
            Some(Err(e)) => JobState::Failed(Problem::new(
                "MoverReportUnreadable",
                format!("the mover Job completed but its report is not understood: {e}"),
            )),
            None if pod.is_none() => JobState::Running,
            None => JobState::Failed(Problem::new(
                "MoverReportMissing",
                "the mover Job completed without a report in its termination message",
            )),
        };
    }
    if let Some(failed) = is("Failed") {
        if let Some(Ok(MoverReport::Failed {
            reason, message, ..
        })) = report
        {
            return JobState::Failed(Problem::new(reason, message));
        }
        let mut container = terminated
            .as_ref()
            .and_then(|t| t.reason.clone())
            .map(|r| format!("; the mover container ended with {r}"))
            .unwrap_or_default();
        // No report: what the kubelet kept of its log instead (the mover never logs a secret).
        if let (Some(Err(_)), Some(words)) = (
            &report,
            terminated.as_ref().and_then(|t| t.message.as_deref()),
        ) {
            let words: String = words
                .trim()
                .chars()
                .rev()
                .take(300)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            container.push_str(&format!("; its last output: {words}"));
        }
        let reason = match terminated.as_ref().and_then(|t| t.reason.as_deref()) {
            Some("OOMKilled") => "MoverOOMKilled".to_owned(),
            _ => format!(
                "Mover{}",
                failed.reason.clone().unwrap_or_else(|| "Failed".into())
            ),
        };
        return JobState::Failed(Problem::new(
            reason,
            format!(
                "the mover Job failed ({}: {}){container}; see `kubectl logs job/{}`",
                failed.reason.as_deref().unwrap_or("Failed"),
                failed.message.as_deref().unwrap_or(""),
                job.metadata.name.as_deref().unwrap_or("")
            ),
        ));
    }
    JobState::Running
}

/// The last progress line in a piece of the mover's log (its stdout lines; its JSON logs on
/// stderr are other lines and never match).
pub fn last_progress(log: &str) -> Option<TransferProgress> {
    log.lines().rev().find_map(|line| {
        match serde_json::from_str::<ProgressLine>(line.trim()).ok()? {
            ProgressLine::Progress {
                bytes,
                total_bytes,
                bytes_per_second,
            } => Some(TransferProgress {
                bytes: i64::try_from(bytes).unwrap_or(i64::MAX),
                total_bytes: Some(i64::try_from(total_bytes).unwrap_or(i64::MAX)),
                bytes_per_second: Some(bytes_per_second.max(0.0).round() as i64),
            }),
            ProgressLine::Step { .. } => None,
        }
    })
}

#[cfg(test)]
mod tests;
