//! The test bed's node: containerd + kubelet named `localhost`, Ready, running real containers
//! from locally built images, with all traffic on this machine.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use esc_testbed::cluster::TestCluster;
use esc_testbed::node::{NODE_NAME, PAUSE_IMAGE, POD_SUBNET};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};

fn pod(name: &str, host_network: bool, args: &[&str], restart: &str) -> Result<Pod> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name },
        "spec": {
            "hostNetwork": host_network,
            "restartPolicy": restart,
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "main",
                "image": PAUSE_IMAGE,
                "imagePullPolicy": "Never",
                "args": args,
                "securityContext": {
                    "runAsNonRoot": true,
                    "runAsUser": 65532,
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "capabilities": { "drop": ["ALL"] },
                    "seccompProfile": { "type": "RuntimeDefault" }
                }
            }]
        }
    }))?)
}

async fn wait_phase(api: &Api<Pod>, name: &str, phases: &[&str], timeout: Duration) -> Result<Pod> {
    let deadline = Instant::now() + timeout;
    loop {
        let p = api.get(name).await?;
        let phase = p
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        if phases.contains(&phase.as_str()) {
            return Ok(p);
        }
        if Instant::now() > deadline {
            bail!(
                "pod {name} in phase {phase:?} after {timeout:?}: {:?}",
                p.status
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn node_localhost_is_ready_and_reached_by_its_hostname() -> Result<()> {
    let cluster = TestCluster::shared();
    let nodes: Api<Node> = Api::all(cluster.client());
    let node = nodes.get(NODE_NAME).await?;
    let status = node.status.unwrap_or_default();
    let ready = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    assert!(ready, "node not Ready");
    let addresses = status.addresses.unwrap_or_default();
    assert!(
        addresses
            .iter()
            .any(|a| a.type_ == "Hostname" && a.address == "localhost"),
        "{addresses:?}"
    );
    let port = status
        .daemon_endpoints
        .and_then(|d| d.kubelet_endpoint)
        .map(|e| e.port);
    assert_eq!(
        port,
        Some(i32::from(cluster.node().unwrap().kubelet_port()))
    );
    Ok(())
}

#[tokio::test]
async fn a_pod_runs_from_the_imported_image_and_its_logs_come_through_the_kubelet() -> Result<()> {
    let cluster = TestCluster::shared();
    let ns = cluster.namespace("node-logs").await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client(), ns.name());
    // `pause -v` prints its version and exits.
    pods.create(
        &PostParams::default(),
        &pod("version", false, &["-v"], "Never")?,
    )
    .await?;
    wait_phase(&pods, "version", &["Succeeded"], Duration::from_secs(60)).await?;
    let logs = cluster
        .kubectl()
        .args(["logs", "-n", ns.name(), "version"])
        .output()?;
    assert!(
        logs.status.success(),
        "{}",
        String::from_utf8_lossy(&logs.stderr)
    );
    let text = String::from_utf8_lossy(&logs.stdout);
    assert!(text.contains("pause.c v3.10-esc-testbed"), "logs: {text}");
    Ok(())
}

#[tokio::test]
async fn pods_get_an_isolated_bridge_or_the_host_network() -> Result<()> {
    let cluster = TestCluster::shared();
    let ns = cluster.namespace("node-net").await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client(), ns.name());
    pods.create(
        &PostParams::default(),
        &pod("bridged", false, &[], "Always")?,
    )
    .await?;
    pods.create(&PostParams::default(), &pod("host", true, &[], "Always")?)
        .await?;
    let bridged = wait_phase(&pods, "bridged", &["Running"], Duration::from_secs(60)).await?;
    let host = wait_phase(&pods, "host", &["Running"], Duration::from_secs(60)).await?;
    let ip = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .unwrap_or_default()
    };
    let subnet_prefix = POD_SUBNET.trim_end_matches("0/24");
    assert!(
        ip(&bridged).starts_with(subnet_prefix),
        "pod IP {}",
        ip(&bridged)
    );
    assert!(
        !ip(&host).starts_with(subnet_prefix),
        "host IP {}",
        ip(&host)
    );
    // The bridge has no address and no route: nothing from the pod network reaches the host.
    let addr = std::process::Command::new("ip")
        .args(["-o", "addr", "show", "dev", esc_testbed::node::BRIDGE])
        .output()?;
    assert!(addr.status.success(), "bridge missing");
    let text = String::from_utf8_lossy(&addr.stdout);
    assert!(!text.contains("inet "), "bridge has an address: {text}");
    let routes = std::process::Command::new("ip").args(["route"]).output()?;
    let routes = String::from_utf8_lossy(&routes.stdout);
    assert!(
        !routes.contains(esc_testbed::node::BRIDGE),
        "routes: {routes}"
    );
    Ok(())
}

#[tokio::test]
async fn a_host_network_pod_reaches_the_api_server_in_cluster_with_its_rbac() -> Result<()> {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::PolicyRule;
    use kube::api::ObjectMeta;

    let cluster = TestCluster::shared();
    cluster.import_image(&esc_testbed::node::kubectl_image_archive()?)?;
    let ns = cluster.namespace("in-cluster").await?;
    let client = cluster.client();
    let meta = |name: &str| ObjectMeta {
        name: Some(name.into()),
        ..Default::default()
    };
    Api::<ServiceAccount>::namespaced(client.clone(), ns.name())
        .create(
            &PostParams::default(),
            &ServiceAccount {
                metadata: meta("probe"),
                ..Default::default()
            },
        )
        .await?;
    cluster
        .grant_role(
            ns.name(),
            "probe",
            "list-pods",
            vec![PolicyRule {
                api_groups: Some(vec!["".into()]),
                resources: Some(vec!["pods".into()]),
                verbs: vec!["list".into()],
                ..Default::default()
            }],
        )
        .await?;

    let probe = |name: &str, args: &[&str]| -> Result<Pod> {
        Ok(serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": { "name": name },
            "spec": {
                "hostNetwork": true,
                "serviceAccountName": "probe",
                "restartPolicy": "Never",
                "containers": [{
                    "name": "kubectl",
                    "image": esc_testbed::node::KUBECTL_IMAGE,
                    "imagePullPolicy": "Never",
                    "args": args,
                    "env": cluster.in_cluster_env(),
                    "volumeMounts": [{ "name": "tmp", "mountPath": "/tmp" }],
                    "securityContext": {
                        "runAsNonRoot": true,
                        "allowPrivilegeEscalation": false,
                        "readOnlyRootFilesystem": true,
                        "capabilities": { "drop": ["ALL"] },
                        "seccompProfile": { "type": "RuntimeDefault" }
                    }
                }],
                "volumes": [{ "name": "tmp", "emptyDir": {} }]
            }
        }))?)
    };
    let pods: Api<Pod> = Api::namespaced(client, ns.name());
    let logs = |name: &str| -> Result<String> {
        let out = cluster
            .kubectl()
            .args(["logs", "-n", ns.name(), name])
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    // Allowed by its Role: it lists the pods of its namespace, itself among them.
    pods.create(
        &PostParams::default(),
        &probe("lister", &["get", "pods", "-o", "name"])?,
    )
    .await?;
    wait_phase(
        &pods,
        "lister",
        &["Succeeded", "Failed"],
        Duration::from_secs(60),
    )
    .await?;
    let listed = logs("lister")?;
    assert!(listed.contains("pod/lister"), "logs: {listed}");
    // Not allowed: secrets. The pod fails with the API server's Forbidden.
    pods.create(
        &PostParams::default(),
        &probe("snooper", &["get", "secrets"])?,
    )
    .await?;
    let failed = wait_phase(
        &pods,
        "snooper",
        &["Succeeded", "Failed"],
        Duration::from_secs(60),
    )
    .await?;
    assert_eq!(
        failed.status.and_then(|s| s.phase).as_deref(),
        Some("Failed")
    );
    let denied = cluster
        .kubectl()
        .args(["logs", "-n", ns.name(), "snooper"])
        .output()?;
    let denied = String::from_utf8_lossy(&denied.stdout).into_owned()
        + &String::from_utf8_lossy(&denied.stderr);
    assert!(
        denied.contains(&format!("system:serviceaccount:{}:probe", ns.name()))
            && denied.contains("forbidden"),
        "logs: {denied}"
    );
    Ok(())
}
