//! The CRDs on a real kube-apiserver: they install and become Established, every example
//! applies, every object of the bad-input corpus is rejected with the message it documents,
//! and the Rust types round-trip through the server's schema (defaults, status subresource).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use esc_operator::api::{
    Artifact, BackupStep, EscBackup, EscBackupStatus, EscCluster, EscClusterStatus, EscNodeStatus,
    EscRestore, HolderKind, MaintenanceHolder, MaintenanceWindow, NodeFile, NodeFileKind, NodeRole,
    OpMode, RunPhase, ServicesState, StepState, StepStatus, Time, TransferProgress,
};
use esc_testbed::cluster::TestCluster;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use serde_json::Value;

const FIELD_MANAGER: &str = "esc-operator-tests";

/// The shared control plane with this repository's generated CRDs installed.
async fn cluster() -> &'static TestCluster {
    let cluster = TestCluster::shared_control_plane();
    cluster
        .install_crd_files(&crd_files())
        .await
        .expect("install the generated CRDs from crds/");
    cluster
}

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn crd_files() -> Vec<PathBuf> {
    yaml_files(&repo_path("crds"))
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

/// The non-empty YAML documents of a file, as JSON values.
fn documents(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let mut docs = Vec::new();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let value: Value = serde::Deserialize::deserialize(doc)
            .with_context(|| format!("parse {}", path.display()))?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// Server-side apply of one object (any kind this test knows) with strict field validation,
/// as `kubectl apply --server-side` does.
async fn apply(cluster: &TestCluster, namespace: &str, object: &Value) -> Result<DynamicObject> {
    let api_version = object["apiVersion"].as_str().context("apiVersion")?;
    let kind = object["kind"].as_str().context("kind")?;
    let name = object["metadata"]["name"]
        .as_str()
        .context("metadata.name")?;
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let resource = match kind {
        "Secret" => ApiResource::erase::<Secret>(&()),
        _ => ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind)),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(cluster.client(), namespace, &resource);
    let params = PatchParams::apply(FIELD_MANAGER).validation_strict();
    Ok(api.patch(name, &params, &Patch::Apply(object)).await?)
}

#[tokio::test]
async fn crds_install_and_become_established() {
    let cluster = cluster().await;
    let api: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(cluster.client());
    for name in [
        "escclusters.escoperator.dev",
        "escbackups.escoperator.dev",
        "escrestores.escoperator.dev",
        "escbackupschedules.escoperator.dev",
    ] {
        let crd = api.get(name).await.expect(name);
        let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
        assert!(
            conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True"),
            "{name} not Established: {conditions:?}"
        );
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["esc".to_owned()][..])
        );
    }
    assert_eq!(crd_files().len(), 4, "one generated file per kind in crds/");
}

#[tokio::test]
async fn every_example_applies_cleanly() {
    let cluster = cluster().await;
    let ns = cluster.namespace("examples").await.unwrap();
    let files = yaml_files(&repo_path("manifests/examples"));
    assert!(files.len() >= 5, "examples missing: {files:?}");
    let mut applied = 0;
    for file in &files {
        for doc in documents(file).unwrap() {
            let stored = apply(cluster, ns.name(), &doc)
                .await
                .unwrap_or_else(|e| panic!("{} does not apply: {e:#}", file.display()));
            applied += 1;
            if doc["kind"] != "Secret" {
                // No operator runs here: a new object reads back as not observed yet, which
                // kstatus counts as in progress (with no status at all it would be Current).
                assert_eq!(
                    stored.data["status"],
                    serde_json::json!({ "observedGeneration": 0 }),
                    "{}: {}",
                    file.display(),
                    doc["metadata"]["name"]
                );
                assert!(stored.metadata.generation.unwrap_or_default() >= 1);
            }
        }
    }
    // The typed view of what the server stored: every example parses into the Rust types.
    let clusters: Api<EscCluster> = Api::namespaced(cluster.client(), ns.name());
    let backups: Api<EscBackup> = Api::namespaced(cluster.client(), ns.name());
    let restores: Api<EscRestore> = Api::namespaced(cluster.client(), ns.name());
    assert_eq!(
        clusters
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    assert_eq!(
        backups.list(&Default::default()).await.unwrap().items.len(),
        4
    );
    assert_eq!(
        restores
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .len(),
        3
    );
    assert!(applied >= 12, "applied {applied} documents");
}

/// One entry of `tests/data/invalid/`: the objects and the message the API server must give.
struct InvalidCase {
    file: PathBuf,
    expect: String,
    documents: Vec<Value>,
}

fn invalid_cases() -> Vec<InvalidCase> {
    yaml_files(&repo_path("tests/data/invalid"))
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).unwrap();
            let expect = text
                .lines()
                .find_map(|line| line.strip_prefix("# expect: "))
                .unwrap_or_else(|| panic!("{}: no `# expect:` line", file.display()))
                .to_owned();
            let documents = documents(&file).unwrap();
            assert!(!documents.is_empty(), "{}: no document", file.display());
            InvalidCase {
                file,
                expect,
                documents,
            }
        })
        .collect()
}

#[tokio::test]
async fn invalid_objects_are_rejected_with_the_documented_message() {
    let cluster = cluster().await;
    let ns = cluster.namespace("invalid").await.unwrap();
    let cases = invalid_cases();
    assert!(
        cases.len() >= 25,
        "the corpus has only {} cases",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        if let Err(problem) = check_rejected(cluster, ns.name(), case).await {
            failures.push(format!("{}: {problem:#}", case.file.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} invalid objects were not rejected as documented:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

async fn check_rejected(cluster: &TestCluster, namespace: &str, case: &InvalidCase) -> Result<()> {
    let (last, setup) = case.documents.split_last().unwrap();
    for doc in setup {
        apply(cluster, namespace, doc)
            .await
            .context("the setup document was rejected")?;
    }
    match apply(cluster, namespace, last).await {
        Ok(_) => bail!("accepted, expected rejection with {:?}", case.expect),
        Err(error) => {
            let message = match error.downcast_ref::<kube::Error>() {
                Some(kube::Error::Api(status)) => status.message.clone(),
                _ => format!("{error:#}"),
            };
            if message.contains(&case.expect) {
                Ok(())
            } else {
                bail!(
                    "rejected with {message:?}, expected it to contain {:?}",
                    case.expect
                )
            }
        }
    }
}

fn time(rfc3339: &str) -> Time {
    Time(rfc3339.parse().unwrap())
}

fn condition(type_: &str, status: &str, reason: &str) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: format!("{type_} is {status} because {reason}"),
        last_transition_time: time("2026-11-28T08:00:00Z"),
        observed_generation: Some(1),
    }
}

/// Typed objects written by the Rust types (spec through apply, status through the status
/// subresource) are accepted by the server's schema and read back equal — nothing dropped,
/// nothing renamed, defaults as the Rust defaults.
#[tokio::test]
async fn rust_types_round_trip_through_the_server_schema() {
    let cluster = cluster().await;
    let ns = cluster.namespace("roundtrip").await.unwrap();
    let client = cluster.client();

    // A minimal spec: the server fills in the defaults, and they are the Rust defaults.
    let minimal: EscCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "escoperator.dev/v1alpha1", "kind": "EscCluster",
        "metadata": {"name": "minimal"},
        "spec": {"topology": "Standalone", "nodes": [{"name": "n0", "host": "127.0.0.1"}],
                 "ssh": {"user": "admin", "credentialsSecretRef": {"name": "c"},
                         "knownHostsSecretRef": {"name": "k"}}}
    }))
    .unwrap();
    let clusters: Api<EscCluster> = Api::namespaced(client.clone(), ns.name());
    let created = clusters
        .create(&PostParams::default(), &minimal)
        .await
        .unwrap();
    assert_eq!(
        created.spec, minimal.spec,
        "server defaults differ from the Rust defaults"
    );
    let raw: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns.name(),
        &ApiResource::erase::<EscCluster>(&()),
    );
    let stored = raw.get("minimal").await.unwrap();
    assert_eq!(stored.data["spec"]["probeInterval"], "60s");
    assert_eq!(stored.data["spec"]["nodes"][0]["port"], 22);
    assert_eq!(stored.data["spec"]["maintenance"]["iptCheck"], true);

    // A full status through the status subresource.
    let status = EscClusterStatus {
        observed_generation: Some(1),
        op_mode: Some(OpMode::Maintenance),
        master: Some("n0".into()),
        nodes: vec![EscNodeStatus {
            name: "n0".into(),
            role: NodeRole::Standalone,
            reachable: true,
            services: ServicesState::Partial,
            stopped_services: vec!["mona".into()],
            esc_version: Some("5.10.0.86".into()),
        }],
        maintenance_holders: vec![MaintenanceHolder {
            kind: HolderKind::Annotation,
            name: "escoperator.dev/maintenance".into(),
            since: time("2026-11-28T08:00:00Z"),
        }],
        expired_holders: vec![MaintenanceHolder {
            kind: HolderKind::Annotation,
            name: "escoperator.dev/maintenance".into(),
            since: time("2026-11-27T08:00:00Z"),
        }],
        conditions: vec![
            condition("Ready", "True", "Probed"),
            condition("Maintenance", "True", "Requested"),
        ],
    };
    let patch = serde_json::json!({
        "apiVersion": "escoperator.dev/v1alpha1", "kind": "EscCluster", "status": status
    });
    clusters
        .patch_status(
            "minimal",
            &PatchParams::apply(FIELD_MANAGER).validation_strict(),
            &Patch::Apply(&patch),
        )
        .await
        .unwrap();
    let read = clusters.get_status("minimal").await.unwrap();
    assert_eq!(read.status.as_ref(), Some(&status));

    // An EscBackup with a status holding every field.
    let backup: EscBackup = serde_json::from_value(
        documents(&repo_path("manifests/examples/escbackup-s3.yaml")).unwrap()[0].clone(),
    )
    .unwrap();
    let backups: Api<EscBackup> = Api::namespaced(client.clone(), ns.name());
    let created = backups
        .create(&PostParams::default(), &backup)
        .await
        .unwrap();
    assert_eq!(created.spec, backup.spec);
    let status = EscBackupStatus {
        observed_generation: Some(1),
        phase: Some(RunPhase::Succeeded),
        steps: vec![StepStatus {
            name: BackupStep::Preflight,
            state: StepState::Succeeded,
            started_at: Some(time("2026-11-28T08:00:00Z")),
            finished_at: Some(time("2026-11-28T08:00:01Z")),
            message: Some("target writable".into()),
        }],
        artifact: Some(Artifact {
            uri: "s3://esc-backups/prod/x.tar".into(),
            size: 1234,
            sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
            esc_version: "5.10.0.86".into(),
            created_at: time("2026-11-28T08:00:02Z"),
        }),
        started_at: Some(time("2026-11-28T08:00:00Z")),
        completed_at: Some(time("2026-11-28T08:00:03Z")),
        message: Some("done".into()),
        queue_position: None,
        failure: None,
        node_files: vec![NodeFile {
            node: "esc-a".into(),
            kind: NodeFileKind::RunDirectory,
            path: "/var/tmp/esc-operator/esc-backup-0f1e-database".into(),
        }],
        mover_job: Some("x-mover-0f1e2".into()),
        maintenance: Some(MaintenanceWindow {
            started_at: time("2026-11-28T08:00:01Z"),
            ended_at: Some(time("2026-11-28T08:00:02Z")),
            seconds: Some(1),
        }),
        progress: Some(TransferProgress {
            bytes: 1234,
            total_bytes: Some(1234),
            bytes_per_second: Some(617),
        }),
        conditions: vec![condition("Completed", "True", "Verified")],
    };
    let patch = serde_json::json!({
        "apiVersion": "escoperator.dev/v1alpha1", "kind": "EscBackup", "status": status
    });
    backups
        .patch_status(
            &backup.metadata.name.clone().unwrap(),
            &PatchParams::apply(FIELD_MANAGER).validation_strict(),
            &Patch::Apply(&patch),
        )
        .await
        .unwrap();
    let read = backups
        .get_status(backup.metadata.name.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(read.status.as_ref(), Some(&status));

    // A status the schema must refuse: a role the API does not know.
    let bad = serde_json::json!({
        "apiVersion": "escoperator.dev/v1alpha1", "kind": "EscCluster",
        "status": {"nodes": [{"name": "n0", "role": "PRIMARY", "reachable": true, "services": "Running"}]}
    });
    let err = clusters
        .patch_status(
            "minimal",
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&bad),
        )
        .await
        .expect_err("an unknown role must be refused");
    assert!(
        err.to_string().contains("Unsupported value: \"PRIMARY\""),
        "{err}"
    );
}

/// Cron text the operator's parser takes is taken by the API server too (the CEL rules are no
/// stricter than the parser), and what the server takes but the parser refuses is only what a
/// regular expression cannot see (the operator then reports it as Stalled).
#[tokio::test]
async fn schedule_admission_agrees_with_the_operators_cron_parser() {
    let cluster = cluster().await;
    let ns = cluster.namespace("cron").await.unwrap();
    let object = |name: &str, schedule: &str| {
        serde_json::json!({
            "apiVersion": "escoperator.dev/v1alpha1", "kind": "EscBackupSchedule",
            "metadata": {"name": name},
            "spec": {"clusterRef": {"name": "esc"}, "schedule": schedule, "timeZone": "America/Argentina/Buenos_Aires",
                     "template": {"target": {"s3": {"bucket": "esc-backups", "endpoint": "https://minio.example:9000",
                                                    "forcePathStyle": true, "credentialsSecretRef": {"name": "s3"}}}}}
        })
    };
    let accepted = [
        "30 2 * * *",
        "*/15 0-6,18-23 1,15 JAN-MAR mon-fri",
        "0 0 * * 7",
        "  5 4 * * sun  ",
        "0-30/10 */2 1-7 */3 1-5/2",
        "@hourly",
        "@daily",
        "@midnight",
        "@weekly",
        "@monthly",
        "@yearly",
        "@annually",
    ];
    for (i, schedule) in accepted.iter().enumerate() {
        esc_operator::plan::cron::Cron::parse(schedule)
            .unwrap_or_else(|e| panic!("the parser refuses {schedule:?}: {e}"));
        apply(cluster, ns.name(), &object(&format!("ok-{i}"), schedule))
            .await
            .unwrap_or_else(|e| panic!("the API server refuses {schedule:?}: {e:#}"));
    }
    // Only the parser sees these: a range that goes backwards, a date that never comes.
    for (i, schedule) in ["0 5-1 * * *", "0 0 30 2 *"].iter().enumerate() {
        apply(
            cluster,
            ns.name(),
            &object(&format!("semantic-{i}"), schedule),
        )
        .await
        .unwrap_or_else(|e| panic!("the API server refuses {schedule:?}: {e:#}"));
    }
    assert!(esc_operator::plan::cron::Cron::parse("0 5-1 * * *").is_err());
    for schedule in [
        "60 * * * *",
        "* * * *",
        "@reboot",
        "0 0 * * 8",
        "5/15 * * * *",
    ] {
        assert!(
            apply(cluster, ns.name(), &object("refused", schedule))
                .await
                .is_err(),
            "the API server takes {schedule:?}"
        );
        assert!(esc_operator::plan::cron::Cron::parse(schedule).is_err());
    }
}
