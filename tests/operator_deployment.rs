//! The operator as it is deployed: pods of the operator image (built from the current source)
//! on the test bed's node, under a ServiceAccount bound to `manifests/rbac/operator.yaml`, with
//! the restricted security context, probes on `/healthz` and `/readyz`, and two replicas that
//! elect one leader through the Lease. The leader goes twice — its pod deleted (the Deployment
//! starts another), then its Deployment scaled to zero (nothing replaces it) — and each time
//! another pod takes the Lease and reconciles within 15 s; the API server's audit log shows
//! that the pods never write at the same time.
//!
//! Two Deployments of one replica, not one of two. The test bed has no kube-proxy and its ESC
//! nodes listen on loopback, so the operator's pods use the host network; pods on the host
//! network of one node share its ports, and a Deployment's template gives every replica the
//! same fixed probe port — the second replica could never bind it. So each replica gets a
//! Deployment of its own (same image, ServiceAccount, labels and flags; only the HTTP port and
//! the `app.kubernetes.io/instance` label differ): two pods, each restarted by its own
//! ReplicaSet, electing through one Lease exactly as the replicas of one Deployment do. In a
//! cluster with pod networking the two are one Deployment of two replicas on the default port.

mod esc_fixture;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use esc_fixture::{cluster_spec, create_ssh_secrets, is, ready, tail, wait_for};
use esc_operator::api::{EscCluster, EscClusterStatus};
use esc_testbed::cluster::{AuditEvent, TestCluster};
use esc_testbed::operator::operator_identity;
use esc_testbed::operator_image::OperatorImage;
use esc_testbed::sshd::{SimEsc, SimSpec};
use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{
    Api, DeleteParams, ListParams, LogParams, ObjectMeta, Patch, PatchParams, PostParams,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SERVICE_ACCOUNT: &str = "esc-operator";
const LEASE: &str = "esc-operator";
const CONVERGE: Duration = Duration::from_secs(30);
const ANNOTATION: &str = "escoperator.dev/maintenance";

/// The operator's pod template, as the test bed runs it: `ns` watched, HTTP on 127.0.0.1:`port`.
///
/// What exists only because of the test bed — the host network, the API server reached on
/// 127.0.0.1 (`in_cluster_env`), the HTTP server and the probes on loopback (so nothing
/// listens beyond the machine) — is what [`without_test_bed_parts`] removes again.
fn pod_template(cluster: &TestCluster, image: &str, ns: &str, instance: &str, port: u16) -> Value {
    let mut env = vec![json!({
        "name": "POD_NAME",
        "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } }
    })];
    env.extend(
        cluster
            .in_cluster_env()
            .into_iter()
            .map(|e| json!({ "name": e.name, "value": e.value })),
    );
    let probe = |path: &str, period: u32| {
        json!({
            "httpGet": { "host": "127.0.0.1", "path": path, "port": port },
            "periodSeconds": period,
            "failureThreshold": 3
        })
    };
    json!({
        "metadata": { "labels": labels(instance) },
        "spec": {
            "serviceAccountName": SERVICE_ACCOUNT,
            "hostNetwork": true,
            "terminationGracePeriodSeconds": 30,
            "securityContext": {
                "runAsNonRoot": true,
                "runAsUser": 65532,
                "runAsGroup": 65532,
                "seccompProfile": { "type": "RuntimeDefault" }
            },
            "containers": [{
                "name": "esc-operator",
                "image": image,
                "imagePullPolicy": "Never",
                "args": ["run", format!("--namespaces={ns}"), format!("--http-addr=127.0.0.1:{port}"),
                    // The election step by step, for a failure message.
                    "--log-level=info,kube_lease_manager=debug"],
                "env": env,
                "ports": [{ "name": "http", "containerPort": port }],
                "readinessProbe": probe("/readyz", 2),
                "livenessProbe": probe("/healthz", 10),
                "resources": { "requests": { "cpu": "10m", "memory": "32Mi" } },
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "capabilities": { "drop": ["ALL"] }
                }
            }]
        }
    })
}

fn labels(instance: &str) -> Value {
    json!({
        "app.kubernetes.io/name": "esc-operator",
        "app.kubernetes.io/instance": instance
    })
}

fn deployment(template: Value, instance: &str) -> Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": instance, "labels": labels(instance) },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": labels(instance) },
            "template": template
        }
    }))?)
}

/// The pod as it would run with pod networking: no host network, no loopback API address, the
/// HTTP server on its default address, the probes at the pod's IP.
fn without_test_bed_parts(mut template: Value) -> Value {
    let spec = &mut template["spec"];
    if let Some(spec) = spec.as_object_mut() {
        spec.remove("hostNetwork");
    }
    let container = &mut spec["containers"][0];
    let args: Vec<Value> = container["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| !a.as_str().is_some_and(|a| a.starts_with("--http-addr=")))
        .cloned()
        .collect();
    container["args"] = json!(args);
    // POD_NAME only: the API server's address comes from the kubelet's Service variables.
    container["env"] = json!([container["env"][0].clone()]);
    container["ports"] = json!([{ "name": "http", "containerPort": 8080 }]);
    for probe in ["readinessProbe", "livenessProbe"] {
        let get = &mut container[probe]["httpGet"];
        if let Some(get) = get.as_object_mut() {
            get.remove("host");
        }
        get["port"] = json!("http");
    }
    template
}

/// A pod's log, followed from its first line until the container stops (also after the pod
/// object is gone: a deleted pod's log cannot be fetched afterwards).
struct FollowedLog {
    text: Arc<Mutex<String>>,
    ended: Arc<Mutex<Option<Instant>>>,
}

impl FollowedLog {
    async fn start(pods: &Api<Pod>, name: &str) -> Result<FollowedLog> {
        let params = LogParams {
            follow: true,
            ..LogParams::default()
        };
        let stream = pods.log_stream(name, &params).await?;
        let text = Arc::new(Mutex::new(String::new()));
        let ended = Arc::new(Mutex::new(None));
        let (t, e) = (text.clone(), ended.clone());
        tokio::spawn(async move {
            let mut lines = stream.lines();
            while let Some(Ok(line)) = lines.next().await {
                let mut text = t.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
            *e.lock().unwrap() = Some(Instant::now());
        });
        Ok(FollowedLog { text, ended })
    }

    fn text(&self) -> String {
        self.text.lock().unwrap().clone()
    }

    fn contains(&self, needle: &str) -> bool {
        self.text.lock().unwrap().contains(needle)
    }

    /// When the stream ended (the container stopped).
    fn ended(&self) -> Option<Instant> {
        *self.ended.lock().unwrap()
    }
}

/// The Ready pods of the Deployment `instance`.
async fn ready_pods(pods: &Api<Pod>, instance: &str) -> Result<Vec<Pod>> {
    let list = pods
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={instance}")))
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .collect())
}

/// Waits until the Deployment `instance` has exactly one Ready pod; returns its name.
async fn wait_ready_pod(pods: &Api<Pod>, instance: &str, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let [pod] = ready_pods(pods, instance).await?.as_slice() {
            return Ok(pod.metadata.name.clone().unwrap_or_default());
        }
        if Instant::now() > deadline {
            let all = pods
                .list(
                    &ListParams::default()
                        .labels(&format!("app.kubernetes.io/instance={instance}")),
                )
                .await?;
            bail!(
                "no Ready pod of {instance} within {timeout:?}: {:?}",
                all.items
                    .iter()
                    .map(|p| (&p.metadata.name, &p.status))
                    .collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The pod whose identity holds the Lease: identities are `<POD_NAME>-<8 hex digits>`.
fn holder_pod<'a>(holder: &str, pods: &[&'a str]) -> Option<&'a str> {
    pods.iter().copied().find(|pod| {
        holder
            .strip_prefix(pod)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|suffix| {
                suffix.len() == 8 && suffix.chars().all(|c| c.is_ascii_hexdigit())
            })
    })
}

async fn lease_holder(leases: &Api<Lease>) -> Result<Option<String>> {
    Ok(leases
        .get_opt(LEASE)
        .await?
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity))
}

/// The value of `series` (name and labels) on the operator's `/metrics` at 127.0.0.1:`port`.
async fn metric(port: u16, series: &str) -> Result<Option<f64>> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok()))
}

const RECONCILES: &str = "esc_operator_reconcile_total{controller=\"esccluster\"}";

/// The replicas: each Deployment's instance name and HTTP port, and the logs of every pod seen.
struct Replicas {
    pods: Api<Pod>,
    leases: Api<Lease>,
    ports: BTreeMap<&'static str, u16>,
    logs: BTreeMap<String, FollowedLog>,
}

/// A change of leader: who took the Lease and when it had reconciled, counted from the moment
/// the old leader was told to stop.
struct Handover {
    pod: String,
    took_lease: Duration,
    reconciled: Duration,
}

impl Replicas {
    /// Waits for the Ready pod of `instance` and follows its log; returns its name.
    async fn ready(&mut self, instance: &str, timeout: Duration) -> Result<String> {
        let name = wait_ready_pod(&self.pods, instance, timeout).await?;
        if !self.logs.contains_key(&name) {
            let log = FollowedLog::start(&self.pods, &name).await?;
            self.logs.insert(name.clone(), log);
        }
        Ok(name)
    }

    fn log(&self, pod: &str) -> String {
        self.logs
            .get(pod)
            .map(FollowedLog::text)
            .unwrap_or_default()
    }

    fn says(&self, pod: &str, needle: &str) -> bool {
        self.logs.get(pod).is_some_and(|l| l.contains(needle))
    }

    /// The pod holding the Lease (among the live pods of both Deployments) and its HTTP port.
    async fn leader(&self) -> Result<Option<(String, u16)>> {
        let Some(holder) = lease_holder(&self.leases).await? else {
            return Ok(None);
        };
        let list = self
            .pods
            .list(&ListParams::default().labels("app.kubernetes.io/name=esc-operator"))
            .await?;
        Ok(list.items.iter().find_map(|p| {
            let name = p.metadata.name.as_deref()?;
            holder_pod(&holder, &[name])?;
            let instance = p
                .metadata
                .labels
                .as_ref()?
                .get("app.kubernetes.io/instance")?;
            Some((name.to_owned(), *self.ports.get(instance.as_str())?))
        }))
    }

    /// Waits until a pod other than `gone` holds the Lease and has reconciled (its reconcile
    /// counter is above 0).
    async fn handover(&self, gone: &str, since: Instant) -> Result<Handover> {
        let mut took = None;
        loop {
            let elapsed = since.elapsed();
            if let Some((pod, port)) = self.leader().await?.filter(|(p, _)| p != gone) {
                let took_lease = *took.get_or_insert(elapsed);
                let reconciles = metric(port, RECONCILES).await.ok().flatten();
                if reconciles.unwrap_or(0.0) >= 1.0 {
                    return Ok(Handover {
                        pod,
                        took_lease,
                        reconciled: elapsed,
                    });
                }
            }
            if elapsed > Duration::from_secs(30) {
                bail!(
                    "no new leader reconciled within 30 s of stopping {gone} (holder {:?}); logs:\n{}",
                    lease_holder(&self.leases).await?,
                    self.logs
                        .iter()
                        .map(|(pod, l)| format!("--- {pod}\n{}", tail(&l.text(), 15)))
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_elect_one_leader_and_hand_over_without_double_writes() -> Result<()> {
    let started = Instant::now();
    let cluster = TestCluster::shared();
    let image = OperatorImage::shared();
    image.import_into(cluster)?;
    eprintln!(
        "image {} ({}) on the node after {:?}",
        image.name,
        image.revision,
        started.elapsed()
    );
    cluster.install_crds(&esc_operator::api::crds()).await?;
    let ns = cluster.namespace("op-deploy").await?;
    let client = cluster.client();
    let sim = SimEsc::start(SimSpec::ha())?;
    sim.share_first_client_key()?;
    let secrets = create_ssh_secrets(&client, ns.name(), "pair", &sim).await?;
    // The ServiceAccount and its RBAC as the tests' operators have them; the pods authenticate
    // with the tokens the kubelet mounts, not with the TokenRequest kubeconfig written here.
    let dir = tempfile::tempdir()?;
    operator_identity(
        cluster,
        ns.name(),
        SERVICE_ACCOUNT,
        &[ns.name()],
        dir.path(),
    )
    .await?;
    let user = format!("system:serviceaccount:{}:{SERVICE_ACCOUNT}", ns.name());

    let lo = std::net::Ipv4Addr::LOCALHOST;
    let instances = ["esc-operator-a", "esc-operator-b"];
    let mut replicas = Replicas {
        pods: Api::namespaced(client.clone(), ns.name()),
        leases: Api::namespaced(client.clone(), ns.name()),
        ports: BTreeMap::new(),
        logs: BTreeMap::new(),
    };
    for instance in instances {
        replicas
            .ports
            .insert(instance, esc_testbed::host_procs::free_port(lo)?);
    }
    let templates: Vec<Value> = instances
        .iter()
        .map(|i| pod_template(cluster, &image.name, ns.name(), i, replicas.ports[i]))
        .collect();
    // The template conforms to the restricted Pod Security Standard once the test bed's own
    // parts are taken out (server-side dry run through admission in an enforcing namespace).
    check_restricted(cluster, &templates[0]).await?;

    let since = SystemTime::now();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns.name());
    for (instance, template) in instances.iter().zip(&templates) {
        deployments
            .create(
                &PostParams::default(),
                &deployment(template.clone(), instance)?,
            )
            .await?;
    }
    let mut names = Vec::new();
    for instance in instances {
        names.push(replicas.ready(instance, Duration::from_secs(120)).await?);
    }
    eprintln!("both replicas Ready after {:?}", started.elapsed());

    // Exactly one leader: the Lease names one of the two pods, and only that pod says so.
    let (leader, _) = replicas
        .leader()
        .await?
        .context("no pod holds the Lease while both replicas are Ready")?;
    let standby = names.iter().find(|n| **n != leader).unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(replicas.says(&leader, "became the leader") && replicas.says(&standby, "standing by")) {
        if Instant::now() > deadline {
            bail!(
                "leader {leader}:\n{}\nstandby {standby}:\n{}",
                replicas.log(&leader),
                replicas.log(&standby)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !replicas.says(&standby, "became the leader"),
        "both pods say they lead:\n{}",
        replicas.log(&standby)
    );
    eprintln!("leader {leader}, standby {standby}");

    // The leader reconciles an EscCluster on the simulator to Ready; the standby does not.
    let api: Api<EscCluster> = Api::namespaced(client.clone(), ns.name());
    api.create(
        &PostParams::default(),
        &EscCluster::new("pair", cluster_spec(&sim, &secrets)),
    )
    .await?;
    wait_for(&api, "pair", "Ready", CONVERGE, ready, || {
        tail(&replicas.log(&leader), 40)
    })
    .await?;
    let port_of = |pod: &str| {
        let instance = instances[names.iter().position(|n| n == pod).unwrap()];
        replicas.ports[instance]
    };
    assert!(metric(port_of(&leader), RECONCILES).await?.unwrap_or(0.0) >= 1.0);
    assert_eq!(
        metric(port_of(&standby), RECONCILES).await?.unwrap_or(0.0),
        0.0,
        "only the leader reconciles"
    );

    // 1. Delete the leader pod: its process gets SIGTERM, stops its controllers and releases
    // the Lease. The standby looks again only when the Lease it last saw expires; the pod the
    // Deployment starts in place of the deleted one finds the Lease free at once. Either may win.
    let deleted = Instant::now();
    replicas
        .pods
        .delete(&leader, &DeleteParams::default())
        .await?;
    let first = replicas.handover(&leader, deleted).await?;
    eprintln!(
        "deleting leader pod {leader}: {} took the Lease after {:?} and reconciled after {:?} \
         (the deleted pod's log stream ended after {:?})",
        first.pod,
        first.took_lease,
        first.reconciled,
        replicas.logs[&leader]
            .ended()
            .map(|t| t.duration_since(deleted))
    );
    assert!(
        replicas.says(&leader, "released the leader lease"),
        "the deleted leader did not release the Lease:\n{}",
        replicas.log(&leader)
    );
    assert!(
        first.reconciled < Duration::from_secs(15),
        "a new leader took {:?} to reconcile",
        first.reconciled
    );
    let deleted_instance = instances[names.iter().position(|n| *n == leader).unwrap()];
    let replacement = replicas
        .ready(deleted_instance, Duration::from_secs(90))
        .await?;
    assert_ne!(replacement, leader);
    assert!(
        first.pod == standby || first.pod == replacement,
        "{} leads, neither the standby {standby} nor the replacement {replacement}",
        first.pod
    );
    // The new leader acts on a maintenance request.
    annotate(&api, Some("true")).await?;
    let in_maintenance = |st: &EscClusterStatus| is(st, "Maintenance", "True");
    wait_for(
        &api,
        "pair",
        "in maintenance",
        CONVERGE,
        in_maintenance,
        || tail(&replicas.log(&first.pod), 40),
    )
    .await?;
    assert!(replicas.says(&first.pod, "op_mode set"));

    // 2. Scale the leader's Deployment to zero: its pod goes and nothing replaces it, so the
    // pod that has been standing by all along must take over.
    let second_gone = first.pod.clone();
    let other = if second_gone == standby {
        replacement.clone()
    } else {
        standby.clone()
    };
    assert!(
        replicas.says(&other, "standing by") && !replicas.says(&other, "became the leader"),
        "{}",
        replicas.log(&other)
    );
    let gone_instance = pod_instance(&replicas.pods, &second_gone).await?;
    let scaled = Instant::now();
    deployments
        .patch(
            &gone_instance,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": 0}})),
        )
        .await?;
    let second = replicas.handover(&second_gone, scaled).await?;
    eprintln!(
        "scaling {gone_instance} to 0: the standby {} took the Lease after {:?} and reconciled \
         after {:?}",
        second.pod, second.took_lease, second.reconciled
    );
    assert_eq!(second.pod, other);
    assert!(replicas.says(&second_gone, "released the leader lease"));
    assert!(
        second.reconciled < Duration::from_secs(15),
        "the standby took {:?} to reconcile",
        second.reconciled
    );
    annotate(&api, None).await?;
    wait_for(
        &api,
        "pair",
        "back in operation",
        CONVERGE,
        |st| is(st, "Maintenance", "False"),
        || tail(&replicas.log(&second.pod), 40),
    )
    .await?;

    // The audit log: one writer at a time. The pods share the ServiceAccount; the bound token
    // of each names its pod, so every write is attributed to a pod.
    let events: Vec<AuditEvent> = cluster
        .audit_events_since(since)?
        .into_iter()
        .filter(|e| e.user == user)
        .collect();
    let leaders = [leader.as_str(), first.pod.as_str(), second.pod.as_str()];
    single_writer(&events, &leaders)?;
    eprintln!("whole test: {:?}", started.elapsed());
    Ok(())
}

async fn annotate(api: &Api<EscCluster>, value: Option<&str>) -> Result<()> {
    api.patch(
        "pair",
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"annotations": {ANNOTATION: value}}})),
    )
    .await?;
    Ok(())
}

async fn pod_instance(pods: &Api<Pod>, pod: &str) -> Result<String> {
    pods.get(pod)
        .await?
        .metadata
        .labels
        .and_then(|l| l.get("app.kubernetes.io/instance").cloned())
        .with_context(|| format!("pod {pod} has no instance label"))
}

/// Checks that the operator's writes come from one Lease holder at a time. A pod's tenure runs
/// from its first Lease write (taking it) to its last (releasing it) — open for the pod that
/// holds it now, the last of `leaders`; tenures do not overlap, in the order of `leaders`; every
/// other write falls within its pod's tenure; each leader is seen writing (so the attribution
/// works and these checks can fail); no other pod writes at all.
fn single_writer(events: &[AuditEvent], leaders: &[&str]) -> Result<()> {
    let unattributed: Vec<String> = events
        .iter()
        .filter(|e| e.pod.is_none())
        .map(AuditEvent::describe)
        .collect();
    if !unattributed.is_empty() {
        bail!(
            "writes without a pod in their token:\n{}",
            unattributed.join("\n")
        );
    }
    let is_lease = |e: &AuditEvent| e.api_group == "coordination.k8s.io" && e.resource == "leases";
    let ok = |e: &AuditEvent| e.code.is_some_and(|c| (200..300).contains(&c));
    let mut tenures: BTreeMap<&str, (SystemTime, SystemTime)> = BTreeMap::new();
    for e in events.iter().filter(|e| is_lease(e) && ok(e)) {
        let pod = e.pod.as_deref().unwrap_or_default();
        tenures.entry(pod).or_insert((e.received, e.received)).1 = e.received;
    }
    let writes: Vec<&AuditEvent> = events.iter().filter(|e| !is_lease(e)).collect();
    eprintln!(
        "operator writes: {} to the Lease, {} others:",
        events.len() - writes.len(),
        writes.len()
    );
    for e in &writes {
        eprintln!("  {}", e.describe());
    }
    let writers: BTreeSet<&str> = tenures
        .keys()
        .copied()
        .chain(writes.iter().filter_map(|e| e.pod.as_deref()))
        .collect();
    if let Some(pod) = writers.iter().find(|p| !leaders.contains(p)) {
        bail!("{pod} wrote, but never led: {tenures:?}");
    }
    let mut previous_end = SystemTime::UNIX_EPOCH;
    for (i, leader) in leaders.iter().enumerate() {
        let (from, until) = *tenures
            .get(leader)
            .with_context(|| format!("no Lease write by the leader {leader}"))?;
        let until = if i + 1 == leaders.len() {
            SystemTime::now()
        } else {
            until
        };
        if from <= previous_end {
            bail!("{leader} took the Lease before its predecessor gave it up: {tenures:?}");
        }
        previous_end = until;
        let mine: Vec<&&AuditEvent> = writes
            .iter()
            .filter(|e| e.pod.as_deref() == Some(*leader))
            .collect();
        if mine.is_empty() {
            bail!("no write by the leader {leader}: the audit log cannot tell the pods apart");
        }
        if let Some(e) = mine
            .iter()
            .find(|e| e.received < from || e.received > until)
        {
            bail!(
                "a write outside its pod's tenure of the Lease: {}\ntenures: {tenures:?}",
                e.describe()
            );
        }
    }
    Ok(())
}

/// Server-side dry run of the template, without the test bed's parts, as a pod in a namespace
/// that enforces the restricted Pod Security Standard; the test bed's template itself is
/// refused there (the namespace does enforce).
async fn check_restricted(cluster: &TestCluster, template: &Value) -> Result<()> {
    let ns = cluster
        .namespace_with_labels(
            "op-deploy-restricted",
            &[("pod-security.kubernetes.io/enforce", "restricted")],
        )
        .await?;
    Api::<ServiceAccount>::namespaced(cluster.client(), ns.name())
        .create(
            &PostParams::default(),
            &ServiceAccount {
                metadata: ObjectMeta {
                    name: Some(SERVICE_ACCOUNT.to_owned()),
                    ..ObjectMeta::default()
                },
                ..ServiceAccount::default()
            },
        )
        .await?;
    let restricted = without_test_bed_parts(template.clone());
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": "esc-operator" },
        "spec": restricted["spec"]
    }))?;
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let pods = Api::<Pod>::namespaced(cluster.client(), ns.name());
    pods.create(&dry_run, &pod)
        .await
        .context("restricted refused the operator's pod template")?;
    // The namespace does enforce: the test bed's template itself is refused.
    let mut host_network = pod;
    host_network.spec = serde_json::from_value(template["spec"].clone())?;
    match pods.create(&dry_run, &host_network).await {
        Err(kube::Error::Api(e)) if e.code == 403 => Ok(()),
        other => bail!("restricted admitted a hostNetwork pod: {other:?}"),
    }
}
