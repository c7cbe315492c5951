//! Installing CustomResourceDefinitions (objects, YAML text or files) and waiting until the
//! API server serves them.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};

use super::TestCluster;

impl TestCluster {
    /// Installs (server-side apply) the CRDs and waits until each is Established.
    pub async fn install_crds(&self, crds: &[CustomResourceDefinition]) -> Result<()> {
        let api: Api<CustomResourceDefinition> = Api::all(self.client());
        let params = PatchParams::apply("esc-testbed").force();
        for crd in crds {
            let name = crd
                .metadata
                .name
                .as_deref()
                .context("a CRD without metadata.name")?;
            let mut crd = crd.clone();
            crd.metadata.managed_fields = None;
            crd.metadata.resource_version = None;
            api.patch(name, &params, &Patch::Apply(&crd))
                .await
                .with_context(|| format!("apply CRD {name}"))?;
        }
        for crd in crds {
            let name = crd.metadata.name.as_deref().unwrap_or_default();
            let established = kube::runtime::wait::await_condition(
                api.clone(),
                name,
                kube::runtime::wait::conditions::is_crd_established(),
            );
            tokio::time::timeout(Duration::from_secs(30), established)
                .await
                .with_context(|| format!("CRD {name} not Established within 30 s"))?
                .with_context(|| format!("watch CRD {name}"))?;
        }
        Ok(())
    }

    /// [`TestCluster::install_crds`] from YAML text (one or more `---` separated documents).
    pub async fn install_crd_yaml(&self, yaml: &str) -> Result<()> {
        let crds = parse_crds(yaml)?;
        self.install_crds(&crds).await
    }

    /// [`TestCluster::install_crds`] from YAML files.
    pub async fn install_crd_files(&self, paths: &[impl AsRef<Path>]) -> Result<()> {
        let mut crds = Vec::new();
        for path in paths {
            let path = path.as_ref();
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("read {}", path.display()))?;
            crds.extend(parse_crds(&text).with_context(|| format!("parse {}", path.display()))?);
        }
        self.install_crds(&crds).await
    }
}

fn parse_crds(yaml: &str) -> Result<Vec<CustomResourceDefinition>> {
    use serde::Deserialize;
    let mut crds = Vec::new();
    for doc in serde_norway::Deserializer::from_str(yaml) {
        let value = serde_norway::Value::deserialize(doc)?;
        if value.is_null() {
            continue;
        }
        crds.push(serde_norway::from_value(value)?);
    }
    Ok(crds)
}
