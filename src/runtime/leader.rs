//! Leader election on a `coordination.k8s.io/v1` Lease (kube-lease-manager): only the holder
//! reconciles and writes. The holder renews before the lease expires; a standby takes the lease
//! once it expires (at most `lease_duration` after the holder died). SIGTERM releases it: a
//! process that starts afterwards (a rollout's new pod) takes it at once; a standby that was
//! already waiting does not watch the Lease and takes it at its next look, within
//! `lease_duration` (kube-lease-manager sleeps until the expiry it last saw).

use std::time::Duration;

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
    identity: String,
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
        let manager = LeaseManagerBuilder::new(client, &config.lease_name)
            .with_namespace(&namespace)
            .with_identity(&identity)
            .with_duration(duration)
            .with_grace(RENEW_MARGIN_SECONDS)
            .with_field_manager("esc-operator-leader")
            .build()
            .await?;
        let (rx, task) = manager.watch().await;
        Ok(LeaderElection { identity, rx, task })
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Completes once this process holds the lease.
    pub async fn wait_until_leader(&mut self) -> Result<(), String> {
        self.rx
            .wait_for(|leader| *leader)
            .await
            .map(|_| ())
            .map_err(|_| "the lease manager stopped".to_owned())
    }

    pub fn leadership(&self) -> Leadership {
        Leadership {
            rx: self.rx.clone(),
        }
    }

    /// Gives the lease up (closing the channel makes the manager release it) and waits a few
    /// seconds for that to reach the API server.
    pub async fn release(self) {
        let LeaderElection { identity, rx, task } = self;
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
