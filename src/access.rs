//! `esc-operator check-access`: can this identity see the operator's resources?
//!
//! Run inside a pod (plain in-cluster config: the projected ServiceAccount token) or with a
//! kubeconfig, it lists every kind of `escoperator.dev` and reports what it found — or, when
//! RBAC refuses, which permission is missing and for whom. It is the first thing to run when the
//! operator's logs say "forbidden", and the test bed uses it to prove RBAC from inside a pod.

use std::fmt;

use kube::api::{Api, ListParams};
use kube::{Client, Resource};

use crate::api::{EscBackup, EscBackupSchedule, EscCluster, EscRestore};

/// What one kind's list returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindListing {
    /// `escclusters.escoperator.dev`.
    pub resource: String,
    /// `namespace/name` of each object.
    pub objects: Vec<String>,
}

/// Why the check failed.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(
        "forbidden: cannot list {resource} in {scope}: {server_message}. Grant this identity \
         get, list and watch on {resource} (the operator's Role or ClusterRole does)"
    )]
    Forbidden {
        resource: String,
        scope: Scope,
        server_message: String,
    },
    #[error("listing {resource} in {scope} failed: {source}")]
    Api {
        resource: String,
        scope: Scope,
        #[source]
        source: kube::Error,
    },
}

/// Where a list ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Namespace(String),
    AllNamespaces,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Namespace(ns) => write!(f, "namespace {ns}"),
            Scope::AllNamespaces => f.write_str("all namespaces"),
        }
    }
}

/// Lists every kind of the operator in `scope`, stopping at the first refusal.
pub async fn check_access(client: &Client, scope: &Scope) -> Result<Vec<KindListing>, AccessError> {
    Ok(vec![
        list::<EscCluster>(client, scope).await?,
        list::<EscBackup>(client, scope).await?,
        list::<EscRestore>(client, scope).await?,
        list::<EscBackupSchedule>(client, scope).await?,
    ])
}

async fn list<K>(client: &Client, scope: &Scope) -> Result<KindListing, AccessError>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + fmt::Debug
        + serde::de::DeserializeOwned,
{
    let resource = format!("{}.{}", K::plural(&()), K::group(&()));
    let api: Api<K> = match scope {
        Scope::Namespace(ns) => Api::namespaced(client.clone(), ns),
        Scope::AllNamespaces => Api::all(client.clone()),
    };
    match api.list(&ListParams::default()).await {
        Ok(list) => Ok(KindListing {
            resource,
            objects: list
                .items
                .iter()
                .map(|o| {
                    let meta = o.meta();
                    format!(
                        "{}/{}",
                        meta.namespace.as_deref().unwrap_or_default(),
                        meta.name.as_deref().unwrap_or_default()
                    )
                })
                .collect(),
        }),
        Err(kube::Error::Api(status)) if status.code == 403 => Err(AccessError::Forbidden {
            resource,
            scope: scope.clone(),
            server_message: status.message,
        }),
        Err(source) => Err(AccessError::Api {
            resource,
            scope: scope.clone(),
            source,
        }),
    }
}
