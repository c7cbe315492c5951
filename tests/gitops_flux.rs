//! GitOps with the real Flux controllers (source, kustomize and helm controller, built from Go
//! modules and run by the test bed): a Git repository served over SSH by the test sshd (host key
//! verified) holds the chart and a fleet (the SSH Secrets and an EscCluster on the simulator). A
//! HelmRelease installs the operator from the chart in Git; a Kustomization with `wait: true`
//! applies the fleet and becomes Ready only once the EscCluster is (kstatus: `Ready=True` and
//! `observedGeneration` current). A commit that changes the EscCluster's spec is applied and
//! waited for at its new generation. Applying the same revision again writes nothing (the
//! API server's audit log shows no write to the fleet's objects). An EscBackup to MinIO added
//! in Git runs, and the Kustomization is Ready only once the backup succeeded (the run reports
//! `Ready` only then); deleted in Git, it is pruned and (`deletionPolicy: Retain`) its artifact
//! stays. An EscRestore from it runs once, waited for the same way; pruned and re-added by Git,
//! it is refused as `AlreadyRestored`, which is terminal (`Stalled=True`): the Kustomization's
//! health check fails at once instead of at its timeout.
//!
//! The test bed's values for the chart (host network, API server on loopback, one replica) are
//! those of `tests/helm_install.rs`, given in the HelmRelease.

mod esc_fixture;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use esc_fixture::{SshSecrets, cluster_spec};
use esc_operator::api::{EscBackup, EscCluster, EscRestore, EscRestoreStatus, RunPhase};
use esc_testbed::cluster::TestCluster;
use esc_testbed::flux::Flux;
use esc_testbed::helm::Helm;
use esc_testbed::operator_image::OperatorImage;
use esc_testbed::s3::{S3Kind, S3Server};
use esc_testbed::sshd::{SimEsc, SimSpec};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use serde_json::{Value, json};

/// `git` with no system or user configuration of this machine.
fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .args([
            "-c",
            "user.name=esc-tests",
            "-c",
            "user.email=tests@esc-operator.invalid",
        ])
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// `kubectl apply --server-side` of `objects`.
fn apply(cluster: &TestCluster, dir: &Path, objects: &[Value]) -> Result<()> {
    let file = dir.join("apply.json");
    std::fs::write(
        &file,
        serde_json::to_vec(&json!({ "apiVersion": "v1", "kind": "List", "items": objects }))?,
    )?;
    Helm::run(
        cluster
            .kubectl()
            .args(["apply", "--server-side", "-f"])
            .arg(&file),
    )
    .map(drop)
}

fn yaml_doc(value: &impl serde::Serialize) -> Result<String> {
    Ok(format!("---\n{}", serde_norway::to_string(value)?))
}

/// Writes the fleet (Secrets and the EscCluster, probed every `probe`) into `work/fleet`.
fn write_fleet(work: &Path, esc: &SimEsc, probe: &str) -> Result<()> {
    let secrets = SshSecrets {
        credentials: "esc-ssh".into(),
        known_hosts: "esc-known-hosts".into(),
    };
    let node = &esc.nodes()[0];
    let known_hosts: String = esc
        .nodes()
        .iter()
        .map(|n| n.known_hosts_line() + "\n")
        .collect();
    let mut cluster = serde_json::to_value(EscCluster::new("esc", cluster_spec(esc, &secrets)))?;
    cluster["spec"]["probeInterval"] = json!(probe);
    if let Some(object) = cluster.as_object_mut() {
        object.remove("status");
    }
    let docs = [
        yaml_doc(&json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": { "name": "esc-ssh" },
            "stringData": { "ssh-privatekey": node.private_key_pem()? }
        }))?,
        yaml_doc(&json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": { "name": "esc-known-hosts" },
            "stringData": { "known_hosts": known_hosts }
        }))?,
        yaml_doc(&cluster)?,
    ];
    std::fs::create_dir_all(work.join("fleet"))?;
    std::fs::write(work.join("fleet/fleet.yaml"), docs.concat())?;
    Ok(())
}

/// The run and state directories "on the ESC nodes" (the simulated nodes share this machine's
/// file system), writable by their SSH user like `/var/tmp`; removed on drop.
struct NodeDirs {
    run: tempfile::TempDir,
    state: tempfile::TempDir,
}

impl NodeDirs {
    fn new() -> Result<NodeDirs> {
        let dir = || -> Result<tempfile::TempDir> {
            let d = tempfile::Builder::new()
                .prefix("esc-operator-gitops-")
                .tempdir_in("/var/tmp")?;
            std::fs::set_permissions(
                d.path(),
                std::os::unix::fs::PermissionsExt::from_mode(0o1777),
            )?;
            Ok(d)
        };
        Ok(NodeDirs {
            run: dir()?,
            state: dir()?,
        })
    }
}

/// Writes `work/fleet/backup.yaml`: the S3 credentials and an EscBackup of the cluster to
/// `s3`'s bucket `backups`, kept when the EscBackup is deleted (`deletionPolicy: Retain`).
fn write_backup(work: &Path, s3: &S3Server) -> Result<()> {
    let docs = [
        yaml_doc(&json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": { "name": "esc-backup-s3" },
            "stringData": {
                "AWS_ACCESS_KEY_ID": s3.access_key(),
                "AWS_SECRET_ACCESS_KEY": s3.secret_key()
            }
        }))?,
        yaml_doc(&json!({
            "apiVersion": "escoperator.dev/v1alpha1", "kind": "EscBackup",
            "metadata": { "name": "nightly" },
            "spec": {
                "clusterRef": { "name": "esc" },
                "target": { "s3": {
                    "bucket": "backups",
                    "endpoint": s3.endpoint(),
                    "forcePathStyle": true,
                    "credentialsSecretRef": { "name": "esc-backup-s3" }
                }},
                "deletionPolicy": "Retain"
            }
        }))?,
    ];
    std::fs::write(work.join("fleet/backup.yaml"), docs.concat())?;
    Ok(())
}

/// Writes `work/fleet/restore.yaml`: the S3 credentials and an EscRestore of `key` (whose
/// checksum is `sha256`) from `s3`'s bucket `backups` into the cluster.
fn write_restore(work: &Path, s3: &S3Server, key: &str, sha256: &str) -> Result<()> {
    let docs = [
        yaml_doc(&json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": { "name": "esc-restore-s3" },
            "stringData": {
                "AWS_ACCESS_KEY_ID": s3.access_key(),
                "AWS_SECRET_ACCESS_KEY": s3.secret_key()
            }
        }))?,
        yaml_doc(&json!({
            "apiVersion": "escoperator.dev/v1alpha1", "kind": "EscRestore",
            "metadata": { "name": "rollback" },
            "spec": {
                "clusterRef": { "name": "esc" },
                "source": {
                    "sha256": sha256,
                    "s3": {
                        "bucket": "backups",
                        "key": key,
                        "endpoint": s3.endpoint(),
                        "forcePathStyle": true,
                        "credentialsSecretRef": { "name": "esc-restore-s3" }
                    }
                }
            }
        }))?,
    ];
    std::fs::write(work.join("fleet/restore.yaml"), docs.concat())?;
    Ok(())
}

/// Waits until the EscRestore `name` has ended (Succeeded or Failed); returns its status.
async fn restore_ended(api: &Api<EscRestore>, name: &str) -> Result<EscRestoreStatus> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(restore) = api.get_opt(name).await? {
            let status = restore.status.unwrap_or_default();
            if matches!(
                status.run.phase,
                Some(RunPhase::Succeeded | RunPhase::Failed)
            ) {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("EscRestore {name} did not end: {status:?}");
            }
        } else if Instant::now() > deadline {
            bail!("no EscRestore {name}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn condition<'a>(obj: &'a DynamicObject, t: &str) -> Option<&'a Value> {
    obj.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == t)
}

/// Polls the Flux object `name` until `reached` says so; returns it. Past `timeout`, fails with
/// `what`, the object's status and `context`.
async fn wait_for_flux(
    api: &Api<DynamicObject>,
    name: &str,
    what: &str,
    timeout: Duration,
    context: impl Fn() -> String,
    reached: impl Fn(&DynamicObject) -> bool,
) -> Result<DynamicObject> {
    let deadline = Instant::now() + timeout;
    loop {
        let obj = api.get(name).await?;
        if reached(&obj) {
            return Ok(obj);
        }
        if Instant::now() > deadline {
            bail!(
                "{name}: {what} not within {timeout:?}: {}\n{}",
                serde_json::to_string_pretty(&obj.data["status"])?,
                context()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn revision_ends_with(obj: &DynamicObject, field: &str, revision: &str) -> bool {
    obj.data["status"][field]
        .as_str()
        .is_some_and(|r| r.ends_with(revision))
}

/// Waits until the Flux object is Ready=True and (if given) at `revision`; returns it.
async fn wait_ready(
    api: &Api<DynamicObject>,
    name: &str,
    revision: Option<&str>,
    timeout: Duration,
    context: impl Fn() -> String,
) -> Result<DynamicObject> {
    let what = format!("Ready at {revision:?}");
    wait_for_flux(api, name, &what, timeout, context, |obj| {
        condition(obj, "Ready").is_some_and(|c| c["status"] == "True")
            && revision.is_none_or(|r| revision_ends_with(obj, "lastAppliedRevision", r))
    })
    .await
}

/// Waits until the Kustomization's health check failed at `revision`; returns it. Gives up at
/// the Kustomization's own timeout (3 min), so a check that only times out fails the test.
async fn wait_health_failed(
    api: &Api<DynamicObject>,
    name: &str,
    revision: &str,
    context: impl Fn() -> String,
) -> Result<DynamicObject> {
    let what = format!("a failed health check at {revision}");
    wait_for_flux(api, name, &what, Duration::from_secs(180), context, |obj| {
        condition(obj, "Ready")
            .is_some_and(|c| c["status"] == "False" && c["reason"] == "HealthCheckFailed")
            && revision_ends_with(obj, "lastAttemptedRevision", revision)
    })
    .await
}

/// Writes by anyone but a ServiceAccount (so: by Flux, which runs as the cluster's admin) to
/// the fleet's Secrets and EscClusters (their spec, not status) since `since`; not the
/// server-side dry runs Flux computes its diff with (they change nothing).
fn fleet_writes(cluster: &TestCluster, ns: &str, since: SystemTime) -> Result<Vec<String>> {
    Ok(cluster
        .audit_events_since(since)?
        .into_iter()
        .filter(|e| e.namespace.as_deref() == Some(ns))
        .filter(|e| !e.user.starts_with("system:serviceaccount:"))
        .filter(|e| e.subresource.is_none() && !e.dry_run)
        .filter(|e| e.resource == "escclusters" || e.resource == "secrets")
        .map(|e| e.describe())
        .collect())
}

fn flux_api(
    client: &kube::Client,
    ns: &str,
    group: &str,
    version: &str,
    kind: &str,
) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    Api::namespaced_with(client.clone(), ns, &resource)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flux_installs_the_operator_from_git_and_waits_for_the_esc_cluster() -> Result<()> {
    let started = Instant::now();
    let cluster = TestCluster::shared();
    let image = OperatorImage::shared();
    image.import_into(cluster)?;
    let flux = Flux::start(cluster).await?;
    eprintln!("flux controllers ready after {:?}", started.elapsed());
    let client = cluster.client();
    let flux_ns = cluster.namespace("flux").await?;
    let ops = cluster.namespace("gitops-ops").await?;
    let fleet = cluster.namespace("gitops-fleet").await?;

    // The ESC the fleet names, and the Git server: another simulated node's sshd.
    let esc = SimEsc::start(SimSpec::standalone())?;
    let git_host = SimEsc::start(SimSpec::standalone())?;
    let server = &git_host.nodes()[0];
    // The repository where the SSH user (not root) can read it.
    let repo_dir = tempfile::tempdir()?;
    std::fs::set_permissions(
        repo_dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let repo = repo_dir.path().join("fleet.git");
    let work_dir = tempfile::tempdir()?;
    let work = work_dir.path();
    git(work, &["init", "-q", "-b", "main"])?;
    std::fs::create_dir(work.join("charts"))?;
    let copied = Command::new("cp")
        .args(["-r"])
        .arg(Helm::chart_dir())
        .arg(work.join("charts/esc-operator"))
        .status()?;
    assert!(copied.success());
    write_fleet(work, &esc, "5s")?;
    git(work, &["add", "-A"])?;
    git(work, &["commit", "-q", "-m", "the operator and a cluster"])?;
    let first = git(work, &["rev-parse", "HEAD"])?;
    git(
        work,
        &["clone", "-q", "--bare", ".", repo.to_str().unwrap()],
    )?;
    // The SSH user's own repository: git refuses one of another owner ("dubious ownership").
    let owner = server.key_user().to_owned();
    let hand_over = || -> Result<()> {
        let status = Command::new("chown")
            .args(["-R", &format!("{owner}:")])
            .arg(&repo)
            .status()?;
        anyhow::ensure!(status.success(), "chown the repository");
        Ok(())
    };
    hand_over()?;
    // Pushes the work tree's commits. The repository belongs to the SSH user: take it back to
    // push (git refuses another owner's repository; a fetch in between fails and Flux retries
    // it), then hand it over again.
    let publish = || -> Result<()> {
        let status = Command::new("chown")
            .args(["-R", "root:"])
            .arg(&repo)
            .status()?;
        anyhow::ensure!(status.success(), "chown the repository");
        git(work, &["push", "-q", repo.to_str().unwrap(), "main"])?;
        hand_over()
    };

    let url = format!(
        "ssh://{}@{}:{}{}",
        server.key_user(),
        server.address(),
        server.port(),
        repo.display()
    );
    let node_dirs = NodeDirs::new()?;
    let (repository, tag) = image.name.rsplit_once(':').context("image tag")?;
    let port = esc_testbed::host_procs::free_port(std::net::Ipv4Addr::LOCALHOST)?;
    let env: Vec<Value> = cluster
        .in_cluster_env()
        .into_iter()
        .map(|e| json!({ "name": e.name, "value": e.value }))
        .collect();
    let values = json!({
        "fullnameOverride": "esc-operator",
        "image": { "repository": repository, "tag": tag, "pullPolicy": "Never" },
        "replicaCount": 1,
        "updateStrategy": { "type": "RollingUpdate", "rollingUpdate": { "maxSurge": 0, "maxUnavailable": 1 } },
        "hostNetwork": true,
        "http": { "port": port, "bindAddress": "127.0.0.1" },
        "extraEnv": env,
        "watchNamespaces": [fleet.name()],
        "logFormat": "text",
        // The mover reaches the simulated ESC and MinIO on loopback.
        "mover": { "hostNetwork": true },
        // The simulated nodes share this machine's file system: directories of this test.
        "operator": {
            "runDirectory": node_dirs.run.path(),
            "stateDirectory": node_dirs.state.path(),
        },
    });
    let source = json!({ "kind": "GitRepository", "name": "fleet", "namespace": flux_ns.name() });
    apply(
        cluster,
        flux.dir(),
        &[
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": { "name": "git-ssh", "namespace": flux_ns.name() },
                "stringData": {
                    "identity": server.private_key_pem()?,
                    "known_hosts": server.known_hosts_line() + "\n",
                }
            }),
            json!({
                "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
                "metadata": { "name": "fleet", "namespace": flux_ns.name() },
                "spec": {
                    "url": url, "interval": "5s", "timeout": "30s",
                    "ref": { "branch": "main" },
                    "secretRef": { "name": "git-ssh" }
                }
            }),
            json!({
                "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
                "metadata": { "name": "esc-operator", "namespace": ops.name() },
                "spec": {
                    "interval": "1m",
                    "timeout": "3m",
                    "chart": { "spec": {
                        "chart": "./charts/esc-operator",
                        "reconcileStrategy": "Revision",
                        "sourceRef": source
                    }},
                    "install": { "crds": "Create" },
                    "upgrade": { "crds": "CreateReplace" },
                    "values": values
                }
            }),
            json!({
                "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                "metadata": { "name": "fleet", "namespace": flux_ns.name() },
                "spec": {
                    // Long enough for a backup and a restore to run to their end; a stalled
                    // run must fail the health check long before it.
                    "interval": "1m", "retryInterval": "5s", "timeout": "3m",
                    "path": "./fleet", "prune": true, "wait": true,
                    "targetNamespace": fleet.name(),
                    "sourceRef": { "kind": "GitRepository", "name": "fleet" }
                }
            }),
        ],
    )?;
    let logs = || {
        [
            "source-controller",
            "kustomize-controller",
            "helm-controller",
        ]
        .iter()
        .map(|c| format!("--- {c}\n{}", flux.log_tail(c, 15)))
        .collect::<Vec<_>>()
        .join("\n")
    };
    let releases = flux_api(
        &client,
        ops.name(),
        "helm.toolkit.fluxcd.io",
        "v2",
        "HelmRelease",
    );
    wait_ready(
        &releases,
        "esc-operator",
        None,
        Duration::from_secs(240),
        logs,
    )
    .await?;
    eprintln!("HelmRelease Ready after {:?}", started.elapsed());
    let kustomizations = flux_api(
        &client,
        flux_ns.name(),
        "kustomize.toolkit.fluxcd.io",
        "v1",
        "Kustomization",
    );
    wait_ready(
        &kustomizations,
        "fleet",
        Some(&first),
        Duration::from_secs(180),
        logs,
    )
    .await?;
    eprintln!(
        "Kustomization Ready at {first} after {:?}",
        started.elapsed()
    );
    // Ready only because the EscCluster is: Ready=True at its current generation.
    let clusters: Api<EscCluster> = Api::namespaced(client.clone(), fleet.name());
    let esc_cluster = clusters.get("esc").await?;
    let status = esc_cluster.status.clone().unwrap_or_default();
    assert!(esc_fixture::ready(&status), "{status:?}");
    assert_eq!(status.observed_generation, esc_cluster.metadata.generation);

    // A commit that changes the spec: applied, and waited for at the new generation.
    let before_change = SystemTime::now();
    write_fleet(work, &esc, "7s")?;
    git(work, &["commit", "-q", "-am", "probe every 7 s"])?;
    let second = git(work, &["rev-parse", "HEAD"])?;
    publish()?;
    wait_ready(
        &kustomizations,
        "fleet",
        Some(&second),
        Duration::from_secs(120),
        logs,
    )
    .await?;
    let esc_cluster = clusters.get("esc").await?;
    let status = esc_cluster.status.clone().unwrap_or_default();
    assert_eq!(esc_cluster.metadata.generation, Some(2));
    assert_eq!(status.observed_generation, Some(2), "{status:?}");
    assert!(esc_fixture::ready(&status));
    // The change reached the API server as writes to the EscCluster (so the audit check
    // below can see Flux's writes).
    let change = fleet_writes(cluster, fleet.name(), before_change)?;
    assert!(
        change.iter().any(|e| e.contains("escclusters")),
        "no write of the spec change in the audit log: {change:?}"
    );

    // Applying the same revision again writes nothing: server-side apply, and nothing the API
    // server defaults fights the Git copy. A reconcile is requested and waited for.
    let before_reapply = SystemTime::now();
    let requested = format!("{:?}", before_reapply);
    kustomizations
        .patch(
            "fleet",
            &PatchParams::default(),
            &Patch::Merge(&json!({ "metadata": { "annotations": {
                "reconcile.fluxcd.io/requestedAt": requested
            }}})),
        )
        .await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let k = kustomizations.get("fleet").await?;
        let handled =
            k.data["status"]["lastHandledReconcileAt"].as_str() == Some(requested.as_str());
        if handled && condition(&k, "Ready").is_some_and(|c| c["status"] == "True") {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the requested reconcile was not handled: {}",
                k.data["status"]
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let drift = fleet_writes(cluster, fleet.name(), before_reapply)?;
    assert!(
        drift.is_empty(),
        "re-applying the same revision wrote: {drift:?}"
    );
    eprintln!(
        "second commit applied and Ready after {:?}",
        started.elapsed()
    );

    // An EscBackup to MinIO, added in Git; then deleted in Git: pruned, and with
    // `deletionPolicy: Retain` its artifact stays in the bucket.
    let s3 = S3Server::start(S3Kind::Minio).await?;
    s3.create_bucket("backups").await?;
    write_backup(work, &s3)?;
    git(work, &["add", "-A"])?;
    git(work, &["commit", "-q", "-m", "a backup to MinIO"])?;
    let third = git(work, &["rev-parse", "HEAD"])?;
    publish()?;
    wait_ready(
        &kustomizations,
        "fleet",
        Some(&third),
        Duration::from_secs(120),
        logs,
    )
    .await?;
    // `wait: true` waited for the backup itself (kstatus: Ready only once it succeeded).
    let backups: Api<EscBackup> = Api::namespaced(client.clone(), fleet.name());
    let status = backups.get("nightly").await?.status.unwrap_or_default();
    assert_eq!(
        status.phase,
        Some(RunPhase::Succeeded),
        "the Kustomization was Ready before the backup ended: {status:?}"
    );
    let artifact = status.artifact.context("no artifact")?;
    let key = artifact
        .uri
        .strip_prefix("s3://backups/")
        .with_context(|| format!("artifact {}", artifact.uri))?
        .to_owned();
    assert!(s3.head_object("backups", &key).await?.is_some());
    eprintln!(
        "backup {} stored after {:?}",
        artifact.uri,
        started.elapsed()
    );
    std::fs::remove_file(work.join("fleet/backup.yaml"))?;
    git(work, &["commit", "-q", "-am", "no more backup"])?;
    let fourth = git(work, &["rev-parse", "HEAD"])?;
    publish()?;
    wait_ready(
        &kustomizations,
        "fleet",
        Some(&fourth),
        Duration::from_secs(120),
        logs,
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while backups.get_opt("nightly").await?.is_some() {
        if Instant::now() > deadline {
            bail!("the EscBackup deleted in Git was not pruned");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        s3.head_object("backups", &key).await?.is_some(),
        "deletionPolicy Retain, but the artifact is gone"
    );
    eprintln!("pruned, artifact kept, after {:?}", started.elapsed());

    // A restore from that artifact, added in Git, runs once. Git then prunes it and re-adds
    // it: the re-created EscRestore is refused (`AlreadyRestored`, from the restore history on
    // the ESC node itself) instead of restoring the database a second time.
    write_restore(work, &s3, &key, &artifact.sha256)?;
    git(work, &["add", "-A"])?;
    git(work, &["commit", "-q", "-m", "roll back"])?;
    let fifth = git(work, &["rev-parse", "HEAD"])?;
    publish()?;
    wait_ready(
        &kustomizations,
        "fleet",
        Some(&fifth),
        Duration::from_secs(120),
        logs,
    )
    .await?;
    let restores: Api<EscRestore> = Api::namespaced(client.clone(), fleet.name());
    let first_run = restores
        .get("rollback")
        .await?
        .status
        .context("no status")?;
    assert_eq!(
        first_run.run.phase,
        Some(RunPhase::Succeeded),
        "the Kustomization was Ready before the restore ended: {:?}",
        first_run.run
    );
    eprintln!("restored after {:?}", started.elapsed());
    std::fs::rename(
        work.join("fleet/restore.yaml"),
        work.join("restore.yaml.kept"),
    )?;
    git(work, &["commit", "-q", "-am", "the rollback is done"])?;
    let sixth = git(work, &["rev-parse", "HEAD"])?;
    publish()?;
    wait_ready(
        &kustomizations,
        "fleet",
        Some(&sixth),
        Duration::from_secs(120),
        logs,
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while restores.get_opt("rollback").await?.is_some() {
        if Instant::now() > deadline {
            bail!("the EscRestore deleted in Git was not pruned");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    std::fs::rename(
        work.join("restore.yaml.kept"),
        work.join("fleet/restore.yaml"),
    )?;
    git(work, &["add", "-A"])?;
    git(
        work,
        &["commit", "-q", "-m", "the rollback again (a revert)"],
    )?;
    let seventh = git(work, &["rev-parse", "HEAD"])?;
    publish()?;
    let published = Instant::now();
    // Flux applies it; the operator refuses it.
    let deadline = Instant::now() + Duration::from_secs(120);
    while restores.get_opt("rollback").await?.is_none() {
        if Instant::now() > deadline {
            bail!("the re-added EscRestore was not applied: {}", logs());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let again = restore_ended(&restores, "rollback").await?;
    assert_eq!(again.run.phase, Some(RunPhase::Failed), "{again:?}");
    assert_eq!(
        again.run.failure.as_ref().map(|f| f.reason.as_str()),
        Some("AlreadyRestored"),
        "{again:?}"
    );
    let stalled = again
        .run
        .conditions
        .iter()
        .find(|c| c.type_ == "Stalled")
        .map(|c| (c.status.as_str(), c.reason.as_str()));
    assert_eq!(stalled, Some(("True", "AlreadyRestored")), "{again:?}");
    eprintln!(
        "re-created restore refused at {seventh} after {:?}",
        started.elapsed()
    );
    // The refusal is terminal (Stalled): the pipeline fails now, not at its 3-minute timeout.
    let failed = wait_health_failed(&kustomizations, "fleet", &seventh, logs).await?;
    let message = condition(&failed, "Ready").context("no Ready")?["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.contains("rollback"), "{message}");
    let took = published.elapsed();
    assert!(
        took < Duration::from_secs(120),
        "the health check failed only after {took:?}: {message}"
    );
    eprintln!("Kustomization failed fast, {took:?} after the commit: {message}");
    Ok(())
}
