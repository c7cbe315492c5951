//! The operator as its users run it, for the tests: `esc-operator run` as a child process whose
//! only credentials are a ServiceAccount token (TokenRequest) bound to the RBAC rules of
//! `manifests/rbac/operator.yaml`. RBAC is real from the first test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding, RoleRef, Subject};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cluster::{TestCluster, repo_root};
use crate::process::ProcessGroup;

/// The ClusterRoles of `manifests/rbac/operator.yaml`.
pub fn rbac_cluster_roles() -> Result<Vec<ClusterRole>> {
    let path = repo_root().join("manifests/rbac/operator.yaml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    let mut roles = Vec::new();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let value: serde_json::Value = serde::Deserialize::deserialize(doc)?;
        if value.get("kind").and_then(|k| k.as_str()) == Some("ClusterRole") {
            roles.push(serde_json::from_value(value)?);
        }
    }
    Ok(roles)
}

/// Creates the ServiceAccount `name` in `namespace` with the operator's RBAC: the controller
/// rules bound in each of `watched` (a RoleBinding each, so nothing outside them is readable),
/// the leader-election rules in `namespace`. Returns a kubeconfig file that authenticates with a
/// fresh token of that ServiceAccount.
pub async fn operator_identity(
    cluster: &TestCluster,
    namespace: &str,
    name: &str,
    watched: &[&str],
    dir: &Path,
) -> Result<PathBuf> {
    let client = cluster.client();
    let apply = PatchParams::apply("esc-testbed").force();
    for role in rbac_cluster_roles()? {
        let role_name = role
            .metadata
            .name
            .clone()
            .context("ClusterRole without a name")?;
        Api::<ClusterRole>::all(client.clone())
            .patch(&role_name, &apply, &Patch::Apply(&role))
            .await
            .with_context(|| format!("apply ClusterRole {role_name}"))?;
    }
    Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .patch(
            name,
            &apply,
            &Patch::Apply(&ServiceAccount {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    ..ObjectMeta::default()
                },
                ..ServiceAccount::default()
            }),
        )
        .await
        .context("apply the ServiceAccount")?;
    let mut bindings: Vec<(&str, &str)> = watched.iter().map(|ns| (*ns, "esc-operator")).collect();
    bindings.push((namespace, "esc-operator-leader-election"));
    for (ns, role) in bindings {
        let binding = RoleBinding {
            metadata: ObjectMeta {
                name: Some(format!("{role}-{name}")),
                namespace: Some(ns.to_owned()),
                ..ObjectMeta::default()
            },
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "ClusterRole".into(),
                name: role.to_owned(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: name.to_owned(),
                namespace: Some(namespace.to_owned()),
                ..Subject::default()
            }]),
        };
        Api::<RoleBinding>::namespaced(client.clone(), ns)
            .patch(&format!("{role}-{name}"), &apply, &Patch::Apply(&binding))
            .await
            .with_context(|| format!("apply RoleBinding {role}-{name} in {ns}"))?;
    }
    let token = Api::<ServiceAccount>::namespaced(client, namespace)
        .create_token_request(
            name,
            &PostParams::default(),
            &TokenRequest {
                spec: Some(TokenRequestSpec {
                    expiration_seconds: Some(3600),
                    ..TokenRequestSpec::default()
                }),
                ..TokenRequest::default()
            },
        )
        .await
        .context("TokenRequest")?
        .status
        .context("TokenRequest without status")?
        .token;
    let path = dir.join(format!("{name}.kubeconfig"));
    let ca = std::fs::read_to_string(cluster.ca_cert_path())?;
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {
            "server": cluster.api_server_url(),
            "certificate-authority-data": base64::engine::general_purpose::STANDARD.encode(ca.as_bytes()),
        }}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": name, "namespace": namespace}}],
        "current-context": "test",
    });
    std::fs::write(&path, serde_json::to_vec_pretty(&kubeconfig)?)?;
    Ok(path)
}

/// A running `esc-operator run`.
pub struct Operator {
    process: ProcessGroup,
    http: SocketAddr,
    log: PathBuf,
}

impl Operator {
    /// Starts `binary run` with `kubeconfig`, an HTTP port of its own on 127.0.0.1, and `args`
    /// (`--namespaces`, `--lease-namespace`, …). Logs go to `dir/<name>.log`.
    pub fn start(
        binary: &Path,
        kubeconfig: &Path,
        name: &str,
        args: &[&str],
        dir: &Path,
    ) -> Result<Operator> {
        let port = host_procs::free_port(std::net::Ipv4Addr::LOCALHOST)?;
        let http: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let log = dir.join(format!("{name}.log"));
        let mut cmd = std::process::Command::new(binary);
        cmd.arg("run")
            .arg(format!("--http-addr={http}"))
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", name)
            .env_remove("RUST_LOG")
            .env_remove("WATCH_NAMESPACES");
        let process = ProcessGroup::spawn(name, cmd, &log)?;
        Ok(Operator { process, http, log })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET `path` on its HTTP port: (status code, body).
    pub async fn get(&self, path: &str) -> Result<(u16, String)> {
        let mut stream = tokio::net::TcpStream::connect(self.http).await?;
        stream
            .write_all(
                format!(
                    "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                    self.http
                )
                .as_bytes(),
            )
            .await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        let code = response
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .context("no HTTP status line")?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Ok((code, body))
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.process.try_exit_status() {
                bail!(
                    "the operator exited ({status}) before it was ready:\n{}",
                    self.log()
                );
            }
            if matches!(self.get("/readyz").await, Ok((200, _))) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the operator was not ready within {timeout:?}:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The value of the metric line that starts with `series` (name and labels), if present.
    pub async fn metric(&self, series: &str) -> Result<Option<f64>> {
        let (_, body) = self.get("/metrics").await?;
        Ok(body
            .lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok()))
    }

    /// SIGKILL: no cleanup, no lease release — as when a node dies.
    pub fn kill(&mut self) {
        let _ = kill(Pid::from_raw(self.process.pid() as i32), Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.process.try_exit_status().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit status.
    pub fn terminate(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let _ = kill(Pid::from_raw(self.process.pid() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        loop {
            if let Some(status) = self.process.try_exit_status() {
                return Some(status);
            }
            if Instant::now() > deadline {
                self.process.stop(Duration::from_secs(1));
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.process.try_exit_status()
    }
}
