//! What every reconcile gets: the Kubernetes client, the Event recorder, the metrics, the SSH
//! pool, the Secret cache, per-object backoff, and the operator's options.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource};

use super::backup::job::MoverTemplate;
use super::metrics::Metrics;
use super::runs::RunStores;
use super::secrets::SecretCache;
use super::ssh_pool::SshPool;

/// Settings from the command line (and later the chart's values).
#[derive(Clone, Debug)]
pub struct ControllerOptions {
    /// Close an SSH connection after this long unused.
    pub ssh_idle_timeout: Duration,
    /// At most this many SSH handshakes at once, across all clusters.
    pub max_concurrent_connects: usize,
    /// Deleting an EscCluster that the operator put in maintenance waits at most this long for
    /// ESC to answer before letting go (with a Warning Event).
    pub release_timeout: Duration,
    /// At most this many reconciles at once per watched scope (each may hold an API connection
    /// and an SSH exchange).
    pub max_concurrent_reconciles: u16,
    /// The directory on the ESC nodes where backup and restore runs keep their files.
    pub run_directory: String,
    /// A backup does not start on a master with less free space than this under the run
    /// directory (`escadm backup` and `log collect` write there).
    pub min_node_free_bytes: u64,
    /// The directory on the ESC nodes that keeps what must outlive runs (the restore history).
    pub state_directory: String,
    /// How mover pods run.
    pub mover: MoverTemplate,
    /// The image the operator runs from (the mover's default image).
    pub operator_image: Option<String>,
    /// TESTING ONLY: schedules read "now" from this file (RFC 3339) instead of the system clock.
    pub clock_file: Option<std::path::PathBuf>,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        ControllerOptions {
            ssh_idle_timeout: Duration::from_secs(300),
            max_concurrent_connects: 16,
            release_timeout: Duration::from_secs(300),
            max_concurrent_reconciles: 16,
            run_directory: "/var/tmp/esc-operator".to_owned(),
            state_directory: "/var/lib/esc-operator".to_owned(),
            min_node_free_bytes: 1 << 30,
            mover: MoverTemplate::default(),
            operator_image: None,
            clock_file: None,
        }
    }
}

/// Shared by all reconciles of all controllers.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub ssh: SshPool,
    /// The clusters' Secrets: what was parsed from them, reused while their version holds.
    pub secrets: SecretCache,
    pub options: ControllerOptions,
    /// The backup and restore runs, as watched (who holds a cluster in maintenance).
    pub runs: RunStores,
    /// Rate limits of periodic reads (a mover's progress).
    pub throttle: Throttle,
    backoff: Backoff,
    /// The status this process last stored per object (by uid). A reconcile can start from a
    /// cached object older than this process's own last write (the watch lags); planning from
    /// it would move condition times and write again. The leader is the only writer, so what
    /// it wrote last is what the API server holds. Kept as compact JSON text: a parsed
    /// `serde_json::Value` per cluster costs several times as much memory at 500 clusters.
    written: Mutex<HashMap<String, Box<str>>>,
}

impl Context {
    pub fn new(
        client: Client,
        reporter: Reporter,
        metrics: Arc<Metrics>,
        options: ControllerOptions,
    ) -> Self {
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            ssh: SshPool::new(
                options.max_concurrent_connects,
                options.ssh_idle_timeout,
                metrics.clone(),
            ),
            secrets: SecretCache::default(),
            client,
            metrics,
            options,
            runs: RunStores::default(),
            throttle: Throttle::default(),
            backoff: Backoff::default(),
            written: Mutex::default(),
        }
    }

    /// Records one more failure of `object` and returns how long to wait before retrying it.
    pub fn backoff<K: Resource<DynamicType = ()>>(&self, object: &K, cap: Duration) -> Duration {
        self.backoff
            .failed(&ObjectRef::from_obj(object).to_string(), cap)
    }

    /// Forgets the failures of `object` (it succeeded).
    pub fn reset_backoff<K: Resource<DynamicType = ()>>(&self, object: &K) {
        self.backoff
            .succeeded(&ObjectRef::from_obj(object).to_string());
    }

    /// The status last stored for `object` by this process, if it stored one.
    pub fn last_written<K: Resource<DynamicType = ()>, S: serde::de::DeserializeOwned>(
        &self,
        object: &K,
    ) -> Option<S> {
        let uid = object.meta().uid.as_deref()?;
        let written = self.written.lock().expect("written lock");
        serde_json::from_str(written.get(uid)?).ok()
    }

    /// Records the status just stored for `object`.
    pub fn record_written<K: Resource<DynamicType = ()>, S: serde::Serialize>(
        &self,
        object: &K,
        status: &S,
    ) {
        if let (Some(uid), Ok(text)) = (object.meta().uid.clone(), serde_json::to_string(status)) {
            self.written
                .lock()
                .expect("written lock")
                .insert(uid, text.into_boxed_str());
        }
    }

    /// Forgets `object` (deleted): its written status and its backoff.
    pub fn forget<K: Resource<DynamicType = ()>>(&self, object: &K) {
        if let Some(uid) = object.meta().uid.as_deref() {
            self.written.lock().expect("written lock").remove(uid);
        }
        self.reset_backoff(object);
    }

    /// Publishes an Event on `object`. A failure to publish is logged, never fatal: Events are
    /// for people, the status is the record.
    pub async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        warning: bool,
        reason: &str,
        note: &str,
        action: &str,
    ) {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_owned(),
            note: Some(note.chars().take(1024).collect()),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "could not publish an Event");
        }
    }
}

/// Failures in a row per object, for an exponential backoff of that object alone: one broken
/// EscCluster never delays the others, and a fixed one is probed at its normal pace again.
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// One more failure of `key`: 1 s, 2 s, 4 s … capped at `cap`, ±20 % jitter so that objects
    /// failing together spread out.
    pub fn failed(&self, key: &str, cap: Duration) -> Duration {
        let mut failures = self.failures.lock().expect("backoff lock");
        let n = failures.entry(key.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        let base = Duration::from_secs(1u64 << (*n - 1).min(16));
        jitter(base.min(cap), 0.2)
    }

    /// `key` succeeded: its next failure starts from 1 s again.
    pub fn succeeded(&self, key: &str) {
        self.failures.lock().expect("backoff lock").remove(key);
    }
}

/// At most one go per key and period.
#[derive(Default)]
pub struct Throttle {
    last: Mutex<HashMap<String, std::time::Instant>>,
}

impl Throttle {
    /// Whether `key` may go now (and, if so, records that it went).
    pub fn ready(&self, key: &str, every: Duration) -> bool {
        let now = std::time::Instant::now();
        let mut last = self.last.lock().expect("throttle lock");
        // Keys of finished runs would pile up: drop the long-idle ones as we go.
        last.retain(|_, t| now.duration_since(*t) < every * 10);
        match last.get(key) {
            Some(t) if now.duration_since(*t) < every => false,
            _ => {
                last.insert(key.to_owned(), now);
                true
            }
        }
    }
}

/// `d` scaled by a random factor in [1 - spread, 1 + spread].
pub fn jitter(d: Duration, spread: f64) -> Duration {
    let factor = 1.0 + spread * (rand::random::<f64>() * 2.0 - 1.0);
    d.mul_f64(factor.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn within(d: Duration, secs: f64) -> bool {
        let s = d.as_secs_f64();
        s >= secs * 0.8 - 1e-9 && s <= secs * 1.2 + 1e-9
    }

    #[test]
    fn backoff_doubles_per_object_caps_and_resets() {
        let b = Backoff::default();
        let cap = Duration::from_secs(10);
        assert!(within(b.failed("a", cap), 1.0));
        assert!(within(b.failed("a", cap), 2.0));
        assert!(within(b.failed("a", cap), 4.0));
        // Another object is not slowed down by the first one's failures.
        assert!(within(b.failed("b", cap), 1.0));
        assert!(within(b.failed("a", cap), 8.0));
        assert!(within(b.failed("a", cap), 10.0), "capped");
        for _ in 0..100 {
            assert!(
                b.failed("a", cap) <= Duration::from_secs(12),
                "no overflow, still capped"
            );
        }
        b.succeeded("a");
        assert!(within(b.failed("a", cap), 1.0), "reset after a success");
    }
}
