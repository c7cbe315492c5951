//! `esc-operator check-access`: print what [`crate::access`] finds, exit 3 when RBAC refuses.

use super::{Failure, FailureKind, current_thread_runtime};
use crate::access::{AccessError, Scope, check_access as list_all};

#[derive(clap::Args)]
pub(super) struct CheckAccessArgs {
    /// Namespace to list in. Default: the pod's own namespace in a cluster, else the
    /// kubeconfig's.
    #[arg(long, short = 'n', conflicts_with = "all_namespaces")]
    namespace: Option<String>,
    /// List across all namespaces (needs a ClusterRole).
    #[arg(long, short = 'A')]
    all_namespaces: bool,
}

pub(super) fn check_access(args: CheckAccessArgs) -> Result<(), Failure> {
    current_thread_runtime()?.block_on(async {
        let config = kube::Config::infer()
            .await
            .map_err(|e| format!("no Kubernetes configuration (in-cluster or kubeconfig): {e}"))?;
        let scope = if args.all_namespaces {
            Scope::AllNamespaces
        } else {
            Scope::Namespace(
                args.namespace
                    .unwrap_or_else(|| config.default_namespace.clone()),
            )
        };
        let client =
            kube::Client::try_from(config).map_err(|e| format!("Kubernetes client: {e}"))?;
        let listings = list_all(&client, &scope).await.map_err(|e| Failure {
            kind: match e {
                AccessError::Forbidden { .. } => FailureKind::AccessDenied,
                AccessError::Api { .. } => FailureKind::Error,
            },
            message: e.to_string(),
        })?;
        for listing in listings {
            println!("{}: {} in {scope}", listing.resource, listing.objects.len());
            for object in &listing.objects {
                println!("  {object}");
            }
        }
        Ok(())
    })
}
