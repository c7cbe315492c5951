//! The chart installed the way users install it, on the test bed's real control plane and node:
//! with the real Helm 3 and Helm 4 CLIs (install, upgrade to another log level, rollback,
//! uninstall), the operator's pods from the operator image becoming Ready, taking the chart's
//! Lease and reconciling an EscCluster on the simulator under the chart's ServiceAccount. That
//! ServiceAccount is shown to be refused what the operator must not do. The chart's pods pass
//! PodSecurity `restricted`; `manifests/install.yaml` applies with `kubectl apply --server-side`.
//!
//! What the test bed changes, through values only: it has no kube-proxy and its ESC nodes
//! listen on loopback, so the operator's pods use the host network, reach the API server at
//! 127.0.0.1 (`extraEnv`) and serve HTTP on a free loopback port; and as pods on one node's host
//! network share its ports, one replica (two elect a leader in `tests/operator_deployment.rs`)
//! rolled without a surge pod.

mod esc_fixture;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use esc_fixture::{cluster_spec, create_ssh_secrets, ready, wait_for};
use esc_operator::api::EscCluster;
use esc_operator::controller::backup::job::{
    BACKUP_LABEL, MoverJobInput, MoverSecrets, MoverTemplate, mover_job,
};
use esc_testbed::cluster::TestCluster;
use esc_testbed::helm::{Helm, HelmMajor, documents, one};
use esc_testbed::operator_image::OperatorImage;
use esc_testbed::sshd::{SimEsc, SimSpec};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, LogParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const RELEASE: &str = "esc";
const CRDS: [&str; 4] = [
    "escclusters.escoperator.dev",
    "escbackups.escoperator.dev",
    "escrestores.escoperator.dev",
    "escbackupschedules.escoperator.dev",
];

/// The values the test bed needs (see the module header), as a values file.
fn test_bed_values(
    cluster: &TestCluster,
    image: &OperatorImage,
    port: u16,
    watched: &str,
) -> Result<Value> {
    let (repository, tag) = image
        .name
        .rsplit_once(':')
        .context("image name without a tag")?;
    let env: Vec<Value> = cluster
        .in_cluster_env()
        .into_iter()
        .map(|e| json!({ "name": e.name, "value": e.value }))
        .collect();
    Ok(json!({
        // Object names as the default release name gives them (the ServiceAccount esc-operator).
        "fullnameOverride": "esc-operator",
        "image": { "repository": repository, "tag": tag, "pullPolicy": "Never" },
        "replicaCount": 1,
        "updateStrategy": { "type": "RollingUpdate", "rollingUpdate": { "maxSurge": 0, "maxUnavailable": 1 } },
        "hostNetwork": true,
        "http": { "port": port, "bindAddress": "127.0.0.1" },
        "extraEnv": env,
        "watchNamespaces": [watched],
        "logFormat": "text",
        "mover": { "hostNetwork": true },
    }))
}

fn instance_pods() -> ListParams {
    ListParams::default().labels(&format!("app.kubernetes.io/instance={RELEASE}"))
}

fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits until the release's only pod is Ready and its container runs with `log_level`;
/// returns its name.
async fn ready_pod(pods: &Api<Pod>, log_level: &str, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let list = pods.list(&instance_pods()).await?;
        let live: Vec<&Pod> = list
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        if let [pod] = live.as_slice()
            && is_ready(pod)
        {
            let args = pod
                .spec
                .as_ref()
                .map(|s| s.containers[0].args.clone().unwrap_or_default())
                .unwrap_or_default();
            if args.contains(&format!("--log-level={log_level}")) {
                return Ok(pod.metadata.name.clone().unwrap_or_default());
            }
        }
        if Instant::now() > deadline {
            bail!(
                "no single Ready pod with --log-level={log_level} within {timeout:?}: {:?}",
                list.items
                    .iter()
                    .map(|p| (&p.metadata.name, &p.status))
                    .collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Polls `check` until it holds (`what` for the message).
async fn eventually<F, Fut>(what: &str, timeout: Duration, check: F) -> Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    while !check().await? {
        if Instant::now() > deadline {
            bail!("not {what} within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

/// The release's revision Helm reports.
fn revision(helm: &Helm, cluster: &TestCluster, ns: &str) -> Result<u64> {
    let out = Helm::run(
        helm.on(cluster)
            .args(["status", RELEASE, "-n", ns, "-o", "json"]),
    )?;
    let status: Value = serde_json::from_slice(&out.stdout)?;
    status["version"]
        .as_u64()
        .context("no version in helm status")
}

/// Install, reconcile, upgrade, rollback, uninstall with one Helm.
async fn lifecycle(major: HelmMajor) -> Result<()> {
    let started = Instant::now();
    let cluster = TestCluster::shared();
    let image = OperatorImage::shared();
    image.import_into(cluster)?;
    let helm = Helm::new(major)?;
    let tag = format!("helm{}", major.number());
    let ns = cluster.namespace(&tag).await?;
    let watched = cluster.namespace(&format!("{tag}-watched")).await?;
    let client = cluster.client();
    let port = esc_testbed::host_procs::free_port(std::net::Ipv4Addr::LOCALHOST)?;
    let values = helm.home().join("test-bed.yaml");
    std::fs::write(
        &values,
        serde_json::to_vec(&test_bed_values(cluster, image, port, watched.name())?)?,
    )?;
    let upgrade = |extra: &[&str]| -> Result<()> {
        let mut cmd = helm.on(cluster);
        cmd.args(["upgrade", "--install", RELEASE])
            .arg(Helm::chart_dir())
            .args(["-n", ns.name(), "-f"])
            .arg(&values)
            .args(["--wait", "--timeout", "3m"])
            .args(extra);
        Helm::run(&mut cmd).map(drop)
    };

    // Install.
    upgrade(&[])?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let first = ready_pod(&pods, "info", Duration::from_secs(60)).await?;
    eprintln!(
        "helm {major:?}: installed, {first} Ready after {:?}",
        started.elapsed()
    );
    for crd in CRDS {
        Api::<CustomResourceDefinition>::all(client.clone())
            .get(crd)
            .await?;
    }
    // The pod took the chart's Lease.
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns.name());
    eventually(
        "the Lease held by the pod",
        Duration::from_secs(30),
        || async {
            let holder = leases
                .get("esc-operator")
                .await?
                .spec
                .and_then(|s| s.holder_identity)
                .unwrap_or_default();
            Ok(holder.starts_with(&first))
        },
    )
    .await?;

    // It reconciles an EscCluster on the simulator under the chart's ServiceAccount and RBAC.
    let sim = SimEsc::start(SimSpec::standalone())?;
    let secrets = create_ssh_secrets(&client, watched.name(), "esc", &sim).await?;
    let clusters: Api<EscCluster> = Api::namespaced(client.clone(), watched.name());
    clusters
        .create(
            &PostParams::default(),
            &EscCluster::new("esc", cluster_spec(&sim, &secrets)),
        )
        .await?;
    let log = || String::new();
    wait_for(
        &clusters,
        "esc",
        "Ready",
        Duration::from_secs(60),
        ready,
        log,
    )
    .await?;
    check_rbac(cluster, ns.name(), watched.name()).await?;

    // Upgrade to another log level: a new pod, which logs at debug level.
    upgrade(&["--set", "logLevel=debug"])?;
    let second = ready_pod(&pods, "debug", Duration::from_secs(90)).await?;
    assert_ne!(first, second);
    assert_eq!(revision(&helm, cluster, ns.name())?, 2);
    eventually(
        "debug lines in the upgraded pod's log",
        Duration::from_secs(30),
        || async {
            let text = pods.logs(&second, &LogParams::default()).await?;
            Ok(text.contains("DEBUG"))
        },
    )
    .await?;

    // Rollback to the first revision: info again.
    Helm::run(helm.on(cluster).args([
        "rollback",
        RELEASE,
        "1",
        "-n",
        ns.name(),
        "--wait",
        "--timeout",
        "3m",
    ]))?;
    let third = ready_pod(&pods, "info", Duration::from_secs(90)).await?;
    assert_ne!(third, second);
    assert_eq!(revision(&helm, cluster, ns.name())?, 3);
    // The rolled-back operator still reconciles (it keeps the EscCluster Ready).
    wait_for(
        &clusters,
        "esc",
        "Ready",
        Duration::from_secs(30),
        ready,
        log,
    )
    .await?;

    // Uninstall: nothing of the release stays but the CRDs and the custom resources.
    Helm::run(helm.on(cluster).args([
        "uninstall",
        RELEASE,
        "-n",
        ns.name(),
        "--wait",
        "--timeout",
        "3m",
    ]))?;
    eventually("the pods gone", Duration::from_secs(60), || async {
        Ok(pods.list(&ListParams::default()).await?.items.is_empty())
    })
    .await?;
    let left = left_over(cluster, RELEASE, &[ns.name(), watched.name()])?;
    assert!(left.is_empty(), "helm {major:?} uninstall left: {left:?}");
    for crd in CRDS {
        Api::<CustomResourceDefinition>::all(client.clone())
            .get(crd)
            .await?;
    }
    let esc = clusters
        .get("esc")
        .await
        .context("the EscCluster is gone")?;
    // Nothing removes the operator's finalizer now; the namespace's deletion needs it gone.
    if esc.metadata.finalizers.is_some() {
        clusters
            .patch(
                "esc",
                &PatchParams::default(),
                &Patch::Merge(&json!({ "metadata": { "finalizers": null } })),
            )
            .await?;
    }
    eprintln!("helm {major:?}: whole lifecycle in {:?}", started.elapsed());
    Ok(())
}

/// Objects in `namespaces` (other than what every namespace has) and cluster-scoped RBAC that
/// name the release, after its uninstall.
fn left_over(cluster: &TestCluster, release: &str, namespaces: &[&str]) -> Result<Vec<String>> {
    let kinds = "deployments,replicasets,pods,services,configmaps,serviceaccounts,\
                 poddisruptionbudgets,roles,rolebindings,leases,jobs,secrets";
    let mut left = Vec::new();
    for ns in namespaces {
        let out = Helm::run(
            cluster
                .kubectl()
                .args(["get", kinds, "-n", ns, "-o", "name"]),
        )?;
        for name in String::from_utf8(out.stdout)?.lines() {
            // Every namespace has these; the test's own Secrets belong to the EscCluster.
            let ours = name == "serviceaccount/default"
                || name == "configmap/kube-root-ca.crt"
                || name.starts_with("secret/esc-");
            if !ours {
                left.push(format!("{ns}: {name}"));
            }
        }
    }
    let out = Helm::run(cluster.kubectl().args([
        "get",
        "clusterroles,clusterrolebindings",
        "-l",
        &format!("app.kubernetes.io/instance={release}"),
        "-o",
        "name",
    ]))?;
    left.extend(String::from_utf8(out.stdout)?.lines().map(str::to_owned));
    Ok(left)
}

/// May the chart's ServiceAccount (`ns`/esc-operator) do `verb` on `resource`?
async fn can(
    client: &kube::Client,
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
) -> Result<bool> {
    let (resource, subresource) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s.to_owned())),
        None => (resource, None),
    };
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                subresource,
                namespace: namespace.map(str::to_owned),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let answer = Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// (verb, API group, resource[/subresource], namespace or None for all namespaces)
type Access<'a> = (&'a str, &'a str, &'a str, Option<&'a str>);

/// Fails unless `sa` may do each of `allowed` and none of `denied`.
async fn expect_access(
    sa: &kube::Client,
    allowed: &[Access<'_>],
    denied: &[Access<'_>],
) -> Result<()> {
    for (verb, group, resource, namespace) in allowed {
        if !can(sa, verb, group, resource, *namespace).await? {
            bail!("the chart's ServiceAccount may not {verb} {group}/{resource} in {namespace:?}");
        }
    }
    for (verb, group, resource, namespace) in denied {
        if can(sa, verb, group, resource, *namespace).await? {
            bail!("the chart's ServiceAccount may {verb} {group}/{resource} in {namespace:?}");
        }
    }
    Ok(())
}

/// What the chart's ServiceAccount may and may not do, asked as that ServiceAccount
/// (impersonated) through SelfSubjectAccessReview on the real RBAC authorizer.
async fn check_rbac(cluster: &TestCluster, ns: &str, watched: &str) -> Result<()> {
    let sa = cluster.impersonate_service_account(ns, "esc-operator")?;
    let w = Some(watched);
    let allowed: &[Access] = &[
        ("watch", "escoperator.dev", "escclusters", w),
        ("patch", "escoperator.dev", "escbackups/status", w),
        // A schedule's runs: created, and deleted by its retention.
        ("create", "escoperator.dev", "escbackups", w),
        ("delete", "escoperator.dev", "escbackups", w),
        ("get", "", "secrets", w),
        ("create", "batch", "jobs", w),
        ("get", "", "pods/log", w),
        ("create", "events.k8s.io", "events", w),
        ("patch", "coordination.k8s.io", "leases", Some(ns)),
    ];
    let denied: &[Access] = &[
        // Secrets: read in the watched namespace only, never written.
        ("get", "", "secrets", Some(ns)),
        ("get", "", "secrets", Some("kube-system")),
        ("list", "", "secrets", None),
        ("create", "", "secrets", w),
        ("update", "", "secrets", w),
        ("patch", "", "secrets", w),
        ("delete", "", "secrets", w),
        // Jobs: created and deleted in the watched namespace, never changed, nothing elsewhere.
        ("update", "batch", "jobs", w),
        ("patch", "batch", "jobs", w),
        ("create", "batch", "jobs", Some(ns)),
        ("delete", "batch", "jobs", Some("kube-system")),
        ("list", "batch", "jobs", None),
        // Pods: no pod of its own making, no exec.
        ("create", "", "pods", w),
        ("create", "", "pods/exec", w),
        // The CRDs and the custom resources' specs.
        (
            "create",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            None,
        ),
        (
            "update",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            None,
        ),
        (
            "delete",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            None,
        ),
        ("update", "escoperator.dev", "escclusters", w),
        ("create", "escoperator.dev", "escclusters", w),
        ("delete", "escoperator.dev", "escclusters", w),
        ("delete", "escoperator.dev", "escrestores", w),
        ("create", "escoperator.dev", "escrestores", w),
        ("update", "escoperator.dev", "escbackupschedules", w),
        ("delete", "escoperator.dev", "escbackups", Some(ns)),
        ("list", "escoperator.dev", "escclusters", None),
        // Leases: its own namespace only.
        ("create", "coordination.k8s.io", "leases", w),
        (
            "patch",
            "coordination.k8s.io",
            "leases",
            Some("kube-system"),
        ),
        ("list", "coordination.k8s.io", "leases", None),
        // RBAC itself.
        ("create", "rbac.authorization.k8s.io", "rolebindings", w),
        ("bind", "rbac.authorization.k8s.io", "clusterroles", None),
        ("escalate", "rbac.authorization.k8s.io", "roles", w),
    ];
    expect_access(&sa, allowed, denied).await?;
    // With watched namespaces, no cluster-wide binding names it; its RoleBindings are the
    // chart's two.
    let client = cluster.client();
    let subject = |s: &k8s_openapi::api::rbac::v1::Subject| {
        s.kind == "ServiceAccount" && s.name == "esc-operator" && s.namespace.as_deref() == Some(ns)
    };
    let cluster_bindings = Api::<ClusterRoleBinding>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    let named: Vec<_> = cluster_bindings
        .items
        .iter()
        .filter(|b| b.subjects.iter().flatten().any(subject))
        .map(|b| b.metadata.name.clone())
        .collect();
    assert!(
        named.is_empty(),
        "ClusterRoleBindings of the operator: {named:?}"
    );
    let bindings = Api::<RoleBinding>::all(client)
        .list(&ListParams::default())
        .await?;
    let mut named: Vec<(String, String)> = bindings
        .items
        .iter()
        .filter(|b| b.subjects.iter().flatten().any(subject))
        .map(|b| {
            (
                b.metadata.namespace.clone().unwrap_or_default(),
                b.metadata.name.clone().unwrap_or_default(),
            )
        })
        .collect();
    named.sort();
    let mut expected = vec![
        (ns.to_owned(), "esc-operator-leader-election".to_owned()),
        (watched.to_owned(), "esc-operator".to_owned()),
    ];
    expected.sort();
    assert_eq!(named, expected);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_3_installs_upgrades_rolls_back_and_uninstalls() -> Result<()> {
    lifecycle(HelmMajor::V3).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_4_installs_upgrades_rolls_back_and_uninstalls() -> Result<()> {
    lifecycle(HelmMajor::V4).await
}

/// A pod of the given spec, created as a server-side dry run in `ns`.
async fn dry_run_pod(client: &kube::Client, ns: &str, spec: &Value) -> Result<(), kube::Error> {
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "dry-run" },
        "spec": spec
    }))
    .expect("a pod spec");
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    Api::<Pod>::namespaced(client.clone(), ns)
        .create(&dry_run, &pod)
        .await
        .map(drop)
}

/// The chart's operator pod and its mover pod (both without hostNetwork, the defaults) are
/// admitted where PodSecurity `restricted` is enforced; the Deployment applies there without a
/// PodSecurity warning; and the namespace does enforce (the hostNetwork variant is refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_pods_pass_pod_security_restricted() -> Result<()> {
    let cluster = TestCluster::shared_control_plane();
    let ns = cluster
        .namespace_with_labels(
            "helm-restricted",
            &[("pod-security.kubernetes.io/enforce", "restricted")],
        )
        .await?;
    let client = cluster.client();
    let helm = Helm::new(HelmMajor::V4)?;
    let docs = helm.template(RELEASE, ns.name(), &[])?;
    let pod = &one(&docs, "Deployment")?["spec"]["template"]["spec"];
    // The ServiceAccount the pod names must exist for admission.
    let sa = one(&docs, "ServiceAccount")?.clone();
    Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &serde_json::from_value(sa)?)
        .await?;
    dry_run_pod(&client, ns.name(), pod)
        .await
        .context("restricted refused the chart's operator pod")?;

    // The Deployment as kubectl applies it: no "would violate PodSecurity" warning.
    let deployment = serde_json::to_string(one(&docs, "Deployment")?)?;
    let file = helm.home().join("deployment.json");
    std::fs::write(&file, deployment)?;
    let out = Helm::run(
        cluster
            .kubectl()
            .args([
                "apply",
                "--server-side",
                "--dry-run=server",
                "-n",
                ns.name(),
                "-f",
            ])
            .arg(&file),
    )?;
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(!warnings.contains("PodSecurity"), "{warnings}");

    // The mover's pod, from the chart's default mover template.
    let text = one(&docs, "ConfigMap")?["data"]["mover.yaml"]
        .as_str()
        .context("mover.yaml")?;
    let template: MoverTemplate = serde_norway::from_str(text)?;
    let secrets = MoverSecrets {
        esc_credentials: "esc-ssh".into(),
        esc_known_hosts: "esc-known-hosts".into(),
        target_credentials: Some("s3".into()),
        target_known_hosts: None,
        target_ca: Some("s3-ca".into()),
    };
    let owner = k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        api_version: "escoperator.dev/v1alpha1".into(),
        kind: "EscBackup".into(),
        name: "b".into(),
        uid: "00000000-0000-0000-0000-000000000000".into(),
        controller: Some(true),
        block_owner_deletion: None,
    };
    let image = format!("localhost/esc-operator:{}", env!("CARGO_PKG_VERSION"));
    let job = mover_job(&MoverJobInput {
        name: "b-mover",
        namespace: ns.name(),
        owner,
        run_label: (BACKUP_LABEL, "b"),
        command: "backup",
        image: &image,
        request_json: "{}".into(),
        secrets: &secrets,
        template: &template,
    });
    let mover_pod = serde_json::to_value(job.spec.context("job spec")?.template.spec)?;
    dry_run_pod(&client, ns.name(), &mover_pod)
        .await
        .context("restricted refused the chart's mover pod")?;

    // The namespace enforces: the chart's pod with hostNetwork is refused.
    let host = helm.template(RELEASE, ns.name(), &["--set", "hostNetwork=true"])?;
    let host_pod = &one(&host, "Deployment")?["spec"]["template"]["spec"];
    match dry_run_pod(&client, ns.name(), host_pod).await {
        Err(kube::Error::Api(e)) if e.code == 403 => Ok(()),
        other => bail!("restricted admitted a hostNetwork pod: {other:?}"),
    }
}

/// `kubectl apply --server-side -f manifests/install.yaml` as the README says, then the examples
/// verbatim; the operator becomes Ready (`kubectl wait`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_yaml_and_the_examples_apply_and_the_operator_becomes_ready() -> Result<()> {
    let cluster = TestCluster::shared();
    let image = OperatorImage::shared();
    image.import_into(cluster)?;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let install = root.join("manifests/install.yaml");
    Helm::run(
        cluster
            .kubectl()
            .args(["apply", "--server-side", "-f"])
            .arg(&install),
    )?;
    Helm::run(
        cluster
            .kubectl()
            .args([
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd",
            ])
            .args(CRDS),
    )?;

    // The test bed's changes (module header), as a patch of the installed Deployment. The
    // operator watches one namespace without the examples: their ESC addresses are not on this
    // machine, and nothing may leave it.
    let quiet = cluster.namespace("install-yaml-watched").await?;
    let port = esc_testbed::host_procs::free_port(std::net::Ipv4Addr::LOCALHOST)?;
    let docs = documents(&std::fs::read_to_string(&install)?)?;
    let container = &one(&docs, "Deployment")?["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<String> = container["args"]
        .as_array()
        .context("args")?
        .iter()
        .filter_map(|a| a.as_str())
        .map(|a| {
            if a.starts_with("--http-addr=") {
                format!("--http-addr=127.0.0.1:{port}")
            } else if a.starts_with("--namespaces=") {
                format!("--namespaces={}", quiet.name())
            } else {
                a.to_owned()
            }
        })
        .collect();
    let mut env: Vec<Value> = container["env"].as_array().context("env")?.clone();
    env.extend(
        cluster
            .in_cluster_env()
            .into_iter()
            .map(|e| json!({ "name": e.name, "value": e.value })),
    );
    let probe =
        |path: &str| json!({ "httpGet": { "host": "127.0.0.1", "path": path, "port": port } });
    let patch = json!({
        "spec": {
            "replicas": 1,
            "template": { "spec": {
                "hostNetwork": true,
                "containers": [{
                    "name": "esc-operator",
                    "args": args,
                    "env": env,
                    "readinessProbe": probe("/readyz"),
                    "livenessProbe": probe("/healthz"),
                }]
            }}
        }
    });
    let deployments: Api<Deployment> = Api::namespaced(cluster.client(), "esc-operator");
    deployments
        .patch(
            "esc-operator",
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await?;
    let examples = cluster.namespace("install-yaml-examples").await?;
    let out = Helm::run(
        cluster
            .kubectl()
            .args(["apply", "--server-side", "-n", examples.name(), "-f"])
            .arg(root.join("manifests/examples")),
    )?;
    let applied = String::from_utf8_lossy(&out.stdout);
    for kind in [
        "esccluster.escoperator.dev/",
        "escbackup.escoperator.dev/",
        "escrestore.escoperator.dev/",
        // Every Secret a user creates: SSH key or password, known_hosts, S3 credentials, CA.
        "secret/esc-ssh ",
        "secret/esc-ssh-password ",
        "secret/esc-known-hosts ",
        "secret/esc-backup-s3 ",
        "secret/esc-backup-s3-ca ",
    ] {
        assert!(applied.contains(kind), "no {kind} in:\n{applied}");
    }
    // The patch rolls the Deployment: its first pods (which cannot reach the API server here)
    // go, one pod of the patched template comes.
    Helm::run(cluster.kubectl().args([
        "rollout",
        "status",
        "-n",
        "esc-operator",
        "--timeout=120s",
        "deployment/esc-operator",
    ]))?;
    // The first pods' containers take their grace period to stop: wait until they are gone.
    let pods: Api<Pod> = Api::namespaced(cluster.client(), "esc-operator");
    eventually("the first pods gone", Duration::from_secs(90), || async {
        let list = pods.list(&ListParams::default()).await?;
        Ok(list
            .items
            .iter()
            .all(|p| p.metadata.deletion_timestamp.is_none()))
    })
    .await?;
    Helm::run(cluster.kubectl().args([
        "wait",
        "-n",
        "esc-operator",
        "--for=condition=Available",
        "--timeout=120s",
        "deployment/esc-operator",
    ]))?;
    Helm::run(cluster.kubectl().args([
        "wait",
        "-n",
        "esc-operator",
        "--for=condition=Ready",
        "--timeout=60s",
        "pod",
        "-l",
        "app.kubernetes.io/instance=esc-operator",
    ]))?;
    let leases: Api<Lease> = Api::namespaced(cluster.client(), "esc-operator");
    eventually("the Lease held", Duration::from_secs(30), || async {
        Ok(leases
            .get("esc-operator")
            .await?
            .spec
            .and_then(|s| s.holder_identity)
            .is_some())
    })
    .await?;
    Helm::run(
        cluster
            .kubectl()
            .args(["delete", "namespace", "esc-operator", "--wait=false"]),
    )?;
    Ok(())
}

/// Watching every namespace (the chart's default): a ClusterRole lets the operator read Secrets
/// and run mover Jobs anywhere, and still write nothing it must not — no Secret, no CRD, no
/// Lease outside its namespace, no change to a Job or a custom resource's spec. Installed with
/// no replica (an operator watching everything would reconcile the other tests' resources);
/// uninstalled, it leaves no cluster-scoped RBAC behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_wide_rbac_reads_everywhere_and_writes_nothing_it_must_not() -> Result<()> {
    const WIDE: &str = "esc-wide";
    let cluster = TestCluster::shared_control_plane();
    let ns = cluster.namespace("helm-wide").await?;
    let other = cluster.namespace("helm-wide-other").await?;
    let helm = Helm::new(HelmMajor::V3)?;
    let install = |verb: &str| -> Result<()> {
        let mut cmd = helm.on(cluster);
        match verb {
            "install" => cmd.args(["install", WIDE]).arg(Helm::chart_dir()).args([
                "-n",
                ns.name(),
                "--set",
                "replicaCount=0",
                "--wait",
            ]),
            _ => cmd.args(["uninstall", WIDE, "-n", ns.name(), "--wait"]),
        };
        Helm::run(&mut cmd).map(drop)
    };
    install("install")?;
    let sa = cluster.impersonate_service_account(ns.name(), "esc-wide-esc-operator")?;
    let o = Some(other.name());
    let allowed: &[Access] = &[
        ("get", "", "secrets", Some("kube-system")),
        ("list", "", "secrets", None),
        ("watch", "escoperator.dev", "escclusters", None),
        ("create", "batch", "jobs", o),
        ("delete", "batch", "jobs", o),
        ("patch", "escoperator.dev", "escrestores/status", o),
        ("patch", "coordination.k8s.io", "leases", Some(ns.name())),
    ];
    let denied: &[Access] = &[
        ("create", "", "secrets", o),
        ("patch", "", "secrets", Some("kube-system")),
        ("delete", "", "secrets", None),
        ("update", "batch", "jobs", o),
        ("patch", "batch", "jobs", None),
        ("create", "", "pods", o),
        ("create", "", "pods/exec", o),
        (
            "create",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            None,
        ),
        (
            "patch",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            None,
        ),
        ("update", "escoperator.dev", "escclusters", o),
        ("delete", "escoperator.dev", "escrestores", o),
        ("create", "coordination.k8s.io", "leases", o),
        (
            "patch",
            "coordination.k8s.io",
            "leases",
            Some("kube-system"),
        ),
        ("list", "coordination.k8s.io", "leases", None),
        (
            "create",
            "rbac.authorization.k8s.io",
            "clusterrolebindings",
            None,
        ),
        (
            "escalate",
            "rbac.authorization.k8s.io",
            "clusterroles",
            None,
        ),
    ];
    expect_access(&sa, allowed, denied).await?;
    install("uninstall")?;
    let left = left_over(cluster, WIDE, &[ns.name()])?;
    assert!(left.is_empty(), "uninstall left: {left:?}");
    // The ClusterRoleBinding is gone: the ServiceAccount reads no Secret anywhere now.
    eventually("the grant revoked", Duration::from_secs(10), || async {
        Ok(!can(&sa, "list", "", "secrets", None).await?)
    })
    .await?;
    Ok(())
}

/// Applies `object` with `kubectl apply --server-side` in `ns`; the error carries kubectl's
/// message.
fn kubectl_apply(
    cluster: &TestCluster,
    ns: &str,
    object: &Value,
    dir: &std::path::Path,
) -> Result<()> {
    let file = dir.join("object.json");
    std::fs::write(&file, serde_json::to_vec(object)?)?;
    Helm::run(
        cluster
            .kubectl()
            .args(["apply", "--server-side", "-n", ns, "-f"])
            .arg(&file),
    )
    .map(drop)
}

/// The chart's optional ServiceMonitor and PrometheusRule are valid objects of the Prometheus
/// Operator's own CRDs (from its Go module, `tools/helm/monitoring-crds.sh`) on the real API
/// server; the schema does check (a malformed scrape interval is refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_monitor_and_alerts_fit_the_prometheus_operator_crds() -> Result<()> {
    let cluster = TestCluster::shared_control_plane();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/helm/monitoring-crds.sh");
    let out = Helm::run(std::process::Command::new("bash").arg(&script))?;
    let dir = std::path::PathBuf::from(String::from_utf8(out.stdout)?.trim());
    cluster
        .install_crd_files(&[
            dir.join("monitoring.coreos.com_servicemonitors.yaml"),
            dir.join("monitoring.coreos.com_prometheusrules.yaml"),
        ])
        .await?;
    let ns = cluster.namespace("helm-monitoring").await?;
    let helm = Helm::new(HelmMajor::V4)?;
    let docs = helm.template(
        RELEASE,
        ns.name(),
        &[
            "--set",
            "serviceMonitor.enabled=true,prometheusRule.enabled=true",
        ],
    )?;
    let monitor = one(&docs, "ServiceMonitor")?;
    kubectl_apply(cluster, ns.name(), monitor, helm.home())?;
    kubectl_apply(
        cluster,
        ns.name(),
        one(&docs, "PrometheusRule")?,
        helm.home(),
    )?;
    let mut bad = monitor.clone();
    bad["metadata"]["name"] = json!("bad");
    bad["spec"]["endpoints"][0]["interval"] = json!("30 seconds");
    let refused = kubectl_apply(cluster, ns.name(), &bad, helm.home())
        .err()
        .context("a ServiceMonitor with interval '30 seconds' was accepted")?;
    assert!(format!("{refused:#}").contains("interval"), "{refused:#}");
    Ok(())
}
