//! The operator image on the real node (containerd + kubelet of the test bed): the archive that
//! `tools/image/build.sh` writes is imported into the node and run as pods under the security
//! context the operator's pods use — non-root (the image's UID 65532, no `runAsUser` given),
//! read-only root filesystem, no capabilities, no privilege escalation, RuntimeDefault seccomp —
//! which the Pod Security Standard `restricted` accepts.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use esc_testbed::cluster::TestCluster;
use esc_testbed::operator_image::OperatorImage;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::PolicyRule;
use kube::api::{Api, ListParams, LogParams, ObjectMeta, PostParams};
use serde_json::{Value, json};

const ENFORCE_RESTRICTED: (&str, &str) = ("pod-security.kubernetes.io/enforce", "restricted");

/// The operator image, imported into the shared cluster's node once per test binary.
fn imported_image(cluster: &TestCluster) -> &'static OperatorImage {
    static IMPORTED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    let image = OperatorImage::shared();
    let imported =
        IMPORTED.get_or_init(|| image.import_into(cluster).map_err(|e| format!("{e:#}")));
    if let Err(e) = imported {
        panic!("import of {} failed: {e}", image.archive.display());
    }
    image
}

/// The operator's container: what the restricted Pod Security Standard asks, plus a read-only
/// root filesystem. No `runAsUser`: the image's own `USER 65532` has to satisfy `runAsNonRoot`.
fn operator_container(image: &str, args: &[&str], env: Value) -> Value {
    json!({
        "name": "esc-operator",
        "image": image,
        "imagePullPolicy": "Never",
        "args": args,
        "env": env,
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": { "drop": ["ALL"] }
        }
    })
}

/// A pod spec for the operator's container. With `api_access`, the pod uses the host network and
/// reaches that cluster's API server on 127.0.0.1 through the ordinary in-cluster configuration
/// (the test bed has no kube-proxy: the `kubernetes` Service's ClusterIP routes nowhere).
fn operator_pod_spec(image: &str, args: &[&str], api_access: Option<&TestCluster>) -> Value {
    let env = json!(
        api_access
            .map(TestCluster::in_cluster_env)
            .unwrap_or_default()
    );
    json!({
        "hostNetwork": api_access.is_some(),
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 0,
        "securityContext": {
            "runAsNonRoot": true,
            "seccompProfile": { "type": "RuntimeDefault" }
        },
        "containers": [operator_container(image, args, env)]
    })
}

fn pod(name: &str, spec: Value) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name },
        "spec": spec
    }))?)
}

/// Whether a Job's condition of this type is True.
fn job_condition(job: &Job, type_: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

/// Waits until the Job is Complete or Failed; returns the Job and its pod.
async fn wait_job_finished(
    cluster: &TestCluster,
    ns: &str,
    name: &str,
    timeout: Duration,
) -> Result<(Job, Pod)> {
    let jobs: Api<Job> = Api::namespaced(cluster.client(), ns);
    let pods: Api<Pod> = Api::namespaced(cluster.client(), ns);
    let deadline = Instant::now() + timeout;
    loop {
        let job = jobs.get(name).await?;
        if job_condition(&job, "Complete") || job_condition(&job, "Failed") {
            let listed = pods
                .list(&ListParams::default().labels(&format!("job-name={name}")))
                .await?;
            let pod = listed
                .items
                .into_iter()
                .next()
                .with_context(|| format!("job {name} finished but has no pod"))?;
            return Ok((job, pod));
        }
        if Instant::now() > deadline {
            bail!(
                "job {name} not finished within {timeout:?}: {:?}",
                job.status
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the Job is Complete (returns its pod); a Failed Job is an error with its status.
async fn wait_job(cluster: &TestCluster, ns: &str, name: &str, timeout: Duration) -> Result<Pod> {
    let (job, pod) = wait_job_finished(cluster, ns, name, timeout).await?;
    if !job_condition(&job, "Complete") {
        bail!(
            "job {name} failed: job status {:?}; pod status {:?}",
            job.status,
            pod.status
        );
    }
    Ok(pod)
}

/// Waits until the pod has terminated (phase Succeeded or Failed).
async fn wait_terminated(pods: &Api<Pod>, name: &str, timeout: Duration) -> Result<Pod> {
    let deadline = Instant::now() + timeout;
    loop {
        let pod = pods.get(name).await?;
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
        if matches!(phase.as_deref(), Some("Succeeded" | "Failed")) {
            return Ok(pod);
        }
        if Instant::now() > deadline {
            bail!(
                "pod {name} not terminated after {timeout:?}: {:?}",
                pod.status
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The first container's status as JSON (fields newer than this crate's types included).
fn container_status(pod: &Pod) -> Value {
    let status = serde_json::to_value(pod.status.as_ref()).unwrap_or_default();
    status["containerStatuses"][0].clone()
}

#[tokio::test]
async fn version_job_runs_as_65532_in_a_restricted_namespace() -> Result<()> {
    let cluster = TestCluster::shared();
    let image = imported_image(cluster);
    // The namespace enforces `restricted`: the pod is admitted only if its spec conforms.
    let ns = cluster
        .namespace_with_labels("image-version", &[ENFORCE_RESTRICTED])
        .await?;
    let job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": "version" },
        "spec": {
            "backoffLimit": 0,
            "template": { "spec": operator_pod_spec(&image.name, &["version"], None) }
        }
    }))?;
    let jobs: Api<Job> = Api::namespaced(cluster.client(), ns.name());
    jobs.create(&PostParams::default(), &job).await?;

    let pod = wait_job(cluster, ns.name(), "version", Duration::from_secs(120)).await?;
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let status = container_status(&pod);
    assert_eq!(status["state"]["terminated"]["exitCode"], 0, "{status}");
    // The identity the process ran with, as containerd reports it (ContainerStatus.user).
    assert_eq!(status["user"]["linux"]["uid"], 65532, "{status}");
    assert_eq!(status["user"]["linux"]["gid"], 65532, "{status}");

    let pods: Api<Pod> = Api::namespaced(cluster.client(), ns.name());
    let logs = pods.logs(&pod_name, &LogParams::default()).await?;
    assert_eq!(logs.trim(), format!("esc-operator {}", image.version));
    Ok(())
}

#[tokio::test]
async fn operator_pod_specs_conform_to_pod_security_restricted() -> Result<()> {
    let cluster = TestCluster::shared();
    let image = OperatorImage::shared();
    let ns = cluster
        .namespace_with_labels("image-restricted", &[ENFORCE_RESTRICTED])
        .await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client(), ns.name());
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };

    // The specs the operator's pods use, with the test bed's hostNetwork removed (it exists only
    // because this node has no Service routing); server-side dry-run runs the admission chain.
    create_operator_service_account(&cluster.client(), ns.name()).await?;
    let without_host_network = |mut pod: Pod| {
        if let Some(spec) = pod.spec.as_mut() {
            spec.host_network = None;
        }
        pod
    };
    let candidates = [
        pod(
            "version",
            operator_pod_spec(&image.name, &["version"], None),
        )?,
        without_host_network(check_access_pod(cluster, &image.name, "check-access")?),
    ];
    for candidate in candidates {
        let name = candidate.metadata.name.clone().unwrap_or_default();
        pods.create(&dry_run, &candidate)
            .await
            .with_context(|| format!("restricted rejected the {name} pod spec"))?;
    }

    // And the namespace does enforce: the same spec with the host network is refused.
    let refused = pods
        .create(
            &dry_run,
            &pod(
                "host-network",
                operator_pod_spec(&image.name, &["version"], Some(cluster)),
            )?,
        )
        .await;
    match refused {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 403, "{e:?}");
            assert!(
                e.message.contains("violates PodSecurity \"restricted:")
                    && e.message.contains("host namespaces"),
                "{}",
                e.message
            );
        }
        other => panic!("a hostNetwork pod was not refused by restricted: {other:?}"),
    }
    Ok(())
}

/// Creates the ServiceAccount `esc-operator` (without any Role) in `ns`.
async fn create_operator_service_account(client: &kube::Client, ns: &str) -> Result<()> {
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(
            &PostParams::default(),
            &ServiceAccount {
                metadata: ObjectMeta {
                    name: Some("esc-operator".to_owned()),
                    ..ObjectMeta::default()
                },
                ..ServiceAccount::default()
            },
        )
        .await?;
    Ok(())
}

/// `esc-operator check-access` run as a pod with the ServiceAccount `esc-operator`, reaching the
/// API server through the plain in-cluster configuration. On failure the binary writes its error
/// to `/dev/termination-log` (the default `terminationMessagePolicy: File`), which is where
/// `kubectl describe`, the Job's pod status and the operator's own status reporting read it.
fn check_access_pod(cluster: &TestCluster, image: &str, name: &str) -> Result<Pod> {
    let mut spec = operator_pod_spec(image, &["check-access"], Some(cluster));
    spec["serviceAccountName"] = json!("esc-operator");
    pod(name, spec)
}

#[tokio::test]
async fn check_access_in_a_pod_is_refused_by_rbac_with_a_termination_message_then_lists()
-> Result<()> {
    let cluster = TestCluster::shared();
    let image = imported_image(cluster);
    cluster.install_crds(&esc_operator::api::crds()).await?;
    // Not `restricted`: the pod uses the host network to reach the API server (see above).
    let ns = cluster.namespace("image-rbac").await?;
    let client = cluster.client();
    create_operator_service_account(&client, ns.name()).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());

    // No Role yet: the API server answers 403; the binary exits 3 after writing a termination
    // message that names the permission, and its Job fails with that message in the API.
    let refused_job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": "refused" },
        "spec": {
            "backoffLimit": 0,
            "template": { "spec": check_access_pod(cluster, &image.name, "unused")?.spec }
        }
    }))?;
    Api::<Job>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &refused_job)
        .await?;
    let (job, refused) =
        wait_job_finished(cluster, ns.name(), "refused", Duration::from_secs(60)).await?;
    assert!(job_condition(&job, "Failed"), "{:?}", job.status);
    let status = container_status(&refused);
    let terminated = &status["state"]["terminated"];
    let exit_code = terminated["exitCode"].as_i64().unwrap_or_default();
    let message = terminated["message"].as_str().unwrap_or_default();
    println!("refused: exit code {exit_code}, termination message {message:?}");
    assert_eq!(
        refused.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Failed")
    );
    assert_eq!(exit_code, 3, "exit status 3 means access denied: {status}");
    for needed in [
        "forbidden: cannot list escclusters.escoperator.dev",
        &format!("in namespace {}", ns.name()),
        &format!("system:serviceaccount:{}:esc-operator", ns.name()),
    ] {
        assert!(message.contains(needed), "{message:?} lacks {needed:?}");
    }

    // With a Role for the operator's kinds the same pod lists them.
    cluster
        .grant_role(
            ns.name(),
            "esc-operator",
            "esc-reader",
            vec![PolicyRule {
                api_groups: Some(vec!["escoperator.dev".into()]),
                resources: Some(vec![
                    "escclusters".into(),
                    "escbackups".into(),
                    "escrestores".into(),
                    "escbackupschedules".into(),
                ]),
                verbs: vec!["get".into(), "list".into(), "watch".into()],
                ..PolicyRule::default()
            }],
        )
        .await?;
    // The RBAC authorizer works from informers: wait until it sees the binding.
    let as_operator = cluster.impersonate_service_account(ns.name(), "esc-operator")?;
    let scope = esc_operator::access::Scope::Namespace(ns.name().to_owned());
    let deadline = Instant::now() + Duration::from_secs(20);
    while esc_operator::access::check_access(&as_operator, &scope)
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            bail!("the RoleBinding did not take effect within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pods.create(
        &PostParams::default(),
        &check_access_pod(cluster, &image.name, "granted")?,
    )
    .await?;
    let granted = wait_terminated(&pods, "granted", Duration::from_secs(60)).await?;
    let logs = pods.logs("granted", &LogParams::default()).await?;
    assert_eq!(
        granted.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded"),
        "logs: {logs}"
    );
    for kind in ["escclusters", "escbackups", "escrestores"] {
        let line = format!("{kind}.escoperator.dev: 0 in namespace {}", ns.name());
        assert!(logs.contains(&line), "logs {logs:?} lack {line:?}");
    }
    Ok(())
}
