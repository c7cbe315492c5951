//! Kubeconfig files: written for the admin, the controllers and the kubelet (client
//! certificates), read back into a `kube::Config`.

use std::path::Path;

use anyhow::{Context, Result};

/// A kubeconfig that authenticates with a client certificate (admin, controllers, kubelet).
pub(crate) fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<()> {
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: esc-testbed
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: esc-testbed
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: esc-testbed
  context:
    cluster: esc-testbed
    user: esc-testbed
    namespace: default
current-context: esc-testbed
",
        ca = ca.display(),
        cert = cert.display(),
        key = key.display()
    );
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

pub(super) async fn load_kubeconfig(path: &Path) -> Result<kube::Config> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)?;
    Ok(kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?)
}
