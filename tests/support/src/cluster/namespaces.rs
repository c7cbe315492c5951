//! Per-test namespaces ([`TestNamespace`], deleted when dropped) and RBAC grants to their
//! ServiceAccounts.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{Api, ObjectMeta, PostParams};

use super::TestCluster;

impl TestCluster {
    /// Creates a namespace `<prefix>-<unique>` for one test, and (with a controller-manager)
    /// waits until its `default` ServiceAccount exists, so Pods can be created at once.
    /// The namespace is deleted, best-effort, when the returned handle drops.
    pub async fn namespace(&self, prefix: &str) -> Result<TestNamespace> {
        self.namespace_with_labels(prefix, &[]).await
    }

    /// [`TestCluster::namespace`] with labels, e.g.
    /// `("pod-security.kubernetes.io/enforce", "restricted")`.
    pub async fn namespace_with_labels(
        &self,
        prefix: &str,
        labels: &[(&str, &str)],
    ) -> Result<TestNamespace> {
        let n = self.namespaces.fetch_add(1, Ordering::Relaxed);
        let mut clean: String = prefix
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(40)
            .collect();
        clean = clean.trim_matches('-').to_owned();
        if clean.is_empty() {
            clean = "test".into();
        }
        let name = format!("{clean}-{:x}-{n}", std::process::id() & 0xffff);
        let client = self.client();
        let api: Api<Namespace> = Api::all(client.clone());
        let mut label_map =
            std::collections::BTreeMap::from([("esc-testbed/test".to_owned(), clean.clone())]);
        for (k, v) in labels {
            label_map.insert((*k).to_owned(), (*v).to_owned());
        }
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(label_map),
                ..Default::default()
            },
            ..Default::default()
        };
        api.create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("create namespace {name}"))?;
        let handle = TestNamespace {
            name: name.clone(),
            config: self.config.clone(),
        };
        if self.options.with_controller_manager {
            let sas: Api<ServiceAccount> = Api::namespaced(client, &name);
            let deadline = Instant::now() + Duration::from_secs(30);
            while sas.get_opt("default").await?.is_none() {
                if Instant::now() > deadline {
                    bail!("namespace {name}: no `default` ServiceAccount after 30 s");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(handle)
    }

    /// Grants the ServiceAccount `service_account` of `namespace` the `rules`, through a Role and
    /// a RoleBinding both named `name`. The RBAC authorizer sees them through informers, so the
    /// grant takes effect a moment later: callers poll for it.
    pub async fn grant_role(
        &self,
        namespace: &str,
        service_account: &str,
        name: &str,
        rules: Vec<PolicyRule>,
    ) -> Result<()> {
        let client = self.client();
        let metadata = ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        };
        Api::<Role>::namespaced(client.clone(), namespace)
            .create(
                &PostParams::default(),
                &Role {
                    metadata: metadata.clone(),
                    rules: Some(rules),
                },
            )
            .await
            .with_context(|| format!("create Role {namespace}/{name}"))?;
        Api::<RoleBinding>::namespaced(client, namespace)
            .create(
                &PostParams::default(),
                &RoleBinding {
                    metadata,
                    role_ref: RoleRef {
                        api_group: Some("rbac.authorization.k8s.io".into()),
                        kind: "Role".into(),
                        name: name.to_owned(),
                    },
                    subjects: Some(vec![Subject {
                        kind: "ServiceAccount".into(),
                        name: service_account.to_owned(),
                        namespace: Some(namespace.to_owned()),
                        ..Subject::default()
                    }]),
                },
            )
            .await
            .with_context(|| format!("create RoleBinding {namespace}/{name}"))?;
        Ok(())
    }
}

/// A namespace owned by one test; deleted (best-effort, not waited for) on drop.
pub struct TestNamespace {
    name: String,
    config: kube::Config,
}

impl TestNamespace {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Leaves the namespace in place (for debugging a failed test).
    pub fn keep(self) -> String {
        let name = self.name.clone();
        std::mem::forget(self);
        name
    }
}

impl std::fmt::Display for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl AsRef<str> for TestNamespace {
    fn as_ref(&self) -> &str {
        &self.name
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Drop may run inside the test's runtime (which we must not block on) or during a
        // panic: delete from a thread with a runtime and a client of its own.
        let name = self.name.clone();
        let config = self.config.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async move {
                let client = kube::Client::try_from(config).ok()?;
                let api: Api<Namespace> = Api::all(client);
                api.delete(&name, &Default::default()).await.ok()
            })
        })
        .join();
    }
}
