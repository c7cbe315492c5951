//! What the EscCluster controller needs to know of the backup and restore runs: which of them
//! hold a cluster in maintenance now. Read from the watch caches of the runs (one per watched
//! scope), so an idle cluster costs no API request for it.

use std::sync::Mutex;

use kube::ResourceExt;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::Store;

use crate::api::{EscBackup, HolderKind};
use crate::plan::backup::holds_maintenance;
use crate::plan::cluster::HolderRequest;

/// The watch caches of the runs.
#[derive(Default)]
pub struct RunStores {
    backups: Mutex<Vec<Store<DeserializeGuard<EscBackup>>>>,
}

impl RunStores {
    pub fn add_backups(&self, store: Store<DeserializeGuard<EscBackup>>) {
        self.backups.lock().expect("run stores lock").push(store);
    }

    /// Every EscBackup the caches hold (the ones that deserialize).
    pub fn backups(&self) -> Vec<EscBackup> {
        let stores = self.backups.lock().expect("run stores lock");
        stores
            .iter()
            .flat_map(|s| s.state())
            .filter_map(|b| b.0.as_ref().ok().cloned())
            .collect()
    }

    /// The runs that hold EscCluster `namespace/cluster` in maintenance now.
    pub fn holders(&self, namespace: &str, cluster: &str) -> Vec<HolderRequest> {
        let stores = self.backups.lock().expect("run stores lock");
        let mut holders: Vec<HolderRequest> = stores
            .iter()
            .flat_map(|s| s.state())
            .filter(|b| b.namespace().as_deref() == Some(namespace))
            .filter_map(|b| {
                let backup = b.0.as_ref().ok()?;
                let status = backup.status.as_ref()?;
                let deleting = backup.metadata.deletion_timestamp.is_some();
                (backup.spec.cluster_ref.name == cluster && holds_maintenance(status, deleting))
                    .then(|| HolderRequest {
                        kind: HolderKind::EscBackup,
                        name: backup.name_any(),
                        ipt_check: backup.spec.ipt_check,
                    })
            })
            .collect();
        // A stable order: the cache's is not, and the holders end up in status.
        holders.sort_by(|a, b| a.name.cmp(&b.name));
        holders
    }
}
