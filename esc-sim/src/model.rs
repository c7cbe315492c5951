//! The pure state machine of a simulated ESC node and of an HA pair: operation mode, services,
//! roles and the failover rule. No I/O here: the escadm shell (`escadm.rs`) loads a [`World`]
//! under the simulator's lock, calls one of these functions and writes the result back.
//!
//! It answers in types, never in text: a step returns its typed result (an [`Outcome`] with the
//! events for the journal) or a [`Refusal`] saying which rule refused it, with the rule's data.
//! `formats.rs` renders them; this module imports nothing of the crate (it is the leaf).
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
    pub fn corruption(&self) -> Option<Corruption> {
        if version_cmp(&self.db.esc_version, &self.esc_version) == Ordering::Greater {
            Some(Corruption {
                schema: self.db.schema_version.clone(),
                db_version: self.db.esc_version.clone(),
                node_version: self.esc_version.clone(),
            })
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

/// A database restored from a newer ESC than the node runs (a schema downgrade).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corruption {
    /// Schema version of the restored database.
    pub schema: String,
    /// ESC version that wrote the restored database.
    pub db_version: String,
    /// ESC version the node runs.
    pub node_version: String,
}

/// Why a rule of the state machine refused a command. The command then has no effect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The node's services are stopped (`op_mode set`, `backup`).
    ServicesNotRunning,
    /// `--ipt_check=true` while `count` transactions are in flight in the node or its pair.
    InFlight { count: u32, mode: Mode },
    /// `backup` outside MAINTENANCE; `mode` is the mode the node is in.
    NeedsMaintenance { mode: Mode },
    /// `backup` on the HA BACKUP node (the standby).
    OnStandby,
    /// `restore` while these services run (in `status --v` order).
    ServicesRunning { running: Vec<String> },
}

/// What a state-machine step did: its typed result and the events for the journal.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome<T> {
    pub value: T,
    pub events: Vec<(String, Event)>,
}

impl<T> Outcome<T> {
    fn new(value: T, events: Vec<(String, Event)>) -> Self {
        Outcome { value, events }
    }
}

/// The events of one step, collected while it runs.
#[derive(Default)]
struct Events(Vec<(String, Event)>);

impl Events {
    fn push(&mut self, node: &str, e: Event) {
        self.0.push((node.to_owned(), e));
    }
}

/// `op_mode set` went through: the mode was `from` and is now `to` (possibly the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModeSet {
    pub from: Mode,
    pub to: Mode,
}

/// What `status --v` reports about one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusReport {
    /// Every service, in `status --v` order.
    pub services: Vec<ServiceStatus>,
    pub esc_version: String,
    /// The node's role (for a stopped node: the last one it had).
    pub role: Role,
    pub health: Health,
}

/// One service: its pid while it runs, `None` when stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceStatus {
    pub name: String,
    pub pid: Option<u32>,
}

/// The summary of `status --v`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Every service runs and the database is sound.
    Healthy,
    /// Running, but something is wrong.
    Unhealthy(Trouble),
    /// Every service is stopped.
    Stopped,
}

/// What makes a running node unhealthy, the gravest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trouble {
    DatabaseCorrupted(Corruption),
    /// Some services are stopped; this is the first one in `status --v` order.
    ServiceStopped(String),
}

/// A restore went through; the database is corrupted if it came from a newer ESC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    pub corruption: Option<Corruption>,
}

/// The node's services are stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stopped {
    /// They ran before (stopping a stopped node changes nothing).
    pub was_running: bool,
    /// The peer that became MASTER because this MASTER stopped.
    pub failover_to: Option<String>,
}

/// The node's services were (stopped if running, then) started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Started {
    /// The stop part of a restart of a running MASTER may fail over to the peer.
    pub stopped: Stopped,
    /// The role keepalived gave the node.
    pub role: Role,
    /// The MASTER whose database the node (now BACKUP) synced.
    pub synced_from: Option<String>,
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

pub fn op_mode_show(world: &World, node: &str) -> Mode {
    world.node(node).mode
}

pub fn op_mode_set(
    world: &mut World,
    node: &str,
    mode: Mode,
    ipt_check: bool,
) -> Result<Outcome<ModeSet>, Refusal> {
    let n = world.node(node);
    if n.all_stopped() {
        return Err(Refusal::ServicesNotRunning);
    }
    if ipt_check && mode == Mode::Maintenance && n.mode != Mode::Maintenance {
        let count = world.in_flight_total();
        if count > 0 {
            return Err(Refusal::InFlight { count, mode });
        }
    }
    let from = n.mode;
    let mut ev = Events::default();
    // Replicated in an HA pair: the mode is in the (DRBD-replicated) database.
    for n in &mut world.nodes {
        n.mode = mode;
    }
    if from != mode {
        ev.push(node, Event::ModeChanged { from, to: mode });
    }
    Ok(Outcome::new(ModeSet { from, to: mode }, ev.0))
}

pub fn status(world: &World, node: &str) -> StatusReport {
    let n = world.node(node);
    StatusReport {
        services: n
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| ServiceStatus {
                name: s.name.clone(),
                pid: s.running.then(|| n.service_pid(i)),
            })
            .collect(),
        esc_version: n.esc_version.clone(),
        role: n.role,
        health: health(n),
    }
}

fn health(n: &NodeState) -> Health {
    if n.all_stopped() {
        return Health::Stopped;
    }
    if let Some(c) = n.corruption() {
        return Health::Unhealthy(Trouble::DatabaseCorrupted(c));
    }
    if let Some(s) = n.services.iter().find(|s| !s.running) {
        return Health::Unhealthy(Trouble::ServiceStopped(s.name.clone()));
    }
    Health::Healthy
}

/// Whether `backup` may run on `node` now.
pub fn check_backup(world: &World, node: &str) -> Result<(), Refusal> {
    let n = world.node(node);
    if n.all_stopped() {
        return Err(Refusal::ServicesNotRunning);
    }
    if n.role == Role::Backup {
        return Err(Refusal::OnStandby);
    }
    if n.mode != Mode::Maintenance {
        return Err(Refusal::NeedsMaintenance { mode: n.mode });
    }
    Ok(())
}

/// Whether `restore` may run on `node` now.
pub fn check_restore(world: &World, node: &str) -> Result<(), Refusal> {
    let running: Vec<String> = world
        .node(node)
        .services
        .iter()
        .filter(|s| s.running)
        .map(|s| s.name.clone())
        .collect();
    if !running.is_empty() {
        return Err(Refusal::ServicesRunning { running });
    }
    Ok(())
}

/// Loads a database into `node` (after [`check_restore`] and reading the archive).
pub fn apply_restore(world: &mut World, node: &str, db: Database) -> Outcome<Restored> {
    let i = world.idx(node);
    world.nodes[i].db = db.clone();
    let corruption = world.nodes[i].corruption();
    let mut ev = Events::default();
    ev.push(
        node,
        Event::DatabaseRestored {
            from_version: db.esc_version,
            schema_version: db.schema_version,
            corrupted: corruption.is_some(),
        },
    );
    Outcome::new(Restored { corruption }, ev.0)
}

/// `escadm stop`: stops every service of the node, keepalived included.
pub fn stop(world: &mut World, node: &str) -> Outcome<Stopped> {
    let mut ev = Events::default();
    let stopped = stop_inner(world, node, &mut ev);
    Outcome::new(stopped, ev.0)
}

fn stop_inner(world: &mut World, node: &str, ev: &mut Events) -> Stopped {
    let i = world.idx(node);
    if world.nodes[i].all_stopped() {
        return Stopped {
            was_running: false,
            failover_to: None,
        };
    }
    let was_master = world.nodes[i].role == Role::Master;
    for s in &mut world.nodes[i].services {
        s.running = false;
    }
    ev.push(node, Event::ServicesStopped);
    let mut failover_to = None;
    if was_master
        && let Some(p) = world.peer_idx(node)
        && world.nodes[p].keepalived_up()
    {
        let peer = world.nodes[p].name.clone();
        let from = world.nodes[p].role;
        world.nodes[p].role = Role::Master;
        world.nodes[p].takeovers += 1;
        ev.push(
            &peer,
            Event::Failover {
                from: node.to_owned(),
                to: peer.clone(),
            },
        );
        if from != Role::Master {
            ev.push(
                &peer,
                Event::RoleChanged {
                    from,
                    to: Role::Master,
                },
            );
        }
        failover_to = Some(peer);
    }
    Stopped {
        was_running: true,
        failover_to,
    }
}

/// `escadm restart`: stops the node's services if they run (with the failover that may
/// cause), then starts them; an HA node takes the role keepalived gives it.
pub fn restart(world: &mut World, node: &str) -> Outcome<Started> {
    let mut ev = Events::default();
    let stopped = stop_inner(world, node, &mut ev);
    let i = world.idx(node);
    for s in &mut world.nodes[i].services {
        s.running = true;
    }
    world.nodes[i].generation += 1;
    ev.push(node, Event::ServicesStarted);
    let mut synced_from = None;
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
            ev.push(node, Event::RoleChanged { from, to: new_role });
        }
        if new_role == Role::Backup
            && let Some(p) = peer
        {
            // DRBD: the standby's disk is a replica of the master's.
            let db = world.nodes[p].db.clone();
            let from = world.nodes[p].name.clone();
            world.nodes[i].db = db;
            ev.push(node, Event::DatabaseSynced { from: from.clone() });
            synced_from = Some(from);
        }
    }
    let role = world.nodes[i].role;
    Outcome::new(
        Started {
            stopped,
            role,
            synced_from,
        },
        ev.0,
    )
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

    fn has<T>(o: &Outcome<T>, node: &str, pred: impl Fn(&Event) -> bool) -> bool {
        o.events.iter().any(|(n, e)| n == node && pred(e))
    }

    fn failed_over<T>(o: &Outcome<T>) -> bool {
        o.events
            .iter()
            .any(|(_, e)| matches!(e, Event::Failover { .. }))
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
    fn op_mode_round_trip() {
        let mut w = single();
        let o = op_mode_set(&mut w, "s", Mode::Maintenance, false).unwrap();
        assert_eq!(
            o.value,
            ModeSet {
                from: Mode::Operation,
                to: Mode::Maintenance
            }
        );
        assert_eq!(op_mode_show(&w, "s"), Mode::Maintenance);
        let o = op_mode_set(&mut w, "s", Mode::Operation, false).unwrap();
        assert_eq!(o.value.to, Mode::Operation);
        assert!(has(&o, "s", |e| matches!(
            e,
            Event::ModeChanged {
                to: Mode::Operation,
                ..
            }
        )));
        // Setting the mode it has: the same answer, no event.
        let o = op_mode_set(&mut w, "s", Mode::Operation, false).unwrap();
        assert_eq!(
            o.value,
            ModeSet {
                from: Mode::Operation,
                to: Mode::Operation
            }
        );
        assert!(o.events.is_empty());
    }

    #[test]
    fn ipt_check_refuses_while_transactions_in_flight_then_allows_after_drain() {
        let mut w = pair();
        w.nodes[0].in_flight = 2;
        w.nodes[0].in_flight_drain_at_ms = Some(1000);
        // The count is the pair's, so the standby's request is refused too.
        for node in ["a", "b"] {
            assert_eq!(
                op_mode_set(&mut w, node, Mode::Maintenance, true).unwrap_err(),
                Refusal::InFlight {
                    count: 2,
                    mode: Mode::Maintenance
                }
            );
        }
        assert_eq!(w.node("a").mode, Mode::Operation);
        // Leaving MAINTENANCE, or entering it without ipt_check (the manual's default), passes.
        let mut w2 = w.clone();
        op_mode_set(&mut w2, "a", Mode::Maintenance, false).unwrap();
        op_mode_set(&mut w2, "a", Mode::Operation, true).unwrap();
        // After the drain time, the check passes.
        assert!(w.drain(999).is_empty());
        let ev = w.drain(1000);
        assert_eq!(
            ev,
            vec![("a".to_owned(), Event::InFlightDrained { count: 2 })]
        );
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
        assert_eq!(
            o.value,
            Stopped {
                was_running: true,
                failover_to: Some("b".into())
            }
        );
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
        assert_eq!(o.value.role, Role::Backup);
        assert_eq!(o.value.synced_from.as_deref(), Some("b"));
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
            assert!(!failed_over(o));
            assert_eq!(o.value.failover_to, None);
        }
        assert_eq!(w.node("a").role, Role::Master);
        assert_eq!(w.node("b").role, Role::Backup);
        for (node, role) in [("a", Role::Master), ("b", Role::Backup)] {
            let s = status(&w, node);
            assert_eq!((s.role, s.health), (role, Health::Stopped));
            assert!(s.services.iter().all(|s| s.pid.is_none()));
        }
        // Stopping a stopped node changes nothing.
        let o = stop(&mut w, "a");
        assert!(!o.value.was_running);
        assert!(o.events.is_empty());
        assert_eq!(restart(&mut w, "a").value.role, Role::Master);
        assert_eq!(restart(&mut w, "b").value.role, Role::Backup);
        assert_eq!(w.node("a").role, Role::Master);
        let s = status(&w, "b");
        assert_eq!((s.role, s.health), (Role::Backup, Health::Healthy));
    }

    #[test]
    fn restarting_running_master_hands_over_to_the_standby() {
        let mut w = pair();
        let o = restart(&mut w, "a");
        assert!(failed_over(&o));
        assert_eq!(o.value.stopped.failover_to.as_deref(), Some("b"));
        assert_eq!(o.value.role, Role::Backup);
        assert_eq!(w.node("a").role, Role::Backup);
        assert_eq!(w.node("b").role, Role::Master);
    }

    #[test]
    fn backup_rules_in_order() {
        let mut w = pair();
        assert_eq!(
            check_backup(&w, "a"),
            Err(Refusal::NeedsMaintenance {
                mode: Mode::Operation
            })
        );
        op_mode_set(&mut w, "a", Mode::Maintenance, true).unwrap();
        check_backup(&w, "a").unwrap();
        assert_eq!(check_backup(&w, "b"), Err(Refusal::OnStandby));
        stop(&mut w, "b");
        stop(&mut w, "a");
        // Stopped wins over role and mode.
        assert_eq!(check_backup(&w, "a"), Err(Refusal::ServicesNotRunning));
        assert_eq!(check_backup(&w, "b"), Err(Refusal::ServicesNotRunning));
    }

    #[test]
    fn restore_needs_all_services_stopped_and_flags_a_downgrade() {
        let mut w = single();
        assert_eq!(
            check_restore(&w, "s"),
            Err(Refusal::ServicesRunning {
                running: STANDALONE_SERVICES.iter().map(|s| s.to_string()).collect()
            })
        );
        w.nodes[0].services[0].running = false;
        let Err(Refusal::ServicesRunning { running }) = check_restore(&w, "s") else {
            panic!("refused while some services run");
        };
        assert_eq!(running.len(), STANDALONE_SERVICES.len() - 1);
        assert!(!running.contains(&"pgsql".to_owned()));
        stop(&mut w, "s");
        check_restore(&w, "s").unwrap();
        let newer = Database {
            esc_version: "5.11.0.3".into(),
            schema_version: "5.11".into(),
            content: serde_json::json!({}),
        };
        let corruption = Corruption {
            schema: "5.11".into(),
            db_version: "5.11.0.3".into(),
            node_version: "5.10.0.86".into(),
        };
        let o = apply_restore(&mut w, "s", newer);
        assert_eq!(o.value.corruption.as_ref(), Some(&corruption));
        assert!(has(&o, "s", |e| matches!(
            e,
            Event::DatabaseRestored {
                corrupted: true,
                ..
            }
        )));
        restart(&mut w, "s");
        assert_eq!(
            status(&w, "s").health,
            Health::Unhealthy(Trouble::DatabaseCorrupted(corruption))
        );
        // An older database is fine (ESC migrates the schema up).
        stop(&mut w, "s");
        let o = apply_restore(&mut w, "s", Database::fresh("5.9.1.20"));
        assert_eq!(o.value.corruption, None);
        restart(&mut w, "s");
        assert_eq!(status(&w, "s").health, Health::Healthy);
    }

    #[test]
    fn op_mode_set_needs_running_services_and_the_mode_survives_restarts() {
        let mut w = single();
        stop(&mut w, "s");
        assert_eq!(
            op_mode_set(&mut w, "s", Mode::Maintenance, false),
            Err(Refusal::ServicesNotRunning)
        );
        restart(&mut w, "s");
        op_mode_set(&mut w, "s", Mode::Maintenance, false).unwrap();
        stop(&mut w, "s");
        restart(&mut w, "s");
        assert_eq!(op_mode_show(&w, "s"), Mode::Maintenance);
    }

    #[test]
    fn status_lists_services_version_role_and_health() {
        let mut w = pair();
        let s = status(&w, "a");
        let names: Vec<&str> = s.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, HA_SERVICES);
        assert_eq!(s.services[0].pid, Some(2116));
        assert_eq!(
            status(&w, "b").services[0].pid,
            Some(3116),
            "pids differ per node"
        );
        assert_eq!(s.esc_version, "5.10.0.86");
        assert_eq!((s.role, s.health), (Role::Master, Health::Healthy));
        // Partly stopped: the first stopped service in order is the trouble.
        w.nodes[0].services[6].running = false;
        w.nodes[0].services[4].running = false;
        let s = status(&w, "a");
        assert_eq!(s.services[4].pid, None);
        assert_eq!(
            s.health,
            Health::Unhealthy(Trouble::ServiceStopped("mona".into()))
        );
        // A restart changes the pids.
        restart(&mut w, "b");
        assert_eq!(status(&w, "b").services[0].pid, Some(3132));
    }
}
