//! What the controllers need to know of the backup and restore runs: which of them hold a
//! cluster in maintenance now, and which go first on a cluster (one run at a time per
//! EscCluster, backups and restores alike). Read from the watch caches of the runs (one per
//! watched scope), so an idle cluster costs no API request for it.

use std::sync::Mutex;

use k8s_openapi::jiff::Timestamp;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};

use crate::api::{EscBackup, EscRestore, HolderKind, RunPhase};
use crate::plan::cluster::HolderRequest;

/// The watch caches of the runs.
#[derive(Default)]
pub struct RunStores {
    backups: Mutex<Vec<Store<DeserializeGuard<EscBackup>>>>,
    restores: Mutex<Vec<Store<DeserializeGuard<EscRestore>>>>,
}

/// One run, as far as queueing and maintenance go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRef {
    pub kind: HolderKind,
    pub namespace: String,
    pub name: String,
    pub cluster: String,
    pub created: Option<Timestamp>,
    pub phase: Option<RunPhase>,
    pub deleting: bool,
    /// The run holds its cluster in maintenance now.
    pub holds: bool,
    pub ipt_check: Option<bool>,
}

impl RunRef {
    pub fn of_backup(backup: &EscBackup) -> RunRef {
        let none = Default::default();
        let status = backup.status.as_ref().unwrap_or(&none);
        let deleting = backup.meta().deletion_timestamp.is_some();
        RunRef {
            kind: HolderKind::EscBackup,
            namespace: backup.namespace().unwrap_or_default(),
            name: backup.name_any(),
            cluster: backup.spec.cluster_ref.name.clone(),
            created: backup.meta().creation_timestamp.clone().map(|t| t.0),
            phase: status.phase,
            deleting,
            holds: crate::plan::backup::holds_maintenance(status, deleting),
            ipt_check: backup.spec.ipt_check,
        }
    }

    pub fn of_restore(restore: &EscRestore) -> RunRef {
        let none = Default::default();
        let status = restore.status.as_ref().unwrap_or(&none);
        RunRef {
            kind: HolderKind::EscRestore,
            namespace: restore.namespace().unwrap_or_default(),
            name: restore.name_any(),
            cluster: restore.spec.cluster_ref.name.clone(),
            created: restore.meta().creation_timestamp.clone().map(|t| t.0),
            phase: status.run.phase,
            deleting: restore.meta().deletion_timestamp.is_some(),
            holds: crate::plan::restore::holds_maintenance(status),
            // A restore always checks for in-flight transactions.
            ipt_check: Some(true),
        }
    }
}

impl RunStores {
    pub fn add_backups(&self, store: Store<DeserializeGuard<EscBackup>>) {
        self.backups.lock().expect("run stores lock").push(store);
    }

    pub fn add_restores(&self, store: Store<DeserializeGuard<EscRestore>>) {
        self.restores.lock().expect("run stores lock").push(store);
    }

    /// Every run the caches hold (the ones that deserialize), backups and restores.
    pub fn runs(&self) -> Vec<RunRef> {
        let mut out = Vec::new();
        for store in self.backups.lock().expect("run stores lock").iter() {
            for b in store.state() {
                let Ok(backup) = b.0.as_ref() else { continue };
                out.push(RunRef::of_backup(backup));
            }
        }
        for store in self.restores.lock().expect("run stores lock").iter() {
            for r in store.state() {
                let Ok(restore) = r.0.as_ref() else { continue };
                out.push(RunRef::of_restore(restore));
            }
        }
        out
    }

    /// The runs that hold EscCluster `namespace/cluster` in maintenance now.
    pub fn holders(&self, namespace: &str, cluster: &str) -> Vec<HolderRequest> {
        let mut holders: Vec<HolderRequest> = self
            .runs()
            .into_iter()
            .filter(|r| r.namespace == namespace && r.cluster == cluster && r.holds)
            .map(|r| HolderRequest {
                kind: r.kind,
                name: r.name,
                ipt_check: r.ipt_check,
            })
            .collect();
        // A stable order: the cache's is not, and the holders end up in status.
        holders
            .sort_by(|a, b| (a.name.as_str(), a.kind as u8).cmp(&(b.name.as_str(), b.kind as u8)));
        holders
    }

    /// How many runs on the same cluster go before this one: running ones, then pending ones
    /// created earlier (kind and name break a tie). A restore that is being deleted while it
    /// runs still counts: it goes on to its end.
    pub fn queue_position(&self, me: &RunRef) -> u32 {
        let key = |r: &RunRef| (r.created, r.kind as u8, r.name.clone());
        let mine = key(me);
        self.runs()
            .into_iter()
            .filter(|r| r.namespace == me.namespace && r.cluster == me.cluster)
            .filter(|r| !(r.kind == me.kind && r.name == me.name))
            .filter(|r| match r.phase {
                Some(RunPhase::Running) => true,
                None | Some(RunPhase::Pending) => !r.deleting && key(r) < mine,
                Some(RunPhase::Succeeded | RunPhase::Failed) => false,
            })
            .count() as u32
    }
}
