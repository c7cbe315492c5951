//! `esc-operator check-access` on a real API server with RBAC: a ServiceAccount without a Role
//! is told exactly which permission it lacks; with the Role it lists the operator's resources.

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use esc_operator::access::{AccessError, Scope, check_access};
use esc_testbed::cluster::TestCluster;

fn kubectl_apply(cluster: &TestCluster, namespace: &str, yaml: &str) {
    let mut child = cluster
        .kubectl()
        .args(["apply", "--namespace", namespace, "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("run kubectl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    assert!(
        child.wait().unwrap().success(),
        "kubectl apply failed:\n{yaml}"
    );
}

#[tokio::test]
async fn check_access_names_the_missing_permission_then_lists_once_granted() {
    let cluster = TestCluster::shared_control_plane();
    cluster
        .install_crds(&esc_operator::api::crds())
        .await
        .unwrap();
    let ns = cluster.namespace("access").await.unwrap();
    kubectl_apply(
        cluster,
        ns.name(),
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: esc-operator}\n",
    );
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("manifests/examples/esccluster-ha.yaml"),
    )
    .unwrap();
    kubectl_apply(cluster, ns.name(), &example);

    let as_operator = cluster
        .impersonate_service_account(ns.name(), "esc-operator")
        .unwrap();
    let scope = Scope::Namespace(ns.name().to_owned());
    let refused = check_access(&as_operator, &scope)
        .await
        .expect_err("a ServiceAccount without a Role is refused");
    let message = refused.to_string();
    assert!(
        matches!(refused, AccessError::Forbidden { .. }),
        "{message}"
    );
    for needed in [
        "forbidden: cannot list escclusters.escoperator.dev",
        &format!("in namespace {}", ns.name()),
        &format!("system:serviceaccount:{}:esc-operator", ns.name()),
        "Grant this identity get, list and watch on escclusters.escoperator.dev",
    ] {
        assert!(message.contains(needed), "{message:?} lacks {needed:?}");
    }

    kubectl_apply(
        cluster,
        ns.name(),
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: esc-reader}\n\
         rules:\n- apiGroups: [escoperator.dev]\n  resources: [escclusters, escbackups, escrestores, escbackupschedules]\n  verbs: [get, list, watch]\n\
         ---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: esc-reader}\n\
         roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: esc-reader}\n\
         subjects:\n- {kind: ServiceAccount, name: esc-operator}\n",
    );
    // The RBAC authorizer works from informers: give it a moment to see the binding.
    let deadline = Instant::now() + Duration::from_secs(20);
    let listings = loop {
        match check_access(&as_operator, &scope).await {
            Ok(listings) => break listings,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("still refused after the RoleBinding: {e}"),
        }
    };
    let summary: Vec<(String, usize)> = listings
        .iter()
        .map(|l| (l.resource.clone(), l.objects.len()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("escclusters.escoperator.dev".to_owned(), 1),
            ("escbackups.escoperator.dev".to_owned(), 0),
            ("escrestores.escoperator.dev".to_owned(), 0),
            ("escbackupschedules.escoperator.dev".to_owned(), 0),
        ]
    );
    assert_eq!(listings[0].objects, vec![format!("{}/esc-prod", ns.name())]);

    // The Role is namespaced: all namespaces stay out of reach.
    let cluster_wide = check_access(&as_operator, &Scope::AllNamespaces)
        .await
        .expect_err("a Role grants nothing cluster-wide");
    assert!(
        cluster_wide.to_string().contains("in all namespaces"),
        "{cluster_wide}"
    );
}
