//! The pure state machine of a simulated ESC node and of an HA pair: operation mode, services,
//! roles and the failover rule. No I/O here: the escadm shell (`escadm.rs`) loads a [`World`]
//! under the simulator's lock, calls one of these functions and writes the result back.
//!
//! Rules implemented (the manual's, plus documented assumptions; see README.md):
//! - Operation mode is replicated in an HA pair (it lives in the database, which DRBD
//!   replicates), so setting it on either node sets it on both. It survives stop, restart and
//!   restore (ESC 4.4+).
//! - `op_mode set` needs the node's services running (exit 7 otherwise). With `--ipt_check=true`
//!   and in-flight transactions anywhere in the pair, entering MAINTENANCE is refused (exit 3).
//! - `backup` needs MAINTENANCE (exit 4), running services (exit 7) and a node that is not the
//!   HA BACKUP (exit 5).
//! - `restore` needs every service of the node stopped (exit 6). A database taken on a newer ESC
//!   version is accepted, and the node then reports itself corrupted.
//! - keepalived (no preemption): stopping the MASTER while its peer runs makes the peer MASTER
//!   (a failover). A node that starts while its peer runs as MASTER becomes BACKUP (and syncs the
//!   database from the master, as DRBD does); a node that starts while its peer is stopped
//!   becomes MASTER. So stopping BACKUP then MASTER, then restarting MASTER then BACKUP, gives
//!   the original roles back with no failover.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::formats;

/// ESC's operation mode.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Mode {
    Operation,
    Maintenance,
}

impl Mode {
    /// The value `op_mode set --mode=` accepts (exactly, lower case, as the manual writes it).
    pub fn parse_arg(s: &str) -> Option<Mode> {
        match s {
            "operation" => Some(Mode::Operation),
            "maintenance" => Some(Mode::Maintenance),
            _ => None,
        }
    }

    /// As escadm prints it: `OPERATION`, `MAINTENANCE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Operation => "OPERATION",
            Mode::Maintenance => "MAINTENANCE",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A node's HA role. A standalone node has no keepalived.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    Standalone,
    Master,
    Backup,
}

impl Role {
    /// The word used in `status --v`'s summary line: `Master`, `Backup`, `Standalone`.
    pub fn word(self) -> &'static str {
        match self {
            Role::Standalone => "Standalone",
            Role::Master => "Master",
            Role::Backup => "Backup",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Standalone => "STANDALONE",
            Role::Master => "MASTER",
            Role::Backup => "BACKUP",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An ESC version such as `5.10.0.86`, compared numerically part by part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EscVersion(Vec<u64>);

impl EscVersion {
    pub fn parse(s: &str) -> Option<EscVersion> {
        let parts: Option<Vec<u64>> = s.trim().split('.').map(|p| p.parse().ok()).collect();
        let parts = parts?;
        if parts.is_empty() || parts.len() > 6 {
            return None;
        }
        Some(EscVersion(parts))
    }

    /// The database schema version of this ESC release: `major.minor` (assumption).
    pub fn schema(&self) -> String {
        let minor = self.0.get(1).copied().unwrap_or(0);
        format!("{}.{}", self.0[0], minor)
    }
}

impl Ord for EscVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.0.len().max(other.0.len());
        for i in 0..n {
            let a = self.0.get(i).copied().unwrap_or(0);
            let b = other.0.get(i).copied().unwrap_or(0);
            match a.cmp(&b) {
                Ordering::Equal => continue,
                o => return o,
            }
        }
        Ordering::Equal
    }
}

impl PartialOrd for EscVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for EscVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s: Vec<String> = self.0.iter().map(|p| p.to_string()).collect();
        f.write_str(&s.join("."))
    }
}

/// Compares two version strings; unparsable ones compare equal (never "newer").
pub fn version_cmp(a: &str, b: &str) -> Ordering {
    match (EscVersion::parse(a), EscVersion::parse(b)) {
        (Some(a), Some(b)) => a.cmp(&b),
        _ => Ordering::Equal,
    }
}

/// Services of a standalone node, in `status --v` order (assumption).
pub const STANDALONE_SERVICES: &[&str] = &[
    "pgsql",
    "confd",
    "mona",
    "vimmanager",
    "escmanager",
    "portal",
    "snmp",
];
/// Services of an HA node, in `status --v` order (assumption).
pub const HA_SERVICES: &[&str] = &[
    "pgsql",
    "keepalived",
    "drbd",
    "confd",
    "mona",
    "vimmanager",
    "escmanager",
    "portal",
    "snmp",
];

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub running: bool,
}

/// The ESC database: what `backup` archives and `restore` loads.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Database {
    /// Version of the ESC that wrote this database (for a restored one: the backup's).
    pub esc_version: String,
    /// Schema version (`major.minor` of `esc_version`).
    pub schema_version: String,
    /// The content: any JSON (tenants, deployments...). Tests put markers here.
    pub content: serde_json::Value,
}

impl Database {
    pub fn fresh(esc_version: &str) -> Database {
        Database {
            esc_version: esc_version.to_owned(),
            schema_version: schema_of(esc_version),
            content: serde_json::json!({ "tenants": ["admin"], "deployments": [] }),
        }
    }
}

pub fn schema_of(version: &str) -> String {
    EscVersion::parse(version)
        .map(|v| v.schema())
        .unwrap_or_else(|| version.to_owned())
}

/// Everything the simulator knows about one node.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct NodeState {
    pub name: String,
    pub esc_version: String,
    /// The other node of an HA pair.
    pub peer: Option<String>,
    pub role: Role,
    pub mode: Mode,
    pub services: Vec<Service>,
    /// How many times the services were started (service pids change with it).
    pub generation: u32,
    /// First pid shown by `status --v` (distinct per node).
    pub pid_base: u32,
    /// In-flight transactions (northbound requests still being processed).
    pub in_flight: u32,
    /// When set, the in-flight transactions complete at this time (unix ms).
    pub in_flight_drain_at_ms: Option<u64>,
    pub db: Database,
    /// Failovers this node took over (became MASTER because its peer's master stopped).
    pub takeovers: u32,
}

impl NodeState {
    pub fn new(name: &str, esc_version: &str, role: Role, peer: Option<&str>, index: u32) -> Self {
        let names = if role == Role::Standalone {
            STANDALONE_SERVICES
        } else {
            HA_SERVICES
        };
        NodeState {
            name: name.to_owned(),
            esc_version: esc_version.to_owned(),
            peer: peer.map(str::to_owned),
            role,
            mode: Mode::Operation,
            services: names
                .iter()
                .map(|n| Service {
                    name: (*n).to_owned(),
                    running: true,
                })
                .collect(),
            generation: 1,
            pid_base: 2100 + 1000 * index,
            in_flight: 0,
            in_flight_drain_at_ms: None,
            db: Database::fresh(esc_version),
            takeovers: 0,
        }
    }

    pub fn all_running(&self) -> bool {
        self.services.iter().all(|s| s.running)
    }

    pub fn all_stopped(&self) -> bool {
        self.services.iter().all(|s| !s.running)
    }

    /// keepalived's view: a node takes part in VRRP while its services (keepalived) run.
    pub fn keepalived_up(&self) -> bool {
        self.services
            .iter()
            .find(|s| s.name == "keepalived")
            .map(|s| s.running)
            .unwrap_or(!self.all_stopped())
    }

    /// The database is from a newer ESC than this node runs: a schema downgrade happened.
    pub fn corruption(&self) -> Option<String> {
        if version_cmp(&self.db.esc_version, &self.esc_version) == Ordering::Greater {
            Some(formats::corruption_detail(
                &self.db.schema_version,
                &self.db.esc_version,
                &self.esc_version,
            ))
        } else {
            None
        }
    }

    /// `pid` shown for the i-th service.
    pub fn service_pid(&self, i: usize) -> u32 {
        self.pid_base + self.generation * 16 + i as u32
    }

    /// Monitoring is paused in MAINTENANCE (and not running when the services are stopped).
    pub fn monitoring(&self) -> &'static str {
        if self.all_stopped() {
            "stopped"
        } else if self.mode == Mode::Maintenance {
            "paused"
        } else {
            "active"
        }
    }
}

/// What the journal records besides the commands themselves.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    ModeChanged {
        from: Mode,
        to: Mode,
    },
    RoleChanged {
        from: Role,
        to: Role,
    },
    /// `to` became MASTER because `from`, the MASTER, stopped while `to` was running.
    Failover {
        from: String,
        to: String,
    },
    ServicesStopped,
    ServicesStarted,
    InFlightDrained {
        count: u32,
    },
    BackupWritten {
        dest: String,
        bytes: u64,
    },
    DatabaseRestored {
        from_version: String,
        schema_version: String,
        corrupted: bool,
    },
    DatabaseSynced {
        from: String,
    },
    LogsCollected {
        path: String,
    },
}

/// A refused or failed command: message for stderr (without the `ERROR: ` prefix) and the exit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub exit: i32,
    pub message: String,
}

impl Refusal {
    pub fn new(exit: i32, message: impl Into<String>) -> Self {
        Refusal {
            exit,
            message: message.into(),
        }
    }
}

/// The result of a successful command: stdout lines and events for the journal.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    pub stdout: Vec<String>,
    pub events: Vec<(String, Event)>,
}

impl Outcome {
    fn line(&mut self, l: impl Into<String>) {
        self.stdout.push(l.into());
    }
    fn event(&mut self, node: &str, e: Event) {
        self.events.push((node.to_owned(), e));
    }
}

/// The nodes one command can see: a standalone node, or both nodes of an HA pair.
#[derive(Clone, Debug, PartialEq)]
pub struct World {
    pub nodes: Vec<NodeState>,
}

impl World {
    pub fn node(&self, name: &str) -> &NodeState {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .expect("node in world")
    }

    fn idx(&self, name: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .expect("node in world")
    }

    fn peer_idx(&self, name: &str) -> Option<usize> {
        let peer = self.node(name).peer.clone()?;
        self.nodes.iter().position(|n| n.name == peer)
    }

    /// Completes the in-flight transactions whose drain time has come.
    pub fn drain(&mut self, now_ms: u64) -> Vec<(String, Event)> {
        let mut events = Vec::new();
        for n in &mut self.nodes {
            if let Some(at) = n.in_flight_drain_at_ms
                && now_ms >= at
            {
                if n.in_flight > 0 {
                    events.push((
                        n.name.clone(),
                        Event::InFlightDrained { count: n.in_flight },
                    ));
                }
                n.in_flight = 0;
                n.in_flight_drain_at_ms = None;
            }
        }
        events
    }

    pub fn in_flight_total(&self) -> u32 {
        self.nodes.iter().map(|n| n.in_flight).sum()
    }
}

pub fn op_mode_show(world: &World, node: &str) -> Outcome {
    let mut o = Outcome::default();
    o.line(formats::op_mode_line(world.node(node).mode));
    o
}

pub fn op_mode_set(
    world: &mut World,
    node: &str,
    mode: Mode,
    ipt_check: bool,
) -> Result<Outcome, Refusal> {
    let n = world.node(node);
    if n.all_stopped() {
        return Err(Refusal::new(
            formats::EXIT_NOT_RUNNING,
            formats::services_not_running(),
        ));
    }
    if ipt_check && mode == Mode::Maintenance && n.mode != Mode::Maintenance {
        let count = world.in_flight_total();
        if count > 0 {
            return Err(Refusal::new(
                formats::EXIT_IN_FLIGHT,
                formats::ipt_refusal(count, mode),
            ));
        }
    }
    let from = n.mode;
    let mut o = Outcome::default();
    // Replicated in an HA pair: the mode is in the (DRBD-replicated) database.
    for n in &mut world.nodes {
        n.mode = mode;
    }
    if from != mode {
        o.event(node, Event::ModeChanged { from, to: mode });
    }
    o.line(formats::set_mode_line(mode));
    o.line(formats::op_mode_line(mode));
    Ok(o)
}

pub fn status(world: &World, node: &str) -> Outcome {
    let n = world.node(node);
    let mut o = Outcome::default();
    for (i, s) in n.services.iter().enumerate() {
        o.line(formats::service_line(&s.name, s.running, n.service_pid(i)));
    }
    o.line(formats::version_line(&n.esc_version));
    o.line(summary(n));
    o
}

fn summary(n: &NodeState) -> String {
    if n.all_stopped() {
        return formats::summary_stopped(n.role);
    }
    if let Some(detail) = n.corruption() {
        return formats::summary_unhealthy(n.role, &detail);
    }
    if let Some(s) = n.services.iter().find(|s| !s.running) {
        return formats::summary_unhealthy(n.role, &formats::service_line(&s.name, false, 0));
    }
    formats::summary_healthy(n.role)
}

/// Whether `backup` may run on `node` now.
pub fn check_backup(world: &World, node: &str) -> Result<(), Refusal> {
    let n = world.node(node);
    if n.all_stopped() {
        return Err(Refusal::new(
            formats::EXIT_NOT_RUNNING,
            formats::services_not_running(),
        ));
    }
    if n.role == Role::Backup {
        return Err(Refusal::new(
            formats::EXIT_WRONG_ROLE,
            formats::backup_on_standby(),
        ));
    }
    if n.mode != Mode::Maintenance {
        return Err(Refusal::new(
            formats::EXIT_NEEDS_MAINTENANCE,
            formats::backup_needs_maintenance(n.mode),
        ));
    }
    Ok(())
}

/// Whether `restore` may run on `node` now.
pub fn check_restore(world: &World, node: &str) -> Result<(), Refusal> {
    let n = world.node(node);
    let running: Vec<&str> = n
        .services
        .iter()
        .filter(|s| s.running)
        .map(|s| s.name.as_str())
        .collect();
    if !running.is_empty() {
        return Err(Refusal::new(
            formats::EXIT_SERVICES_RUNNING,
            formats::restore_services_running(&running),
        ));
    }
    Ok(())
}

/// Loads a database into `node` (after [`check_restore`] and reading the archive).
pub fn apply_restore(world: &mut World, node: &str, db: Database) -> Outcome {
    let i = world.idx(node);
    let mut o = Outcome::default();
    world.nodes[i].db = db.clone();
    let corrupted = world.nodes[i].corruption().is_some();
    o.event(
        node,
        Event::DatabaseRestored {
            from_version: db.esc_version,
            schema_version: db.schema_version,
            corrupted,
        },
    );
    o
}

/// `escadm stop`: stops every service of the node, keepalived included.
pub fn stop(world: &mut World, node: &str) -> Outcome {
    let mut o = Outcome::default();
    o.line(formats::STOPPING);
    stop_inner(world, node, &mut o);
    o.line(formats::STOPPED);
    o
}

fn stop_inner(world: &mut World, node: &str, o: &mut Outcome) {
    let i = world.idx(node);
    if world.nodes[i].all_stopped() {
        return;
    }
    let was_master = world.nodes[i].role == Role::Master;
    for s in &mut world.nodes[i].services {
        s.running = false;
    }
    o.event(node, Event::ServicesStopped);
    if was_master
        && let Some(p) = world.peer_idx(node)
        && world.nodes[p].keepalived_up()
    {
        let peer = world.nodes[p].name.clone();
        let from = world.nodes[p].role;
        world.nodes[p].role = Role::Master;
        world.nodes[p].takeovers += 1;
        o.event(
            &peer,
            Event::Failover {
                from: node.to_owned(),
                to: peer.clone(),
            },
        );
        if from != Role::Master {
            o.event(
                &peer,
                Event::RoleChanged {
                    from,
                    to: Role::Master,
                },
            );
        }
    }
}

/// `escadm restart`: stops the node's services if they run (with the failover that may
/// cause), then starts them; an HA node takes the role keepalived gives it.
pub fn restart(world: &mut World, node: &str) -> Outcome {
    let mut o = Outcome::default();
    o.line(formats::RESTARTING);
    stop_inner(world, node, &mut o);
    let i = world.idx(node);
    for s in &mut world.nodes[i].services {
        s.running = true;
    }
    world.nodes[i].generation += 1;
    o.event(node, Event::ServicesStarted);
    if world.nodes[i].role != Role::Standalone {
        let peer = world
            .peer_idx(node)
            .filter(|&p| world.nodes[p].keepalived_up());
        let new_role = match peer {
            Some(p) if world.nodes[p].role == Role::Master => Role::Backup,
            _ => Role::Master,
        };
        let from = world.nodes[i].role;
        world.nodes[i].role = new_role;
        if from != new_role {
            o.event(node, Event::RoleChanged { from, to: new_role });
        }
        if new_role == Role::Backup
            && let Some(p) = peer
        {
            // DRBD: the standby's disk is a replica of the master's.
            let db = world.nodes[p].db.clone();
            let from = world.nodes[p].name.clone();
            world.nodes[i].db = db;
            o.event(node, Event::DatabaseSynced { from });
        }
    }
    o.line(formats::STARTED);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> World {
        World {
            nodes: vec![
                NodeState::new("a", "5.10.0.86", Role::Master, Some("b"), 0),
                NodeState::new("b", "5.10.0.86", Role::Backup, Some("a"), 1),
            ],
        }
    }

    fn single() -> World {
        World {
            nodes: vec![NodeState::new("s", "5.10.0.86", Role::Standalone, None, 0)],
        }
    }

    fn has(o: &Outcome, node: &str, pred: impl Fn(&Event) -> bool) -> bool {
        o.events.iter().any(|(n, e)| n == node && pred(e))
    }

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(version_cmp("5.10.0.86", "5.9.1.20"), Ordering::Greater);
        assert_eq!(version_cmp("5.10", "5.10.0.0"), Ordering::Equal);
        assert_eq!(version_cmp("4.4.0.1", "5.0"), Ordering::Less);
        assert_eq!(EscVersion::parse("5.10.0.86").unwrap().schema(), "5.10");
        assert!(EscVersion::parse("5.x").is_none());
    }

    #[test]
    fn op_mode_round_trip_prints_manual_lines() {
        let mut w = single();
        let o = op_mode_set(&mut w, "s", Mode::Maintenance, false).unwrap();
        assert_eq!(
            o.stdout,
            vec!["Set mode to MAINTENANCE", "Operation Mode = MAINTENANCE"]
        );
        assert_eq!(
            op_mode_show(&w, "s").stdout,
            vec!["Operation Mode = MAINTENANCE"]
        );
        let o = op_mode_set(&mut w, "s", Mode::Operation, false).unwrap();
        assert_eq!(
            o.stdout,
            vec!["Set mode to OPERATION", "Operation Mode = OPERATION"]
        );
        assert!(has(&o, "s", |e| matches!(
            e,
            Event::ModeChanged {
                to: Mode::Operation,
                ..
            }
        )));
        // Setting the mode it has: same lines, no event.
        let o = op_mode_set(&mut w, "s", Mode::Operation, false).unwrap();
        assert!(o.events.is_empty());
    }

    #[test]
    fn ipt_check_refuses_while_transactions_in_flight_then_allows_after_drain() {
        let mut w = pair();
        w.nodes[0].in_flight = 2;
        w.nodes[0].in_flight_drain_at_ms = Some(1000);
        let r = op_mode_set(&mut w, "a", Mode::Maintenance, true).unwrap_err();
        assert_eq!(r.exit, formats::EXIT_IN_FLIGHT);
        assert!(r.message.contains("2 in-flight"), "{}", r.message);
        assert_eq!(w.node("a").mode, Mode::Operation);
        // Without ipt_check the same request goes through (the manual's default).
        let mut w2 = w.clone();
        op_mode_set(&mut w2, "a", Mode::Maintenance, false).unwrap();
        // After the drain time, the check passes.
        assert!(w.drain(999).is_empty());
        let ev = w.drain(1000);
        assert_eq!(ev.len(), 1);
        op_mode_set(&mut w, "a", Mode::Maintenance, true).unwrap();
        assert_eq!(
            w.node("b").mode,
            Mode::Maintenance,
            "replicated to the peer"
        );
    }

    #[test]
    fn stopping_master_first_fails_over() {
        let mut w = pair();
        let o = stop(&mut w, "a");
        assert!(has(
            &o,
            "b",
            |e| matches!(e, Event::Failover { from, to } if from == "a" && to == "b")
        ));
        assert_eq!(w.node("b").role, Role::Master);
        assert_eq!(
            w.node("a").role,
            Role::Master,
            "a stopped node keeps its last role"
        );
        // The old master comes back as BACKUP (no preemption) and syncs the database.
        w.nodes[1].db.content = serde_json::json!({"marker": 1});
        let o = restart(&mut w, "a");
        assert_eq!(w.node("a").role, Role::Backup);
        assert_eq!(w.node("a").db.content, serde_json::json!({"marker": 1}));
        assert!(has(&o, "a", |e| matches!(e, Event::DatabaseSynced { .. })));
    }

    #[test]
    fn stopping_backup_first_then_master_has_no_failover_and_restart_restores_roles() {
        let mut w = pair();
        let o1 = stop(&mut w, "b");
        let o2 = stop(&mut w, "a");
        for o in [&o1, &o2] {
            assert!(
                !o.events
                    .iter()
                    .any(|(_, e)| matches!(e, Event::Failover { .. }))
            );
        }
        assert_eq!(w.node("a").role, Role::Master);
        assert_eq!(w.node("b").role, Role::Backup);
        assert_eq!(
            status(&w, "a").stdout.last().unwrap(),
            "ESC status=3 ESC Master Stopped"
        );
        assert_eq!(
            status(&w, "b").stdout.last().unwrap(),
            "ESC status=3 ESC Backup Stopped"
        );
        restart(&mut w, "a");
        restart(&mut w, "b");
        assert_eq!(w.node("a").role, Role::Master);
        assert_eq!(w.node("b").role, Role::Backup);
        assert_eq!(
            status(&w, "b").stdout.last().unwrap(),
            "ESC status=0 ESC Backup Healthy"
        );
    }

    #[test]
    fn restarting_running_master_hands_over_to_the_standby() {
        let mut w = pair();
        let o = restart(&mut w, "a");
        assert!(
            o.events
                .iter()
                .any(|(_, e)| matches!(e, Event::Failover { .. }))
        );
        assert_eq!(w.node("a").role, Role::Backup);
        assert_eq!(w.node("b").role, Role::Master);
    }

    #[test]
    fn backup_rules() {
        let mut w = pair();
        assert_eq!(
            check_backup(&w, "a").unwrap_err().exit,
            formats::EXIT_NEEDS_MAINTENANCE
        );
        op_mode_set(&mut w, "a", Mode::Maintenance, true).unwrap();
        check_backup(&w, "a").unwrap();
        assert_eq!(
            check_backup(&w, "b").unwrap_err().exit,
            formats::EXIT_WRONG_ROLE
        );
        stop(&mut w, "b");
        stop(&mut w, "a");
        assert_eq!(
            check_backup(&w, "a").unwrap_err().exit,
            formats::EXIT_NOT_RUNNING
        );
    }

    #[test]
    fn restore_needs_all_services_stopped_and_flags_a_downgrade() {
        let mut w = single();
        let r = check_restore(&w, "s").unwrap_err();
        assert_eq!(r.exit, formats::EXIT_SERVICES_RUNNING);
        assert!(r.message.contains("escmanager"));
        stop(&mut w, "s");
        check_restore(&w, "s").unwrap();
        let newer = Database {
            esc_version: "5.11.0.3".into(),
            schema_version: "5.11".into(),
            content: serde_json::json!({}),
        };
        let o = apply_restore(&mut w, "s", newer);
        assert!(has(&o, "s", |e| matches!(
            e,
            Event::DatabaseRestored {
                corrupted: true,
                ..
            }
        )));
        restart(&mut w, "s");
        assert_eq!(
            status(&w, "s").stdout.last().unwrap(),
            "ESC status=2 ESC Standalone Unhealthy: database corrupted (schema 5.11 restored on ESC 5.10.0.86)"
        );
        // An older database is fine (ESC migrates the schema up).
        stop(&mut w, "s");
        apply_restore(&mut w, "s", Database::fresh("5.9.1.20"));
        restart(&mut w, "s");
        assert_eq!(
            status(&w, "s").stdout.last().unwrap(),
            "ESC status=0 ESC Standalone Healthy"
        );
    }

    #[test]
    fn op_mode_set_needs_running_services() {
        let mut w = single();
        stop(&mut w, "s");
        assert_eq!(
            op_mode_set(&mut w, "s", Mode::Maintenance, false)
                .unwrap_err()
                .exit,
            formats::EXIT_NOT_RUNNING
        );
        // Mode persists across a restart.
        restart(&mut w, "s");
        op_mode_set(&mut w, "s", Mode::Maintenance, false).unwrap();
        stop(&mut w, "s");
        restart(&mut w, "s");
        assert_eq!(w.node("s").mode, Mode::Maintenance);
    }

    #[test]
    fn status_lists_services_version_and_summary() {
        let w = pair();
        let lines = status(&w, "a").stdout;
        assert_eq!(lines.len(), HA_SERVICES.len() + 2);
        assert_eq!(lines[0], "pgsql (pid 2116) is running");
        assert_eq!(lines[HA_SERVICES.len()], "ESC version: 5.10.0.86");
        assert_eq!(lines.last().unwrap(), "ESC status=0 ESC Master Healthy");
    }
}
