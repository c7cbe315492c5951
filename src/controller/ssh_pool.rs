//! One SSH connection per ESC node, shared by every probe and operation on that node.
//!
//! The driver multiplexes channels over one connection, so a cluster's probes and a backup's
//! commands share it. A connection is dropped when it breaks, when the Secrets behind it change
//! (their fingerprint), or when it has been idle longer than the pool's idle timeout; a
//! semaphore bounds how many handshakes run at once, so 500 clusters starting together never
//! open 1,000 connections in one burst.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::metrics::Metrics;
use super::secrets::SshAccess;
use crate::esc::{DriverError, EscNode, SessionOptions, SshTarget};

/// Which node a connection belongs to: `namespace/cluster` and the node's name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodeKey {
    pub cluster: String,
    pub node: String,
}

struct Entry {
    node: Arc<EscNode>,
    target: SshTarget,
    fingerprint: u64,
    last_used: Instant,
}

/// The pool. Cheap to share (`Arc` inside the context).
pub struct SshPool {
    entries: Mutex<HashMap<NodeKey, Entry>>,
    connects: Semaphore,
    idle_timeout: Duration,
    metrics: Arc<Metrics>,
}

impl SshPool {
    pub fn new(
        max_concurrent_connects: usize,
        idle_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        SshPool {
            entries: Mutex::default(),
            connects: Semaphore::new(max_concurrent_connects.max(1)),
            idle_timeout,
            metrics,
        }
    }

    /// The open connection to `key`, or a new one. A cached connection is reused only when it
    /// is still open and was made for the same target and the same Secrets.
    pub async fn node(
        &self,
        key: &NodeKey,
        target: &SshTarget,
        access: &SshAccess,
        options: &SessionOptions,
    ) -> Result<Arc<EscNode>, DriverError> {
        if let Some(node) = self.cached(key, target, access.fingerprint) {
            return Ok(node);
        }
        let _permit = self
            .connects
            .acquire()
            .await
            .expect("the pool's semaphore is never closed");
        // Another task may have connected while this one waited for a permit.
        if let Some(node) = self.cached(key, target, access.fingerprint) {
            return Ok(node);
        }
        let node = EscNode::connect(
            target.clone(),
            &access.credentials,
            &access.known_hosts,
            options.clone(),
        )
        .await?;
        let node = Arc::new(node);
        self.metrics.ssh_connection_opened();
        let replaced = self.entries.lock().expect("pool lock").insert(
            key.clone(),
            Entry {
                node: node.clone(),
                target: target.clone(),
                fingerprint: access.fingerprint,
                last_used: Instant::now(),
            },
        );
        if let Some(old) = replaced {
            self.close(old);
        }
        Ok(node)
    }

    fn cached(&self, key: &NodeKey, target: &SshTarget, fingerprint: u64) -> Option<Arc<EscNode>> {
        let mut entries = self.entries.lock().expect("pool lock");
        let entry = entries.get_mut(key)?;
        if entry.node.session().is_closed()
            || entry.fingerprint != fingerprint
            || entry.target != *target
        {
            let stale = entries.remove(key).expect("just found");
            drop(entries);
            self.close(stale);
            return None;
        }
        entry.last_used = Instant::now();
        Some(entry.node.clone())
    }

    /// Forgets the connection to `key` (after a transport error: the next use reconnects).
    pub fn discard(&self, key: &NodeKey) {
        let removed = self.entries.lock().expect("pool lock").remove(key);
        if let Some(e) = removed {
            self.close(e);
        }
    }

    /// Closes every connection of a cluster (it was deleted, or its node list changed).
    pub fn discard_cluster(&self, cluster: &str, keep_nodes: &[&str]) {
        let removed: Vec<Entry> = {
            let mut entries = self.entries.lock().expect("pool lock");
            let keys: Vec<NodeKey> = entries
                .keys()
                .filter(|k| k.cluster == cluster && !keep_nodes.contains(&k.node.as_str()))
                .cloned()
                .collect();
            keys.iter().filter_map(|k| entries.remove(k)).collect()
        };
        for e in removed {
            self.close(e);
        }
    }

    /// Closes connections unused for longer than the idle timeout. Run it periodically.
    pub fn close_idle(&self) -> usize {
        let now = Instant::now();
        let idle: Vec<Entry> = {
            let mut entries = self.entries.lock().expect("pool lock");
            let keys: Vec<NodeKey> = entries
                .iter()
                // Still in use by a running operation: not idle, whatever the clock says.
                .filter(|(_, e)| {
                    now.duration_since(e.last_used) > self.idle_timeout
                        && Arc::strong_count(&e.node) == 1
                })
                .map(|(k, _)| k.clone())
                .collect();
            keys.iter().filter_map(|k| entries.remove(k)).collect()
        };
        let n = idle.len();
        for e in idle {
            self.close(e);
        }
        n
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.entries.lock().expect("pool lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Closes all connections (shutdown).
    pub async fn close_all(&self) {
        let all: Vec<Entry> = self
            .entries
            .lock()
            .expect("pool lock")
            .drain()
            .map(|(_, e)| e)
            .collect();
        for e in all {
            self.metrics.ssh_connection_closed();
            if let Ok(node) = Arc::try_unwrap(e.node) {
                node.close().await;
            }
        }
    }

    fn close(&self, entry: Entry) {
        self.metrics.ssh_connection_closed();
        // Users of the node still hold their Arc; the connection closes when the last one drops
        // it. When nobody does, close it politely in the background.
        if let Ok(node) = Arc::try_unwrap(entry.node) {
            tokio::spawn(node.close());
        }
    }
}
