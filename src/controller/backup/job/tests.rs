//! The mover Job as built, and a Job read back, without a server. (That the built Job passes
//! the restricted Pod Security profile is checked against the real API server by a dry-run in
//! tests/operator_backup.rs.)

use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStatus, PodStatus,
};

use super::*;

fn secrets() -> MoverSecrets {
    MoverSecrets {
        esc_credentials: "esc-ssh".into(),
        esc_known_hosts: "esc-known-hosts".into(),
        target_credentials: Some("s3-creds".into()),
        target_known_hosts: None,
        target_ca: Some("s3-ca".into()),
    }
}

fn owner() -> OwnerReference {
    OwnerReference {
        api_version: "escoperator.dev/v1alpha1".into(),
        kind: "EscBackup".into(),
        name: "nightly".into(),
        uid: "0f1e".into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn build(template: &MoverTemplate) -> Job {
    let secrets = secrets();
    mover_job(&MoverJobInput {
        name: "nightly-mover-0f1e2",
        namespace: "esc",
        owner: owner(),
        run_label: (BACKUP_LABEL, "nightly"),
        command: "backup",
        image: "localhost/esc-operator:dev",
        request_json: r#"{"version":1}"#.into(),
        secrets: &secrets,
        template,
    })
}

#[test]
fn the_mover_pod_is_restricted_and_holds_no_kubernetes_credentials() {
    let job = build(&MoverTemplate::default());
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.backoff_limit, Some(0));
    assert_eq!(spec.active_deadline_seconds, Some(6 * 3600));
    assert!(spec.ttl_seconds_after_finished.is_some());
    assert_eq!(job.metadata.owner_references, Some(vec![owner()]));
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert_eq!(pod.host_network, None);
    let psc = pod.security_context.as_ref().unwrap();
    assert_eq!(
        (psc.run_as_non_root, psc.run_as_user, psc.fs_group),
        (Some(true), Some(65532), Some(65532))
    );
    let c = &pod.containers[0];
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop,
        Some(vec!["ALL".to_owned()])
    );
    assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
    assert!(c.resources.as_ref().unwrap().limits.is_some());
}

#[test]
fn secrets_arrive_as_read_only_volumes_never_as_args_or_env() {
    let job = build(&MoverTemplate::default());
    let pod = job.spec.unwrap().template.spec.unwrap();
    let c = &pod.containers[0];
    let env = c.env.clone().unwrap();
    assert_eq!(env.len(), 1);
    assert_eq!(env[0].name, REQUEST_ENV);
    assert!(env[0].value_from.is_none());
    assert!(
        c.env_from.is_none(),
        "no Secret may be exposed as environment"
    );
    let volumes: Vec<(String, String)> = pod
        .volumes
        .unwrap()
        .into_iter()
        .map(|v| (v.name, v.secret.unwrap().secret_name.unwrap()))
        .collect();
    assert_eq!(
        volumes,
        [
            ("esc-credentials".into(), "esc-ssh".into()),
            ("esc-known-hosts".into(), "esc-known-hosts".into()),
            ("target-credentials".into(), "s3-creds".into()),
            ("target-ca".into(), "s3-ca".into()),
        ]
    );
    for m in c.volume_mounts.as_ref().unwrap() {
        assert_eq!(m.read_only, Some(true), "{}", m.name);
    }
    let args = c.args.clone().unwrap().join(" ");
    assert_eq!(args, "mover backup");
}

#[test]
fn the_template_places_the_pod() {
    let template: MoverTemplate = serde_norway::from_str(
        "hostNetwork: true\nnodeSelector: {site: a}\npriorityClassName: backups\n\
         tolerations: [{key: esc, operator: Exists}]\nactiveDeadlineSeconds: 600\n",
    )
    .unwrap();
    let job = build(&template);
    let spec = job.spec.unwrap();
    assert_eq!(spec.active_deadline_seconds, Some(600));
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(pod.dns_policy.as_deref(), Some("ClusterFirstWithHostNet"));
    assert_eq!(pod.priority_class_name.as_deref(), Some("backups"));
    assert_eq!(pod.node_selector.unwrap()["site"], "a");
    assert_eq!(pod.tolerations.unwrap().len(), 1);
    // A typo in the template is an error at start-up, not a silently ignored field.
    assert!(serde_norway::from_str::<MoverTemplate>("hostnetwork: true\n").is_err());
}

fn job(condition: Option<(&str, &str)>) -> Job {
    Job {
        metadata: ObjectMeta {
            name: Some("nightly-mover-0f1e2".into()),
            uid: Some("job-uid".into()),
            owner_references: Some(vec![owner()]),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(JobStatus {
            conditions: condition.map(|(type_, reason)| {
                vec![JobCondition {
                    type_: type_.into(),
                    status: "True".into(),
                    reason: Some(reason.into()),
                    message: Some("from the Job controller".into()),
                    ..JobCondition::default()
                }]
            }),
            ..JobStatus::default()
        }),
    }
}

fn pod(message: Option<&str>, reason: &str) -> Pod {
    Pod {
        status: Some(PodStatus {
            container_statuses: Some(vec![ContainerStatus {
                name: MOVER_CONTAINER.into(),
                state: Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        message: message.map(str::to_owned),
                        reason: Some(reason.into()),
                        exit_code: 1,
                        ..ContainerStateTerminated::default()
                    }),
                    ..ContainerState::default()
                }),
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        }),
        ..Pod::default()
    }
}

const RUN: &str = "0f1e";

const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

#[test]
fn a_completed_job_succeeds_only_with_a_succeeded_report() {
    let ok = format!(
        r#"{{"result":"Succeeded","uri":"s3://b/k.tar","size":42,"sha256":"{SHA}","members":[],"seconds":1.0,"bytesPerSecond":42.0}}"#
    );
    let complete = job(Some(("Complete", "CompletionsReached")));
    assert_eq!(
        job_view(&complete, Some(&pod(Some(&ok), "Completed")), RUN),
        JobView::Succeeded(StoredArtifact {
            uri: "s3://b/k.tar".into(),
            size: 42,
            sha256: SHA.into()
        })
    );
    // Fail closed: completed, but nothing (or nothing understood) says it worked.
    for (message, reason) in [
        (None, "MoverReportMissing"),
        (Some("done"), "MoverReportUnreadable"),
        (Some(r#"{"result":"Maybe"}"#), "MoverReportUnreadable"),
    ] {
        let JobView::Failed(p) = job_view(&complete, Some(&pod(message, "Completed")), RUN) else {
            panic!("{message:?} counted as success");
        };
        assert_eq!(p.reason, reason);
    }
    // The pod not seen yet (the watch lags): look again rather than guess.
    assert_eq!(job_view(&complete, None, RUN), JobView::Running(None));
}

#[test]
fn a_failed_job_gives_the_movers_reason_or_the_pods() {
    let report = r#"{"result":"Failed","step":"Transfer","reason":"NoSuchBucket","message":"bucket b does not exist"}"#;
    let failed = job(Some(("Failed", "BackoffLimitExceeded")));
    let JobView::Failed(p) = job_view(&failed, Some(&pod(Some(report), "Error")), RUN) else {
        panic!()
    };
    assert_eq!(
        (p.reason.as_str(), p.message.as_str()),
        ("NoSuchBucket", "bucket b does not exist")
    );
    let JobView::Failed(p) = job_view(&failed, Some(&pod(None, "OOMKilled")), RUN) else {
        panic!()
    };
    assert_eq!(p.reason, "MoverOOMKilled");
    assert!(p.message.contains("OOMKilled") && p.message.contains("kubectl logs"));
    let deadline = job(Some(("Failed", "DeadlineExceeded")));
    let JobView::Failed(p) = job_view(&deadline, None, RUN) else {
        panic!()
    };
    assert_eq!(p.reason, "MoverDeadlineExceeded");
    assert_eq!(job_view(&job(None), None, RUN), JobView::Running(None));
}

#[test]
fn a_job_this_run_does_not_control_is_never_its_result() {
    let ok = format!(
        r#"{{"result":"Succeeded","uri":"s3://b/k.tar","size":42,"sha256":"{SHA}","members":[],"seconds":1.0,"bytesPerSecond":42.0}}"#
    );
    let complete = job(Some(("Complete", "CompletionsReached")));
    let done = pod(Some(&ok), "Completed");
    // Same name, same report: another run's Job, a Job with no owner, one owned but not
    // controlled, and a run without a uid all fail closed.
    let mut no_owner = complete.clone();
    no_owner.metadata.owner_references = None;
    let mut not_controller = complete.clone();
    not_controller.metadata.owner_references = Some(vec![OwnerReference {
        controller: None,
        ..owner()
    }]);
    for (job, run) in [
        (&complete, "another-run"),
        (&no_owner, RUN),
        (&not_controller, RUN),
        (&complete, ""),
    ] {
        let JobView::Failed(p) = job_view(job, Some(&done), run) else {
            panic!("a Job {run:?} does not control counted as its result");
        };
        assert_eq!(p.reason, "MoverJobNotOwned");
        assert!(p.message.contains("nightly-mover-0f1e2"), "{}", p.message);
    }
}

#[test]
fn only_a_pod_the_job_controls_is_its_pod() {
    let made = |name: &str, controller: &str, at: i64| Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            creation_timestamp: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                jiff::Timestamp::from_second(at).unwrap(),
            )),
            owner_references: Some(vec![OwnerReference {
                kind: "Job".into(),
                uid: controller.into(),
                ..owner()
            }]),
            ..ObjectMeta::default()
        },
        ..Pod::default()
    };
    let pods = vec![
        made("first", "job-uid", 100),
        made("retry", "job-uid", 200),
        // Newest, with the Job's labels copied, but another controller: ignored.
        made("forged", "someone-else", 300),
    ];
    let pod = newest_pod_of(pods, "job-uid").unwrap();
    assert_eq!(pod.metadata.name.as_deref(), Some("retry"));
    assert!(newest_pod_of(vec![made("forged", "x", 1)], "job-uid").is_none());
}

#[test]
fn progress_is_the_last_progress_line_of_the_log() {
    let log = concat!(
        "{\"event\":\"step\",\"step\":\"Transfer\"}\n",
        "{\"event\":\"progress\",\"bytes\":10,\"totalBytes\":100,\"bytesPerSecond\":5.4}\n",
        "{\"timestamp\":\"2026-11-29T00:00:00Z\",\"level\":\"INFO\",\"fields\":{\"message\":\"x\"}}\n",
        "{\"event\":\"progress\",\"bytes\":60,\"totalBytes\":100,\"bytesPerSecond\":7.6}\n",
        "not json at all\n",
    );
    assert_eq!(
        last_progress(log),
        Some(TransferProgress {
            bytes: 60,
            total_bytes: Some(100),
            bytes_per_second: Some(8)
        })
    );
    assert_eq!(
        last_progress("{\"event\":\"step\",\"step\":\"Inspect\"}\n"),
        None
    );
    assert_eq!(last_progress(""), None);
}

#[test]
fn a_template_the_mover_would_refuse_is_refused_at_start_up() {
    assert_eq!(MoverTemplate::default().validate(), Ok(()));
    for bad in [
        "s3PartSizeMiB: 4\n",
        "s3PartSizeMiB: 6000\n",
        "s3Concurrency: 0\n",
        "s3Concurrency: 33\n",
        "activeDeadlineSeconds: 0\n",
    ] {
        let t: MoverTemplate = serde_norway::from_str(bad).unwrap();
        assert!(t.validate().is_err(), "{bad}");
    }
}
