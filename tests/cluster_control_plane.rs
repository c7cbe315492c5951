//! The test bed's control plane: a real etcd + kube-apiserver + controller-manager + scheduler.
//! These tests check the harness itself (readiness, namespaces, CRDs, RBAC impersonation,
//! kubectl, and that it stops every process it started — on drop and when the test process
//! aborts).

use std::time::{Duration, Instant};

use anyhow::Result;
use esc_testbed::cluster::{ClusterOptions, TestCluster};
use esc_testbed::host_procs::is_alive;
use esc_testbed::process::abort_probe;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::PolicyRule;
use kube::api::{Api, DynamicObject, ObjectMeta, PostParams};
use kube::core::{ApiResource, GroupVersionKind};

const WIDGET_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.testbed.esc.example
spec:
  group: testbed.esc.example
  scope: Namespaced
  names:
    kind: Widget
    listKind: WidgetList
    plural: widgets
    singular: widget
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size:
                type: integer
            x-kubernetes-validations:
            - rule: "self.size <= 10"
              message: "size must be at most 10"
"#;

fn widgets(cluster: &TestCluster, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("testbed.esc.example", "v1", "Widget");
    Api::namespaced_with(cluster.client(), ns, &ApiResource::from_gvk(&gvk))
}

fn widget(name: &str, size: i64) -> Result<DynamicObject> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "testbed.esc.example/v1",
        "kind": "Widget",
        "metadata": { "name": name },
        "spec": { "size": size }
    }))?)
}

#[tokio::test]
async fn api_server_is_ready_and_is_the_pinned_version() -> Result<()> {
    let cluster = TestCluster::shared_control_plane();
    let client = cluster.client();
    let version = client.apiserver_version().await?;
    assert_eq!(version.git_version, "v1.37.2");
    let out = cluster
        .kubectl()
        .args(["get", "--raw", "/readyz?verbose"])
        .output()?;
    let readyz = String::from_utf8_lossy(&out.stdout);
    assert!(readyz.contains("readyz check passed"), "{readyz}");
    assert!(cluster.api_server_url().starts_with("https://127.0.0.1:"));
    Ok(())
}

#[tokio::test]
async fn namespaces_are_unique_usable_and_deleted_on_drop() -> Result<()> {
    let cluster = TestCluster::shared_control_plane();
    let a = cluster.namespace("ns-test").await?;
    let b = cluster.namespace("ns-test").await?;
    assert_ne!(a.name(), b.name());
    let namespaces: Api<Namespace> = Api::all(cluster.client());
    assert!(namespaces.get_opt(a.name()).await?.is_some());
    // The controller-manager gave it its default ServiceAccount before we got it.
    let sas: Api<ServiceAccount> = Api::namespaced(cluster.client(), a.name());
    assert!(sas.get_opt("default").await?.is_some());

    let name = a.name().to_owned();
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match namespaces.get_opt(&name).await? {
            None => break,
            Some(ns) if ns.metadata.deletion_timestamp.is_some() => break,
            Some(_) => {}
        }
        assert!(Instant::now() < deadline, "namespace {name} not deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

#[tokio::test]
async fn crds_install_established_and_enforce_cel_rules() -> Result<()> {
    let cluster = TestCluster::shared_control_plane();
    cluster.install_crd_yaml(WIDGET_CRD).await?;
    // Installing again is an idempotent apply.
    cluster.install_crd_yaml(WIDGET_CRD).await?;
    let ns = cluster.namespace("crd").await?;
    let api = widgets(cluster, ns.name());
    api.create(&PostParams::default(), &widget("good", 3)?)
        .await?;
    let err = api
        .create(&PostParams::default(), &widget("bad", 11)?)
        .await
        .expect_err("the CEL rule must reject size 11");
    assert!(
        err.to_string().contains("size must be at most 10"),
        "unexpected error: {err}"
    );
    Ok(())
}

#[tokio::test]
async fn impersonated_service_account_gets_exactly_its_rbac() -> Result<()> {
    let cluster = TestCluster::shared_control_plane();
    let ns = cluster.namespace("rbac").await?;
    let admin = cluster.client();
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), ns.name());
    sas.create(
        &PostParams::default(),
        &ServiceAccount {
            metadata: ObjectMeta {
                name: Some("reader".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await?;

    let as_sa = cluster.impersonate_service_account(ns.name(), "reader")?;
    let pods: Api<Pod> = Api::namespaced(as_sa.clone(), ns.name());
    let denied = pods
        .list(&Default::default())
        .await
        .expect_err("a fresh SA is denied");
    assert!(
        matches!(&denied, kube::Error::Api(s) if s.code == 403),
        "expected 403, got {denied}"
    );

    cluster
        .grant_role(
            ns.name(),
            "reader",
            "pod-reader",
            vec![PolicyRule {
                api_groups: Some(vec!["".into()]),
                resources: Some(vec!["pods".into()]),
                verbs: vec!["list".into()],
                ..Default::default()
            }],
        )
        .await?;
    // The RBAC authorizer reads from informers: allow it a moment to see the binding.
    let deadline = Instant::now() + Duration::from_secs(20);
    while pods.list(&Default::default()).await.is_err() {
        assert!(Instant::now() < deadline, "binding never took effect");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Still nothing beyond the Role: no pods in another namespace.
    let elsewhere: Api<Pod> = Api::namespaced(as_sa, "default");
    assert!(elsewhere.list(&Default::default()).await.is_err());
    Ok(())
}

#[tokio::test]
async fn kubectl_is_preconfigured_for_the_cluster() -> Result<()> {
    let cluster = TestCluster::shared_control_plane();
    let ns = cluster.namespace("kubectl").await?;
    let out = cluster
        .kubectl()
        .args(["get", "namespace", ns.name(), "-o", "name"])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("namespace/{}", ns.name())
    );
    let can_i = cluster
        .kubectl()
        .args(["auth", "can-i", "list", "pods", "-n", ns.name()])
        .arg(format!("--as=system:serviceaccount:{}:default", ns.name()))
        .output()?;
    assert_eq!(String::from_utf8_lossy(&can_i.stdout).trim(), "no");
    Ok(())
}

fn wait_gone(pids: &[u32], dir: &std::path::Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let alive: Vec<u32> = pids.iter().copied().filter(|&p| is_alive(p)).collect();
        if alive.is_empty() && !dir.exists() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still alive after {timeout:?}: {alive:?}; dir exists: {}",
            dir.exists()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn owned_cluster_stops_every_process_on_drop() -> Result<()> {
    let cluster = TestCluster::start(ClusterOptions::control_plane())?;
    let pids = cluster.process_ids();
    assert_eq!(
        pids.len(),
        4,
        "etcd, apiserver, controller-manager, scheduler"
    );
    assert!(pids.iter().all(|&p| is_alive(p)));
    let dir = cluster.dir().to_owned();
    let timings = cluster.timings();
    eprintln!(
        "owned control plane ready in {:?}",
        timings.control_plane_ready
    );
    cluster.stop()?;
    wait_gone(&pids, &dir, Duration::from_secs(5));
    Ok(())
}

/// Helper run in a child process by the next test: starts the shared control plane, writes
/// its pids and directory to `$ESC_TESTBED_PIDFILE`, and aborts (no destructors, no unwinding).
#[test]
#[ignore = "run as a child process by processes_are_stopped_when_the_test_process_aborts"]
fn helper_start_then_abort() {
    assert!(
        abort_probe::requested(),
        "run by processes_are_stopped_when_the_test_process_aborts only"
    );
    let cluster = TestCluster::shared_control_plane();
    abort_probe::report_and_abort(cluster.dir(), &cluster.process_ids());
}

#[test]
fn processes_are_stopped_when_the_test_process_aborts() -> Result<()> {
    let (dir, pids) = abort_probe::run("helper_start_then_abort")?;
    assert_eq!(pids.len(), 4);
    wait_gone(&pids, &dir, Duration::from_secs(15));
    Ok(())
}

#[tokio::test]
async fn crd_files_with_several_documents_install() -> Result<()> {
    let cluster = TestCluster::shared_control_plane();
    let gadgets = WIDGET_CRD
        .replace("widgets.testbed", "gadgets.testbed")
        .replace("Widget", "Gadget")
        .replace("widget", "gadget");
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(
        file.path(),
        format!("---\n{WIDGET_CRD}\n---\n{gadgets}\n---\n"),
    )?;
    cluster.install_crd_files(&[file.path()]).await?;
    let ns = cluster.namespace("crd-files").await?;
    let gvk = GroupVersionKind::gvk("testbed.esc.example", "v1", "Gadget");
    let api: Api<DynamicObject> =
        Api::namespaced_with(cluster.client(), ns.name(), &ApiResource::from_gvk(&gvk));
    let mut gadget = widget("g", 1)?;
    gadget.types.as_mut().unwrap().kind = "Gadget".into();
    api.create(&PostParams::default(), &gadget).await?;
    assert_eq!(api.list(&Default::default()).await?.items.len(), 1);
    Ok(())
}
