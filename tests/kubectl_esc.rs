//! `kubectl esc` against the real control plane: every command, run as the binary (and once
//! through kubectl's own plugin lookup), on objects whose status is written here as the
//! operator would write it. No operator runs: the plugin only reads and writes resources.

use std::path::Path;
use std::process::{Command, Output};

use anyhow::{Context, Result};
use esc_operator::api::{EscBackup, EscCluster, EscRestore};
use esc_testbed::cluster::TestCluster;
use esc_testbed::operator::operator_identity;
use kube::api::{Api, Patch, PatchParams, PostParams};

const BIN: &str = env!("CARGO_BIN_EXE_esc-operator");

fn cluster() -> &'static TestCluster {
    TestCluster::shared_control_plane()
}

/// `esc-operator kubectl-esc ARGS` with `kubeconfig`.
fn plugin(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("kubectl-esc")
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(args)
        .output()
        .expect("run the plugin")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn seed(ns: &str) -> Result<()> {
    let client = cluster().client();
    let clusters: Api<EscCluster> = Api::namespaced(client.clone(), ns);
    let c: EscCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "escoperator.dev/v1alpha1", "kind": "EscCluster",
        "metadata": {"name": "prod"},
        "spec": {
            "topology": "HA",
            "nodes": [{"name": "esc-a", "host": "10.0.0.1"}, {"name": "esc-b", "host": "10.0.0.2"}],
            "ssh": {"user": "admin", "credentialsSecretRef": {"name": "c"},
                    "knownHostsSecretRef": {"name": "k"}}
        }
    }))?;
    let created = clusters.create(&PostParams::default(), &c).await?;
    let status = serde_json::json!({
        "apiVersion": "escoperator.dev/v1alpha1", "kind": "EscCluster",
        "status": {
            "observedGeneration": created.metadata.generation,
            "opMode": "Operation",
            "master": "esc-a",
            "nodes": [
                {"name": "esc-a", "role": "MASTER", "reachable": true, "services": "Running",
                 "escVersion": "5.10.0.86"},
                {"name": "esc-b", "role": "BACKUP", "reachable": true, "services": "Running",
                 "escVersion": "5.10.0.86"}
            ],
            "conditions": [{"type": "Ready", "status": "True", "reason": "Ready",
                "message": "both nodes run", "lastTransitionTime": "2026-11-30T00:00:00Z",
                "observedGeneration": created.metadata.generation}]
        }
    });
    clusters
        .patch_status(
            "prod",
            &PatchParams::apply("test").force(),
            &Patch::Apply(&status),
        )
        .await?;
    let backups: Api<EscBackup> = Api::namespaced(client, ns);
    let b: EscBackup = serde_json::from_value(serde_json::json!({
        "apiVersion": "escoperator.dev/v1alpha1", "kind": "EscBackup",
        "metadata": {"name": "nightly"},
        "spec": {
            "clusterRef": {"name": "prod"},
            "target": {"s3": {"bucket": "esc-backups", "endpoint": "http://127.0.0.1:9000",
                "forcePathStyle": true, "credentialsSecretRef": {"name": "s3"}}},
            "deletionPolicy": "Delete"
        }
    }))?;
    backups.create(&PostParams::default(), &b).await?;
    let status = serde_json::json!({
        "apiVersion": "escoperator.dev/v1alpha1", "kind": "EscBackup",
        "status": {"phase": "Succeeded", "artifact": {
            "uri": "s3://esc-backups/ops/prod/nightly.tar", "size": 3_145_728,
            "sha256": "ab12".repeat(16), "escVersion": "5.10.0.86",
            "createdAt": "2026-11-30T00:00:00Z"}}
    });
    backups
        .patch_status(
            "nightly",
            &PatchParams::apply("test").force(),
            &Patch::Apply(&status),
        )
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_works_against_the_api_server_and_fails_clearly() -> Result<()> {
    let cluster = cluster();
    cluster.install_crds(&esc_operator::api::crds()).await?;
    let ns = cluster.namespace("plugin").await?;
    let other = cluster.namespace("plugin-other").await?;
    seed(ns.name()).await?;
    let admin = cluster.kubeconfig_path();
    let n = ns.name();

    // status: one screen.
    let o = plugin(admin, &["-n", n, "status", "prod"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    for want in [
        &format!("EscCluster {n}/prod (HA pair)"),
        "mode: Operation    master: esc-a",
        "esc-b            BACKUP     yes        running    5.10.0.86",
        "last backup:  nightly Succeeded",
        "(3.0 MiB)",
        "Ready=True (Ready): both nodes run",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }

    // Through kubectl's own plugin lookup: the binary linked as kubectl-esc on the PATH.
    let dir = tempfile::tempdir()?;
    std::os::unix::fs::symlink(BIN, dir.path().join("kubectl-esc"))?;
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = Command::new(cluster.bin_dir().join("kubectl"))
        .env("PATH", &path)
        .env("KUBECONFIG", admin)
        .args(["esc", "status", "prod", "-n", n])
        .output()?;
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("master: esc-a"), "{}", text(&o));

    // maintenance on/off: the annotation, nothing else.
    let clusters: Api<EscCluster> = Api::namespaced(cluster.client(), n);
    let o = plugin(admin, &["-n", n, "maintenance", "on", "prod"]);
    assert!(o.status.success(), "{}", text(&o));
    let annotation = |c: &EscCluster| {
        c.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("escoperator.dev/maintenance").cloned())
    };
    assert_eq!(
        annotation(&clusters.get("prod").await?).as_deref(),
        Some("true")
    );
    let o = plugin(admin, &["-n", n, "maintenance", "off", "prod"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(annotation(&clusters.get("prod").await?), None);

    // backup: the target of the latest backup, a new name.
    let o = plugin(admin, &["-n", n, "backup", "prod", "--name", "by-plugin"]);
    assert!(o.status.success(), "{}", text(&o));
    let backups: Api<EscBackup> = Api::namespaced(cluster.client(), n);
    let made = backups.get("by-plugin").await?;
    let nightly = backups.get("nightly").await?;
    assert_eq!(made.spec.target, nightly.spec.target);
    assert_eq!(made.spec.deletion_policy, nightly.spec.deletion_policy);

    // restore --dry-run, then a second restore while the first has not ended: refused.
    let o = plugin(
        admin,
        &[
            "-n",
            n,
            "restore",
            "prod",
            "--from",
            "nightly",
            "--dry-run",
            "--name",
            "look",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let restores: Api<EscRestore> = Api::namespaced(cluster.client(), n);
    let look = restores.get("look").await?;
    assert!(look.spec.dry_run);
    assert_eq!(
        look.spec
            .source
            .backup_ref
            .as_ref()
            .map(|r| r.name.as_str()),
        Some("nightly")
    );
    let o = plugin(admin, &["-n", n, "restore", "prod", "--from", "nightly"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("EscRestore look is still running"),
        "{}",
        text(&o)
    );

    // backups: a table, JSON and YAML lists.
    let o = plugin(admin, &["-n", n, "backups", "prod"]);
    assert!(o.status.success(), "{}", text(&o));
    let table = text(&o);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("nightly") && table.contains("ab12ab12ab12"),
        "{table}"
    );
    let o = plugin(admin, &["-n", n, "backups", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    let names: Vec<&str> = list["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert!(
        names.contains(&"nightly") && names.contains(&"by-plugin"),
        "{names:?}"
    );
    let o = plugin(admin, &["-n", n, "backups", "-o", "yaml"]);
    let yaml: serde_json::Value = serde_norway::from_slice(&o.stdout)?;
    assert_eq!(yaml["kind"], "List");
    let o = plugin(admin, &["-A", "backups"]);
    assert!(text(&o).starts_with("NAMESPACE"), "{}", text(&o));

    // A missing cluster: exit 1, what and where.
    let o = plugin(admin, &["-n", n, "status", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains(&format!("EscCluster nope not found in namespace {n}")),
        "{}",
        text(&o)
    );
    // An unknown context: the kubeconfig's error, not a panic.
    let o = plugin(admin, &["--context", "no-such-context", "-n", n, "status"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("no-such-context"), "{}", text(&o));

    // A namespace the user may not read: exit 3, forbidden. The identity has the operator's
    // rights in `ns` only.
    let limited = operator_identity(cluster, n, "plugin-user", &[n], dir.path()).await?;
    let o = plugin(&limited, &["-n", n, "backups"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = plugin(&limited, &["-n", other.name(), "status"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("forbidden"), "{}", text(&o));
    Ok(())
}
