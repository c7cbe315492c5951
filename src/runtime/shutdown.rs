//! SIGTERM (the kubelet stopping a pod) and SIGINT (Ctrl-C) as one future many tasks can await.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// Completes for every waiter once the process was asked to stop.
#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

impl Shutdown {
    /// Listens for SIGTERM and SIGINT from now on.
    pub fn on_signals() -> Self {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            let mut term = signal(SignalKind::terminate()).expect("install the SIGTERM handler");
            let mut int = signal(SignalKind::interrupt()).expect("install the SIGINT handler");
            let which = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::info!(signal = which, "shutting down");
            let _ = tx.send(true);
        });
        Shutdown { rx }
    }

    /// Completes once a signal arrived.
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|stop| *stop).await;
    }
}
