//! Leader election on a `coordination.k8s.io/v1` Lease (kube-lease-manager): only the holder
//! reconciles and writes. The holder renews before the lease expires; a standby takes the lease
//! once it expires (at most `lease_duration` after the holder died). SIGTERM releases it, and a
//! standby takes a released lease at once: kube-lease-manager sleeps until the expiry it last
//! saw, so the standby also watches the Lease, and when a lease it saw held by another process
//! is let go it starts a fresh manager, which reads the Lease anew and takes it.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Where the lease lives.
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    pub lease_name: String,
    /// Default: the pod's namespace in a cluster, else the kubeconfig's.
    pub namespace: Option<String>,
    /// Default: `POD_NAME` (or the host name) plus a random suffix.
    pub identity: Option<String>,
    pub lease_duration: Duration,
}

/// The renewal starts this long before the lease expires.
const RENEW_MARGIN_SECONDS: u64 = 3;

/// Where a ServiceAccount token's namespace is mounted in every pod.
const POD_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

pub struct LeaderElection {
    client: kube::Client,
    lease_name: String,
    namespace: String,
    identity: String,
    duration: u64,
    rx: watch::Receiver<bool>,
    task: JoinHandle<Result<LeaseManager, LeaseManagerError>>,
}

/// Watches whether this process still holds the lease.
pub struct Leadership {
    rx: watch::Receiver<bool>,
}

impl Leadership {
    /// Completes when the lease is lost (or the election stopped).
    pub async fn lost(&mut self) {
        let _ = self.rx.wait_for(|leader| !*leader).await;
    }
}

impl LeaderElection {
    pub async fn start(
        client: kube::Client,
        config: &LeaderConfig,
        default_namespace: &str,
    ) -> Result<Self, LeaseManagerError> {
        let namespace = config
            .namespace
            .clone()
            .or_else(|| {
                std::fs::read_to_string(POD_NAMESPACE_FILE)
                    .ok()
                    .map(|s| s.trim().to_owned())
            })
            .unwrap_or_else(|| default_namespace.to_owned());
        let identity = config.identity.clone().unwrap_or_else(default_identity);
        let duration = config
            .lease_duration
            .as_secs()
            .max(RENEW_MARGIN_SECONDS + 2);
        let (rx, task) =
            manage(&client, &config.lease_name, &namespace, &identity, duration).await?;
        Ok(LeaderElection {
            client,
            lease_name: config.lease_name.clone(),
            namespace,
            identity,
            duration,
            rx,
            task,
        })
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Completes once this process holds the lease: when the manager takes it, or at once after
    /// its holder released it.
    pub async fn wait_until_leader(&mut self) -> Result<(), String> {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), &self.namespace);
        loop {
            let released = tokio::select! {
                won = self.rx.wait_for(|leader| *leader) => {
                    won.map_err(|_| "the lease manager stopped".to_owned())?;
                    false
                }
                () = released_by_other(leases.clone(), &self.lease_name, &self.identity) => true,
            };
            if !released {
                return Ok(());
            }
            tracing::info!(
                identity = self.identity,
                "the leader released the lease; taking it"
            );
            self.restart().await;
        }
    }

    /// Replaces the manager (a standby's, sleeping until the expiry it last saw) by a fresh one
    /// that reads the Lease first. Aborting the old one gives nothing up: it did not hold the
    /// lease, and if it took it a moment ago the fresh one, with the same identity, holds it.
    /// When the fresh one cannot be made (the API server is unreachable), the old one stays: it
    /// still takes the lease at the expiry it saw.
    async fn restart(&mut self) {
        match manage(
            &self.client,
            &self.lease_name,
            &self.namespace,
            &self.identity,
            self.duration,
        )
        .await
        {
            Ok((rx, task)) => {
                self.task.abort();
                self.rx = rx;
                self.task = task;
            }
            Err(e) => tracing::warn!(
                identity = self.identity,
                error = %e,
                "could not restart the lease manager; the lease is taken at its expiry instead"
            ),
        }
    }

    pub fn leadership(&self) -> Leadership {
        Leadership {
            rx: self.rx.clone(),
        }
    }

    /// Gives the lease up (closing the channel makes the manager release it) and waits a few
    /// seconds for that to reach the API server.
    pub async fn release(self) {
        let LeaderElection {
            identity, rx, task, ..
        } = self;
        drop(rx);
        match tokio::time::timeout(Duration::from_secs(5), task).await {
            Ok(Ok(Ok(_))) => tracing::info!(identity, "released the leader lease"),
            Ok(Ok(Err(e))) => {
                tracing::warn!(identity, error = %e, "releasing the leader lease failed")
            }
            Ok(Err(e)) => tracing::warn!(identity, error = %e, "the lease task failed"),
            Err(_) => tracing::warn!(identity, "releasing the leader lease timed out"),
        }
    }
}

type Managed = (
    watch::Receiver<bool>,
    JoinHandle<Result<LeaseManager, LeaseManagerError>>,
);

/// A lease manager for `identity`, running: the receiver says whether it holds the lease.
async fn manage(
    client: &kube::Client,
    lease_name: &str,
    namespace: &str,
    identity: &str,
    duration: u64,
) -> Result<Managed, LeaseManagerError> {
    let manager = LeaseManagerBuilder::new(client.clone(), lease_name)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(duration)
        .with_grace(RENEW_MARGIN_SECONDS)
        .with_field_manager("esc-operator-leader")
        .build()
        .await?;
    Ok(manager.watch().await)
}

/// Completes when the lease, seen held by another process, is seen without a holder: its
/// holder released it. A lease that is free when the watch starts is the manager's to take (it
/// reads the Lease before it sleeps), so only that transition counts. Watch errors are retried
/// with backoff; until the watch works again the manager's own expiry wait still applies.
async fn released_by_other(leases: Api<Lease>, lease_name: &str, identity: &str) {
    let mut states = std::pin::pin!(
        watcher::watch_object(leases, lease_name)
            .default_backoff()
            .map(|item| item.map(|lease| holder(lease.as_ref())))
    );
    let mut held_by_other = false;
    while let Some(item) = states.next().await {
        match item {
            Ok(Some(h)) => held_by_other = h != identity,
            Ok(None) if held_by_other => return,
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "watching the leader lease"),
        }
    }
    std::future::pending().await
}

/// Who holds `lease` (`None`: nobody, or no Lease).
fn holder(lease: Option<&Lease>) -> Option<String> {
    lease
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.holder_identity.clone())
        .filter(|h| !h.is_empty())
}

fn default_identity() -> String {
    let base = std::env::var("POD_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(nix_hostname)
        .unwrap_or_else(|| "esc-operator".to_owned());
    let suffix: u32 = rand::random();
    format!("{base}-{suffix:08x}")
}

fn nix_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}
