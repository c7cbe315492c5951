//! The main job: a full backup and restore of a simulated ESC HA pair, on the test bed, the way
//! a user runs one. Shared by the `demo` example (interactive) and `tests/demo.rs` (which checks
//! the report's claims against the simulator's journal and the S3 server).
//!
//! What it brings up, all on loopback: the test bed's Kubernetes control plane and node, an HA
//! pair of simulated ESC nodes behind OpenSSH sshd, MinIO; then it installs the operator with
//! the Helm chart (leader election on, pods from the operator image on the node) and applies
//! the resources as YAML with `kubectl apply --server-side`: the Secrets, an EscCluster, an
//! EscBackup to MinIO, then an EscRestore from it. Every step is printed as it happens.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use esc_operator::api::{EscBackup, EscCluster, EscRestore, RunPhase};
use esc_testbed::cluster::{ClusterOptions, TestCluster};
use esc_testbed::helm::{Helm, HelmMajor};
use esc_testbed::operator_image::OperatorImage;
use esc_testbed::s3::{S3Kind, S3Server};
use esc_testbed::sshd::{Event, SimEsc, SimSpec, What};
use kube::api::Api;
use serde_json::json;

/// What the demo found, for the closing report (and for the test that checks it).
#[derive(Debug)]
pub struct Report {
    pub namespace: String,
    pub artifact_uri: String,
    /// The object's key in the bucket.
    pub key: String,
    pub artifact_size: u64,
    pub artifact_sha256: String,
    /// The SHA-256 of the object as read back from MinIO.
    pub sha256_from_s3: String,
    /// escadm commands that change something, in journal order (`node:word`).
    pub journal: Vec<String>,
    pub failovers: usize,
    /// Maintenance windows the operator opened (op_mode set maintenance).
    pub maintenance_windows: usize,
    pub standby_stopped_before_master: bool,
    pub database_restored: bool,
    pub backup_seconds: f64,
    pub restore_seconds: f64,
    pub total_seconds: f64,
}

/// A running demo: what it started, stopped when dropped (the test bed also cleans up after
/// a killed process).
pub struct Demo {
    pub cluster: TestCluster,
    pub sim: SimEsc,
    pub s3: Option<S3Server>,
    pub namespace: String,
    pub dir: tempfile::TempDir,
    /// The operator's /metrics, once installed.
    pub metrics_url: String,
    started: Instant,
}

pub const BUCKET: &str = "esc-backups";
const RELEASE: &str = "esc-operator";

impl Demo {
    fn say(&self, text: impl AsRef<str>) {
        say(self.started, text);
    }

    pub fn kubeconfig(&self) -> &Path {
        self.cluster.kubeconfig_path()
    }
}

fn say(started: Instant, text: impl AsRef<str>) {
    eprintln!(
        "[{:>6.1}s] {}",
        started.elapsed().as_secs_f64(),
        text.as_ref()
    );
}

/// Brings everything up and installs the operator.
pub async fn start() -> Result<Demo> {
    let started = Instant::now();
    say(
        started,
        "building (first run only: Kubernetes, MinIO and the operator image are built here and \
         cached — tens of minutes on a small machine; later runs take seconds) and starting the \
         control plane and node",
    );
    let cluster = TestCluster::start(ClusterOptions::with_node())?;
    say(started, "Kubernetes control plane and node Ready");
    let image = OperatorImage::shared();
    image.import_into(&cluster)?;
    say(
        started,
        format!("operator image {} on the node", image.name),
    );
    let sim = SimEsc::start(SimSpec::ha())?;
    sim.share_first_client_key()?;
    for n in sim.nodes() {
        say(
            started,
            format!(
                "simulated ESC node {} behind sshd on {}",
                n.name(),
                n.socket_addr()
            ),
        );
    }
    let s3 = S3Server::start(S3Kind::Minio).await?;
    s3.create_bucket(BUCKET).await?;
    say(
        started,
        format!("MinIO on {} with bucket {BUCKET}", s3.endpoint()),
    );
    let ns = cluster.namespace("demo").await?;
    let namespace = ns.name().to_owned();
    // The namespace lives as long as the cluster: the demo leaves it for `--keep`.
    std::mem::forget(ns);
    let dir = tempfile::Builder::new().prefix("esc-demo-").tempdir()?;
    let mut demo = Demo {
        cluster,
        sim,
        s3: Some(s3),
        namespace,
        dir,
        metrics_url: String::new(),
        started,
    };
    demo.metrics_url = demo.install_operator(image).await?;
    Ok(demo)
}

impl Demo {
    /// `helm upgrade --install` of charts/esc-operator, with what the test bed needs (host
    /// network, the API server on loopback) and leader election on.
    /// Returns the operator's metrics URL.
    async fn install_operator(&self, image: &OperatorImage) -> Result<String> {
        let helm = Helm::new(HelmMajor::V4)?;
        let (repository, tag) = image
            .name
            .rsplit_once(':')
            .context("image name without a tag")?;
        let port = esc_testbed::host_procs::free_port(std::net::Ipv4Addr::LOCALHOST)?;
        // The nodes' directories: writable by the simulated nodes' SSH users.
        let run_dir = self.dir.path().join("run");
        let state_dir = self.dir.path().join("state");
        for d in [&run_dir, &state_dir] {
            std::fs::create_dir_all(d)?;
            std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o1777))?;
        }
        std::fs::set_permissions(
            self.dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        let env: Vec<serde_json::Value> = self
            .cluster
            .in_cluster_env()
            .into_iter()
            .map(|e| json!({ "name": e.name, "value": e.value }))
            .collect();
        let values = json!({
            "fullnameOverride": "esc-operator",
            "image": { "repository": repository, "tag": tag, "pullPolicy": "Never" },
            "replicaCount": 1,
            "leaderElection": { "enabled": true },
            "updateStrategy": { "type": "RollingUpdate",
                "rollingUpdate": { "maxSurge": 0, "maxUnavailable": 1 } },
            "hostNetwork": true,
            "http": { "port": port, "bindAddress": "127.0.0.1" },
            "extraEnv": env,
            "watchNamespaces": [self.namespace],
            "logFormat": "text",
            "operator": {
                "runDirectory": run_dir.display().to_string(),
                "stateDirectory": state_dir.display().to_string(),
            },
            "mover": { "hostNetwork": true },
        });
        let file = self.dir.path().join("values.yaml");
        std::fs::write(&file, serde_json::to_vec_pretty(&values)?)?;
        self.say(format!(
            "helm upgrade --install {RELEASE} charts/esc-operator -n {} -f {}",
            self.namespace,
            file.display()
        ));
        let mut cmd = helm.on(&self.cluster);
        cmd.args(["upgrade", "--install", RELEASE])
            .arg(Helm::chart_dir())
            .args(["-n", &self.namespace, "-f"])
            .arg(&file)
            .args(["--wait", "--timeout", "3m"]);
        Helm::run(&mut cmd)?;
        let metrics = format!("http://127.0.0.1:{port}/metrics");
        self.say(format!(
            "operator installed and Ready (leader election on; metrics on {metrics})"
        ));
        Ok(metrics)
    }

    /// Writes the user's manifests: the Secrets, the EscCluster, the EscBackup.
    fn manifests(&self) -> Result<(PathBuf, PathBuf)> {
        let s3 = self.s3.as_ref().context("no S3")?;
        let a = &self.sim.nodes()[0];
        let key = a.private_key_pem()?;
        let known: String = self
            .sim
            .nodes()
            .iter()
            .map(|n| n.known_hosts_line() + "\n")
            .collect();
        let nodes: Vec<serde_json::Value> = self
            .sim
            .nodes()
            .iter()
            .map(|n| json!({"name": n.name(), "host": n.address().to_string(), "port": n.port()}))
            .collect();
        let docs = vec![
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "esc-ssh"}, "type": "kubernetes.io/ssh-auth",
                   "stringData": {"ssh-privatekey": key}}),
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "esc-known-hosts"},
                   "stringData": {"known_hosts": known}}),
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "s3-credentials"},
                   "stringData": {"AWS_ACCESS_KEY_ID": s3.access_key(),
                                  "AWS_SECRET_ACCESS_KEY": s3.secret_key()}}),
            json!({"apiVersion": "escoperator.dev/v1alpha1", "kind": "EscCluster",
                   "metadata": {"name": "esc"},
                   "spec": {"topology": "HA", "nodes": nodes, "probeInterval": "5s",
                            "ssh": {"user": a.key_user(),
                                    "credentialsSecretRef": {"name": "esc-ssh"},
                                    "knownHostsSecretRef": {"name": "esc-known-hosts"}}}}),
        ];
        let backup = json!({"apiVersion": "escoperator.dev/v1alpha1", "kind": "EscBackup",
            "metadata": {"name": "esc-nightly"},
            "spec": {"clusterRef": {"name": "esc"},
                     "target": {"s3": {"bucket": BUCKET, "endpoint": s3.endpoint(),
                                       "forcePathStyle": true, "prefix": "demo/",
                                       "credentialsSecretRef": {"name": "s3-credentials"}}}}});
        let setup = self.dir.path().join("esc.yaml");
        let backup_file = self.dir.path().join("escbackup.yaml");
        write_yaml(&setup, &docs)?;
        write_yaml(&backup_file, &[backup])?;
        Ok((setup, backup_file))
    }

    fn kubectl_apply(&self, file: &Path) -> Result<()> {
        self.say(format!(
            "kubectl apply --server-side -n {} -f {}",
            self.namespace,
            file.display()
        ));
        let out = self
            .cluster
            .kubectl()
            .args(["apply", "--server-side", "-n", &self.namespace, "-f"])
            .arg(file)
            .output()?;
        ensure!(
            out.status.success(),
            "kubectl apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// The whole main job: backup, a change, restore, the report.
    pub async fn run(&mut self) -> Result<Report> {
        let client = self.cluster.client();
        let (setup, backup_file) = self.manifests()?;
        self.kubectl_apply(&setup)?;
        let clusters: Api<EscCluster> = Api::namespaced(client.clone(), &self.namespace);
        self.wait_cluster_ready(&clusters).await?;
        let master = self.sim.node("esc-a");
        let taken = master.database()?;

        let t = Instant::now();
        self.kubectl_apply(&backup_file)?;
        let backups: Api<EscBackup> = Api::namespaced(client.clone(), &self.namespace);
        let b = self
            .follow(&backups, "esc-nightly", &clusters, |b: &EscBackup| {
                let s = b.status.clone().unwrap_or_default();
                View {
                    phase: s.phase,
                    step: s.steps.last().map(|st| format!("{:?}", st.name)),
                    message: s.message.clone(),
                    progress: s
                        .progress
                        .map(|p| (p.bytes, p.total_bytes, p.bytes_per_second)),
                }
            })
            .await?;
        let backup_seconds = t.elapsed().as_secs_f64();
        let artifact = b
            .status
            .and_then(|s| s.artifact)
            .context("the backup recorded no artifact")?;
        self.say(format!(
            "backup stored: {} ({} bytes, sha256 {})",
            artifact.uri, artifact.size, artifact.sha256
        ));

        // Work done after the backup: what the restore takes back.
        master.set_database_content(json!({"deployments": ["made-after-the-backup"]}))?;
        self.say("changed the database on esc-a after the backup (the restore takes it back)");
        let restore_file = self.dir.path().join("escrestore.yaml");
        write_yaml(
            &restore_file,
            &[
                json!({"apiVersion": "escoperator.dev/v1alpha1", "kind": "EscRestore",
                "metadata": {"name": "esc-rollback"},
                "spec": {"clusterRef": {"name": "esc"},
                         "source": {"backupRef": {"name": "esc-nightly"}}}}),
            ],
        )?;
        let t = Instant::now();
        self.kubectl_apply(&restore_file)?;
        let restores: Api<EscRestore> = Api::namespaced(client.clone(), &self.namespace);
        self.follow(&restores, "esc-rollback", &clusters, |r: &EscRestore| {
            let s = r.status.clone().unwrap_or_default();
            View {
                phase: s.run.phase,
                step: s.run.steps.last().map(|st| format!("{:?}", st.name)),
                message: s.run.message.clone(),
                progress: s
                    .run
                    .progress
                    .map(|p| (p.bytes, p.total_bytes, p.bytes_per_second)),
            }
        })
        .await?;
        let restore_seconds = t.elapsed().as_secs_f64();
        self.wait_cluster_ready(&clusters).await?;

        // The evidence.
        let s3 = self.s3.as_ref().context("no S3")?;
        let key = artifact
            .uri
            .strip_prefix(&format!("s3://{BUCKET}/"))
            .context("artifact not in the bucket")?
            .to_owned();
        let bytes = s3.get_object(BUCKET, &key).await?;
        let sha256_from_s3 = hex_sha256(&bytes);
        let journal = self.journal_words()?;
        let position = |w: &str| journal.iter().position(|x| x == w);
        let failovers = self
            .sim
            .journal()?
            .events()
            .filter(|(_, ev)| matches!(ev, Event::Failover { .. }))
            .count();
        Ok(Report {
            namespace: self.namespace.clone(),
            artifact_uri: artifact.uri.clone(),
            key,
            artifact_size: artifact.size.max(0) as u64,
            artifact_sha256: artifact.sha256.clone(),
            sha256_from_s3,
            maintenance_windows: journal
                .iter()
                .filter(|w| w.ends_with(":set-maintenance"))
                .count(),
            standby_stopped_before_master: matches!(
                (position("esc-b:stop"), position("esc-a:stop")),
                (Some(b), Some(a)) if b < a
            ),
            journal,
            failovers,
            database_restored: master.database()? == taken
                && self.sim.node("esc-b").database()? == taken,
            backup_seconds,
            restore_seconds,
            total_seconds: self.started.elapsed().as_secs_f64(),
        })
    }

    async fn wait_cluster_ready(&self, clusters: &Api<EscCluster>) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut last = String::new();
        loop {
            if let Some(c) = clusters.get_opt("esc").await? {
                let s = c.status.clone().unwrap_or_default();
                let line = cluster_line(&c);
                if line != last {
                    self.say(&line);
                    last = line;
                }
                let ready = s
                    .conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                if ready && s.observed_generation == c.metadata.generation {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("EscCluster esc not Ready within 120 s: {last}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Prints the run's steps, its transfer progress and the cluster's mode and roles as they
    /// change, until the run ends; a failed run is an error.
    async fn follow<K>(
        &self,
        api: &Api<K>,
        name: &str,
        clusters: &Api<EscCluster>,
        view: impl Fn(&K) -> View,
    ) -> Result<K>
    where
        K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let deadline = Instant::now() + Duration::from_secs(600);
        let (mut last_step, mut last_cluster, mut last_bar) = (None, String::new(), None);
        loop {
            let object = api.get(name).await?;
            let v = view(&object);
            if v.step.is_some() && v.step != last_step {
                self.say(format!("{name}: {}", v.step.clone().unwrap_or_default()));
                last_step = v.step.clone();
            }
            if let Some((bytes, total, rate)) = v.progress
                && Some((bytes, total)) != last_bar
            {
                self.say(format!("{name}: {}", bar(bytes, total, rate)));
                last_bar = Some((bytes, total));
            }
            if let Some(c) = clusters.get_opt("esc").await? {
                let line = cluster_line(&c);
                if line != last_cluster {
                    self.say(&line);
                    last_cluster = line;
                }
            }
            match v.phase {
                Some(RunPhase::Succeeded) => {
                    self.say(format!(
                        "{name}: Succeeded — {}",
                        v.message.unwrap_or_default()
                    ));
                    return Ok(object);
                }
                Some(RunPhase::Failed) => {
                    bail!("{name} failed: {}", v.message.unwrap_or_default())
                }
                _ => {}
            }
            if Instant::now() > deadline {
                bail!("{name} did not end within 10 minutes");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// The escadm commands that change something, as `node:word`.
    fn journal_words(&self) -> Result<Vec<String>> {
        Ok(self
            .sim
            .journal()?
            .entries()
            .iter()
            .filter_map(|e| match &e.what {
                What::Command {
                    command,
                    args,
                    exit,
                    ..
                } if *exit == 0 => {
                    let line = format!("{command} {}", args.join(" "));
                    let word = if line.starts_with("restore") {
                        "restore"
                    } else if line.starts_with("restart") {
                        "restart"
                    } else if line.starts_with("stop") {
                        "stop"
                    } else if line.starts_with("backup") {
                        "backup"
                    } else if line.starts_with("log") {
                        "log-collect"
                    } else if line.contains("op_mode") && line.contains("set") {
                        if line.contains("maintenance") {
                            "set-maintenance"
                        } else {
                            "set-operation"
                        }
                    } else {
                        return None;
                    };
                    Some(format!("{}:{word}", e.node))
                }
                _ => None,
            })
            .collect())
    }

    /// Stops MinIO now (the cluster and the simulator stop when the demo is dropped).
    pub fn stop_s3(&mut self) {
        if let Some(s3) = self.s3.take() {
            let _ = s3.stop();
        }
    }
}

pub struct View {
    pub phase: Option<RunPhase>,
    pub step: Option<String>,
    pub message: Option<String>,
    pub progress: Option<(i64, Option<i64>, Option<i64>)>,
}

fn cluster_line(c: &EscCluster) -> String {
    let s = c.status.clone().unwrap_or_default();
    let roles: Vec<String> = s
        .nodes
        .iter()
        .map(|n| format!("{} {:?}/{:?}", n.name, n.role, n.services))
        .collect();
    format!(
        "EscCluster esc: mode {:?}, {}",
        s.op_mode,
        if roles.is_empty() {
            "not probed yet".to_owned()
        } else {
            roles.join(", ")
        }
    )
}

fn bar(bytes: i64, total: Option<i64>, rate: Option<i64>) -> String {
    let rate = rate
        .map(|r| format!(" at {}/s", human(r)))
        .unwrap_or_default();
    match total.filter(|t| *t > 0) {
        Some(t) => {
            let done = ((bytes.clamp(0, t) * 30) / t) as usize;
            format!(
                "[{}{}] {} of {}{rate}",
                "#".repeat(done),
                "-".repeat(30 - done),
                human(bytes),
                human(t)
            )
        }
        None => format!("{}{rate}", human(bytes)),
    }
}

fn human(bytes: i64) -> String {
    let b = bytes.max(0) as f64;
    if b < 1024.0 {
        format!("{b} B")
    } else if b < 1024.0 * 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{:.1} MiB", b / 1024.0 / 1024.0)
    }
}

fn write_yaml(path: &Path, docs: &[serde_json::Value]) -> Result<()> {
    let mut text = String::new();
    for d in docs {
        text.push_str("---\n");
        text.push_str(&serde_norway::to_string(d)?);
    }
    std::fs::write(path, text)?;
    Ok(())
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The closing report, for a person.
pub fn render(report: &Report, kubeconfig: &Path) -> String {
    let check = |ok: bool| if ok { "ok" } else { "FAILED" };
    format!(
        "\n== esc-operator demo: report ==\n\
         artifact      {uri} (bucket key {key})\n\
         size          {size} bytes\n\
         sha256        {sha} (re-read from MinIO: {s3check})\n\
         order         {order}: standby (esc-b) stopped before master (esc-a): {stop}\n\
         failovers     {fo} ({focheck})\n\
         maintenance   {mw} windows for 2 operations ({mwcheck})\n\
         database      restored equals the backed-up one on both nodes: {db}\n\
         time          backup {b:.1} s, restore {r:.1} s, total {t:.1} s\n\
         kubeconfig    {kc}\n",
        uri = report.artifact_uri,
        key = report.key,
        size = report.artifact_size,
        sha = report.artifact_sha256,
        s3check = check(report.sha256_from_s3 == report.artifact_sha256),
        order = report.journal.join(" "),
        stop = check(report.standby_stopped_before_master),
        fo = report.failovers,
        focheck = check(report.failovers == 0),
        mw = report.maintenance_windows,
        mwcheck = check(report.maintenance_windows == 2),
        db = check(report.database_restored),
        b = report.backup_seconds,
        r = report.restore_seconds,
        t = report.total_seconds,
        kc = kubeconfig.display(),
    )
}

/// Whether every claim of the report holds.
pub fn all_good(report: &Report) -> bool {
    report.sha256_from_s3 == report.artifact_sha256
        && report.standby_stopped_before_master
        && report.failovers == 0
        && report.maintenance_windows == 2
        && report.database_restored
}
