//! What `kubectl esc` prints: the status screen of an EscCluster and the table of backups.
//! Pure: objects and the time in, text out (unit-tested without a server).

use std::fmt::Write;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::api::{
    Condition, EscBackup, EscCluster, EscRestore, NodeRole, OpMode, RunPhase, ServicesState,
    Topology,
};

/// `3m`, `2h`, `4d`: how long ago, as kubectl writes ages.
pub fn age(then: Option<&Timestamp>, now: Timestamp) -> String {
    let Some(then) = then else {
        return "-".to_owned();
    };
    let secs = (now.as_second() - then.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Bytes as a person reads them.
pub fn size(bytes: i64) -> String {
    let b = bytes.max(0) as f64;
    match b {
        b if b < 1024.0 => format!("{b} B"),
        b if b < 1024.0 * 1024.0 => format!("{:.1} KiB", b / 1024.0),
        b if b < 1024.0 * 1024.0 * 1024.0 => format!("{:.1} MiB", b / 1024.0 / 1024.0),
        b => format!("{:.2} GiB", b / 1024.0 / 1024.0 / 1024.0),
    }
}

fn phase(p: Option<RunPhase>) -> &'static str {
    match p {
        None => "New",
        Some(RunPhase::Pending) => "Pending",
        Some(RunPhase::Running) => "Running",
        Some(RunPhase::Succeeded) => "Succeeded",
        Some(RunPhase::Failed) => "Failed",
    }
}

fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

fn created(
    meta_time: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
) -> Option<Timestamp> {
    meta_time.map(|t| t.0)
}

/// The most recent run of `cluster` among `runs`, by creation time.
fn latest<'a, K: ResourceExt>(
    runs: &'a [K],
    cluster_of: impl Fn(&K) -> &str,
    cluster: &str,
) -> Option<&'a K> {
    runs.iter()
        .filter(|r| cluster_of(r) == cluster)
        .max_by_key(|r| (created(r.meta().creation_timestamp.as_ref()), r.name_any()))
}

/// One EscCluster on one screen: mode, roles, services, versions, holders, the last backup and
/// restore, and the conditions.
pub fn status_screen(
    cluster: &EscCluster,
    backups: &[EscBackup],
    restores: &[EscRestore],
    now: Timestamp,
) -> String {
    let mut out = String::new();
    let status = cluster.status.clone().unwrap_or_default();
    let name = cluster.name_any();
    let topology = match cluster.spec.topology {
        Topology::Ha => "HA pair",
        Topology::Standalone => "standalone",
    };
    let _ = writeln!(
        out,
        "EscCluster {}/{name} ({topology})",
        cluster.namespace().unwrap_or_default()
    );
    let mode = match status.op_mode {
        Some(OpMode::Operation) => "Operation",
        Some(OpMode::Maintenance) => "MAINTENANCE",
        Some(OpMode::Unknown) | None => "unknown",
    };
    let stale = status.observed_generation != cluster.metadata.generation;
    let _ = writeln!(
        out,
        "  mode: {mode}    master: {}{}",
        status.master.as_deref().unwrap_or("unknown"),
        if stale {
            "    (status is from an older generation: the operator has not caught up)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "  {:<16} {:<10} {:<10} {:<10} VERSION",
        "NODE", "ROLE", "REACHABLE", "SERVICES"
    );
    for spec_node in &cluster.spec.nodes {
        let seen = status.nodes.iter().find(|n| n.name == spec_node.name);
        let role = seen.map_or("-", |n| match n.role {
            NodeRole::Master => "MASTER",
            NodeRole::Backup => "BACKUP",
            NodeRole::Standalone => "STANDALONE",
            NodeRole::Unknown => "unknown",
        });
        let reachable = seen.map_or("-", |n| if n.reachable { "yes" } else { "NO" });
        let services = seen.map_or("-".to_owned(), |n| match n.services {
            ServicesState::Running => "running".to_owned(),
            ServicesState::Stopped => "STOPPED".to_owned(),
            ServicesState::Partial => {
                format!("partial (stopped: {})", n.stopped_services.join(","))
            }
            ServicesState::Unknown => "unknown".to_owned(),
        });
        let version = seen
            .and_then(|n| n.esc_version.clone())
            .unwrap_or_else(|| "-".to_owned());
        let _ = writeln!(
            out,
            "  {:<16} {:<10} {:<10} {:<10} {version}",
            spec_node.name, role, reachable, services
        );
    }
    if status.maintenance_holders.is_empty() {
        let _ = writeln!(out, "  maintenance holders: none");
    } else {
        let holders: Vec<String> = status
            .maintenance_holders
            .iter()
            .map(|h| {
                format!(
                    "{:?} {} (since {} ago)",
                    h.kind,
                    h.name,
                    age(Some(&h.since.0), now)
                )
            })
            .collect();
        let _ = writeln!(out, "  maintenance holders: {}", holders.join(", "));
    }
    match latest(backups, |b| &b.spec.cluster_ref.name, &name) {
        Some(b) => {
            let s = b.status.clone().unwrap_or_default();
            let what = s
                .artifact
                .as_ref()
                .map(|a| format!("  {} ({})", a.uri, size(a.size)))
                .or_else(|| s.message.clone().map(|m| format!("  {m}")))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  last backup:  {} {} {} ago{what}",
                b.name_any(),
                phase(s.phase),
                age(
                    created(b.metadata.creation_timestamp.as_ref()).as_ref(),
                    now
                )
            );
        }
        None => {
            let _ = writeln!(out, "  last backup:  none");
        }
    }
    match latest(restores, |r| &r.spec.cluster_ref.name, &name) {
        Some(r) => {
            let s = r.status.clone().unwrap_or_default();
            let step = s
                .run
                .steps
                .last()
                .map(|st| format!(" (step {:?})", st.name))
                .filter(|_| s.run.phase == Some(RunPhase::Running))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  last restore: {} {}{step} {} ago{}",
                r.name_any(),
                phase(s.run.phase),
                age(
                    created(r.metadata.creation_timestamp.as_ref()).as_ref(),
                    now
                ),
                if s.stopped_nodes.is_empty() {
                    String::new()
                } else {
                    format!("  ESC STOPPED on {}", s.stopped_nodes.join(", "))
                }
            );
        }
        None => {
            let _ = writeln!(out, "  last restore: none");
        }
    }
    let _ = writeln!(out, "  conditions:");
    for type_ in ["Ready", "Reachable", "Maintenance", "Degraded"] {
        match condition(&status.conditions, type_) {
            Some(c) => {
                let _ = writeln!(
                    out,
                    "    {type_}={} ({}): {}",
                    c.status, c.reason, c.message
                );
            }
            None => {
                let _ = writeln!(out, "    {type_}: not reported yet");
            }
        }
    }
    out
}

/// The backups as a table: name, cluster, phase, size, SHA-256 (short), ESC version, age.
pub fn backups_table(backups: &[EscBackup], all_namespaces: bool, now: Timestamp) -> String {
    let mut rows: Vec<Vec<String>> = vec![
        [
            all_namespaces.then_some("NAMESPACE"),
            Some("NAME"),
            Some("CLUSTER"),
            Some("PHASE"),
            Some("SIZE"),
            Some("SHA256"),
            Some("ESC"),
            Some("AGE"),
        ]
        .into_iter()
        .flatten()
        .map(String::from)
        .collect(),
    ];
    let mut sorted: Vec<&EscBackup> = backups.iter().collect();
    sorted.sort_by_key(|b| {
        (
            b.namespace(),
            std::cmp::Reverse(created(b.metadata.creation_timestamp.as_ref())),
            b.name_any(),
        )
    });
    for b in sorted {
        let s = b.status.clone().unwrap_or_default();
        let a = s.artifact.as_ref();
        let mut row = Vec::new();
        if all_namespaces {
            row.push(b.namespace().unwrap_or_default());
        }
        row.extend([
            b.name_any(),
            b.spec.cluster_ref.name.clone(),
            phase(s.phase).to_owned(),
            a.map_or("-".into(), |a| size(a.size)),
            a.map_or("-".into(), |a| a.sha256.chars().take(12).collect()),
            a.map_or("-".into(), |a| a.esc_version.clone()),
            age(
                created(b.metadata.creation_timestamp.as_ref()).as_ref(),
                now,
            ),
        ]);
        rows.push(row);
    }
    table(&rows)
}

/// Columns padded to their widest cell, two spaces apart.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

#[cfg(test)]
mod tests;
