//! What the operator process needs around its controllers: logging, HTTP (`/healthz`,
//! `/readyz`, `/metrics`), leader election, and an orderly shutdown on SIGTERM.
//!
//! Owns the process lifecycle. May import [`crate::controller`] (and through it the layers
//! below); never [`crate::cli`].

pub mod http;
pub mod leader;
pub mod memory;
pub mod shutdown;
pub mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::FutureExt;
use kube::runtime::events::Reporter;
use prometheus_client::registry::Registry;

use crate::controller::metrics::Metrics;
use crate::controller::{Context, ControllerOptions, WatchScope};
use leader::{LeaderConfig, LeaderElection};

/// Everything `esc-operator run` is configured with.
#[derive(Clone, Debug)]
pub struct OperatorConfig {
    pub scope: WatchScope,
    pub http_addr: SocketAddr,
    /// `None`: this process reconciles without electing a leader (one replica only).
    pub leader: Option<LeaderConfig>,
    pub controller: ControllerOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("no Kubernetes configuration (in-cluster or kubeconfig): {0}")]
    Config(#[source] kube::config::InferConfigError),
    #[error("Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    #[error("HTTP server on {addr}: {source}")]
    Http {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("leader election: {0}")]
    Leader(String),
    #[error("lost the leader lease; exiting so that a fresh process can stand by")]
    LostLeadership,
}

/// Runs the operator until SIGTERM/SIGINT (exit cleanly) or until it loses leadership (error).
pub async fn run(config: OperatorConfig) -> Result<(), RuntimeError> {
    raise_open_file_limit();
    let kube_config = kube::Config::infer().await.map_err(RuntimeError::Config)?;
    let default_namespace = kube_config.default_namespace.clone();
    let client = kube::Client::try_from(kube_config).map_err(RuntimeError::Client)?;

    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::register(&mut registry));
    let health = http::Health::default();
    let server = http::serve(config.http_addr, Arc::new(registry), health.clone())
        .await
        .map_err(|source| RuntimeError::Http {
            addr: config.http_addr,
            source,
        })?;
    tracing::info!(addr = %server.local_addr, scope = ?config.scope, "esc-operator {} started", env!("CARGO_PKG_VERSION"));

    let shutdown = shutdown::Shutdown::on_signals();
    let mut election = match &config.leader {
        Some(leader_config) => Some(
            LeaderElection::start(client.clone(), leader_config, &default_namespace)
                .await
                .map_err(|e| RuntimeError::Leader(e.to_string()))?,
        ),
        None => None,
    };

    // A standby is healthy and ready: it is there to take over.
    health.set_ready(election.is_some());
    if let Some(e) = election.as_mut() {
        tracing::info!(identity = e.identity(), "standing by for the leader lease");
        let stopping = tokio::select! {
            won = e.wait_until_leader() => {
                won.map_err(RuntimeError::Leader)?;
                false
            }
            _ = shutdown.wait() => true,
        };
        if stopping {
            if let Some(e) = election.take() {
                e.release().await;
            }
            server.stop().await;
            return Ok(());
        }
        tracing::info!(identity = e.identity(), "became the leader");
    }
    health.set_ready(false);

    let identity = election
        .as_ref()
        .map(|e| e.identity().to_owned())
        .unwrap_or_else(|| "esc-operator".to_owned());
    let reporter = Reporter {
        controller: "esc-operator".into(),
        instance: Some(identity),
    };
    let ctx = Arc::new(Context::new(
        client,
        reporter,
        metrics,
        config.controller.clone(),
    ));
    let stop_controllers = shutdown.clone();
    let lost = Arc::new(AtomicBool::new(false));
    let controllers_stop = {
        let lost = lost.clone();
        let mut leadership = election.as_ref().map(LeaderElection::leadership);
        async move {
            tokio::select! {
                _ = stop_controllers.wait() => {}
                _ = async {
                    match leadership.as_mut() {
                        Some(l) => l.lost().await,
                        None => std::future::pending().await,
                    }
                } => {
                    lost.store(true, Ordering::SeqCst);
                    tracing::error!("lost the leader lease; stopping the controllers");
                }
            }
        }
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        controllers_stop.await;
        let _ = stop_tx.send(true);
    });
    // The controllers want a future they can clone: a shared wait on the stop flag.
    let stop_signal = async move {
        let mut rx = stop_rx;
        let _ = rx.wait_for(|stop| *stop).await;
    }
    .boxed()
    .shared();
    let ready = health.clone();
    let trimmer = memory::spawn_trimmer(memory::TRIM_EVERY);
    crate::controller::run(ctx, &config.scope, stop_signal, move || {
        tracing::info!("caches synced; ready");
        ready.set_ready(true);
    })
    .await;
    tracing::info!("controllers stopped");
    trimmer.abort();

    if let Some(e) = election {
        e.release().await;
    }
    server.stop().await;
    if lost.load(Ordering::SeqCst) {
        return Err(RuntimeError::LostLeadership);
    }
    Ok(())
}

/// One SSH connection per ESC node is one descriptor each: 500 HA clusters need over 1000, more
/// than the usual soft limit of 1024. Raise the soft limit to the hard one (no privilege needed).
fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::debug!(from = soft, to = hard, "raised the open-file limit"),
            Err(e) => tracing::warn!(soft, hard, error = %e, "could not raise the open-file limit"),
        },
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not read the open-file limit"),
    }
}
