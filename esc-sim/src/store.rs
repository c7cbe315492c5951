//! The simulator's world on disk. One directory (the *sim root*) holds every node of one
//! simulation; every command that reads or changes state does so under one `flock` on
//! `<root>/lock`, so that concurrent commands on both nodes of a pair see one consistent world
//! and the journal's order is the order in which changes happened.
//!
//! ```text
//! <root>/lock                       the lock
//! <root>/journal.jsonl              append-only journal, one JSON object a line
//! <root>/journal.seq                next sequence number
//! <root>/bin/esc-sim                the simulator binary shared by the nodes
//! <root>/nodes/<name>/state.json    NodeState (mode, services, role, versions, database...)
//! <root>/nodes/<name>/faults.json   injected faults
//! <root>/nodes/<name>/node.json     how the node is reached (address, port, users, keys)
//! <root>/nodes/<name>/bin/          escadm (symlink to the simulator), sudo (a shim)
//! <root>/nodes/<name>/ssh/          sshd_config, host key, authorized_keys, client keys, pid, log
//! <root>/nodes/<name>/fs/           the node's own ESC paths: var/tmp, var/log/esc, tmp,
//!                                   opt/cisco/esc/esc-dynamic-mapping/dynamic_mappings.xml
//! <root>/nodes/<name>/data/         free space for tests and benchmarks (big files)
//! ```
//!
//! Both of a node's SSH users (root and the password user) run escadm, so the simulator
//! creates everything world-writable (umask 0): the sim root is a test fixture, not a secret,
//! except the private keys under `ssh/`, which are 0600.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::faults::Fault;
use crate::model::{Event, NodeState, Outcome, World};

/// Environment variables sshd's `SetEnv` gives every command of a node.
pub const ENV_NODE: &str = "ESC_SIM_NODE";
pub const ENV_ROOT: &str = "ESC_SIM_ROOT";

/// Default path of the dynamic mapping file on a real ESC (seed).
pub const ESC_DYNAMIC_MAPPING: &str = "/opt/cisco/esc/esc-dynamic-mapping/dynamic_mappings.xml";

/// A sim root directory.
#[derive(Clone, Debug)]
pub struct SimRoot {
    root: PathBuf,
}

/// The held lock; released on drop.
pub struct Lock {
    _flock: Flock<File>,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// UTC timestamp `20261128T083000Z` of a unix-ms time.
pub fn timestamp(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// One line of the journal.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct JournalEntry {
    /// Strictly increasing, gap-free, from 1: the order in which things happened.
    pub seq: u64,
    /// Wall clock, unix milliseconds.
    pub time_ms: u64,
    /// The node it happened on.
    pub node: String,
    #[serde(flatten)]
    pub what: What,
}

/// What a journal line records.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum What {
    /// An escadm command finished (or was cut short by a fault). `args` has passwords redacted.
    Command {
        command: String,
        args: Vec<String>,
        exit: i32,
        user: String,
        faults: Vec<String>,
        started_ms: u64,
    },
    /// A state change caused by a command (mode, role, failover, services, database...).
    Event(Event),
    /// A request to the node's northbound endpoint.
    Northbound {
        method: String,
        path: String,
        status: u16,
    },
    /// A change made from outside the node (test harness or `esc-sim` CLI).
    Admin { action: String },
}

impl SimRoot {
    pub fn new(root: impl Into<PathBuf>) -> SimRoot {
        SimRoot { root: root.into() }
    }

    /// The root named by `ESC_SIM_ROOT`.
    pub fn from_env() -> Result<SimRoot> {
        let r = std::env::var_os(ENV_ROOT).ok_or_else(|| anyhow!("{ENV_ROOT} is not set"))?;
        Ok(SimRoot::new(PathBuf::from(r)))
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn nodes_dir(&self) -> PathBuf {
        self.root.join("nodes")
    }
    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.nodes_dir().join(node)
    }
    pub fn fs_dir(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("fs")
    }
    /// The node's `/var/tmp` (where `log collect` writes).
    pub fn var_tmp_dir(&self, node: &str) -> PathBuf {
        self.fs_dir(node).join("var/tmp")
    }
    /// The node's `/var/log/esc`.
    pub fn log_dir(&self, node: &str) -> PathBuf {
        self.fs_dir(node).join("var/log/esc")
    }
    /// The node's scratch `/tmp`-like dir used by escadm itself.
    pub fn tmp_dir(&self, node: &str) -> PathBuf {
        self.fs_dir(node).join("tmp")
    }
    /// Where the node's dynamic mapping file is (when the node has one).
    pub fn dynamic_mapping_path(&self, node: &str) -> PathBuf {
        self.fs_dir(node)
            .join(ESC_DYNAMIC_MAPPING.trim_start_matches('/'))
    }
    pub fn bin_dir(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("bin")
    }
    pub fn ssh_dir(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("ssh")
    }
    pub fn data_dir(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("data")
    }
    pub fn journal_path(&self) -> PathBuf {
        self.root.join("journal.jsonl")
    }

    /// Takes the world lock (blocking).
    pub fn lock(&self) -> Result<Lock> {
        let path = self.root.join("lock");
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o666)
            .open(&path)
            .with_context(|| format!("open {}", path.display()))?;
        share(&f);
        let flock = Flock::lock(f, FlockArg::LockExclusive)
            .map_err(|(_, e)| anyhow!("flock {}: {e}", path.display()))?;
        Ok(Lock { _flock: flock })
    }

    /// Names of the nodes, sorted.
    pub fn node_names(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let dir = self.nodes_dir();
        if !dir.exists() {
            return Ok(names);
        }
        for e in fs::read_dir(&dir)? {
            let e = e?;
            if e.path().join("state.json").exists() {
                names.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    pub fn load_node(&self, node: &str) -> Result<NodeState> {
        read_json(&self.node_dir(node).join("state.json"))
            .with_context(|| format!("no simulated ESC node '{node}' in {}", self.root.display()))
    }

    pub fn save_node(&self, state: &NodeState) -> Result<()> {
        write_json(&self.node_dir(&state.name).join("state.json"), state)
    }

    /// The node and its HA peer (if any).
    pub fn load_world(&self, node: &str) -> Result<World> {
        let n = self.load_node(node)?;
        let mut nodes = vec![n];
        if let Some(p) = nodes[0].peer.clone() {
            nodes.push(self.load_node(&p)?);
        }
        Ok(World { nodes })
    }

    pub fn save_world(&self, world: &World) -> Result<()> {
        for n in &world.nodes {
            self.save_node(n)?;
        }
        Ok(())
    }

    pub fn load_faults(&self, node: &str) -> Result<Vec<Fault>> {
        let p = self.node_dir(node).join("faults.json");
        if !p.exists() {
            return Ok(Vec::new());
        }
        read_json(&p)
    }

    pub fn save_faults(&self, node: &str, faults: &[Fault]) -> Result<()> {
        write_json(&self.node_dir(node).join("faults.json"), &faults)
    }

    /// Appends one entry; the caller holds the lock.
    pub fn append_journal(&self, _lock: &Lock, node: &str, what: What) -> Result<u64> {
        let seq_path = self.root.join("journal.seq");
        let seq: u64 = match fs::read_to_string(&seq_path) {
            Ok(s) => s.trim().parse().unwrap_or(1),
            Err(_) => 1,
        };
        let entry = JournalEntry {
            seq,
            time_ms: now_ms(),
            node: node.to_owned(),
            what,
        };
        let mut line = serde_json::to_string(&entry)?;
        line.push('\n');
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o666)
            .open(self.journal_path())
            .context("open journal")?;
        share(&f);
        f.write_all(line.as_bytes()).context("append journal")?;
        write_atomic(&seq_path, format!("{}\n", seq + 1).as_bytes())?;
        Ok(seq)
    }

    /// Appends the events of one command (node, event).
    pub fn journal_events(&self, lock: &Lock, events: &[(String, Event)]) -> Result<()> {
        for (node, e) in events {
            self.append_journal(lock, node, What::Event(e.clone()))?;
        }
        Ok(())
    }

    /// The whole journal, in order. Taken under the lock, so a line being appended is never
    /// read half-written.
    pub fn read_journal(&self) -> Result<Vec<JournalEntry>> {
        let p = self.journal_path();
        if !p.exists() {
            return Ok(Vec::new());
        }
        let _lock = self.lock()?;
        let f = File::open(&p).context("open journal")?;
        let mut out = Vec::new();
        for (i, line) in BufReader::new(f).lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            out.push(
                serde_json::from_str(&line)
                    .with_context(|| format!("journal line {}: {line}", i + 1))?,
            );
        }
        Ok(out)
    }

    /// Changes a node's state from outside (harness, CLI), under the lock, journaled as admin.
    pub fn update_node<T>(
        &self,
        node: &str,
        action: &str,
        f: impl FnOnce(&mut NodeState) -> T,
    ) -> Result<T> {
        let lock = self.lock()?;
        let mut st = self.load_node(node)?;
        let r = f(&mut st);
        self.save_node(&st)?;
        self.append_journal(
            &lock,
            node,
            What::Admin {
                action: action.to_owned(),
            },
        )?;
        Ok(r)
    }

    /// Runs a state machine step on `node`'s world from outside (harness, CLI: e.g. a VM power
    /// off is [`crate::model::stop`]), under the lock; journals `action` and the events.
    pub fn apply_admin<T>(
        &self,
        node: &str,
        action: &str,
        f: impl FnOnce(&mut World) -> Outcome<T>,
    ) -> Result<Outcome<T>> {
        let lock = self.lock()?;
        let mut world = self.load_world(node)?;
        self.append_journal(
            &lock,
            node,
            What::Admin {
                action: action.to_owned(),
            },
        )?;
        let drained = world.drain(now_ms());
        self.journal_events(&lock, &drained)?;
        let outcome = f(&mut world);
        self.save_world(&world)?;
        self.journal_events(&lock, &outcome.events)?;
        Ok(outcome)
    }

    /// Adds a fault to a node.
    pub fn add_fault(&self, node: &str, fault: Fault) -> Result<()> {
        let lock = self.lock()?;
        self.load_node(node)?;
        let mut faults = self.load_faults(node)?;
        let action = format!("add fault {}", serde_json::to_string(&fault)?);
        faults.push(fault);
        self.save_faults(node, &faults)?;
        self.append_journal(&lock, node, What::Admin { action })?;
        Ok(())
    }

    /// Removes every fault of a node.
    pub fn clear_faults(&self, node: &str) -> Result<()> {
        let lock = self.lock()?;
        self.save_faults(node, &[])?;
        self.append_journal(
            &lock,
            node,
            What::Admin {
                action: "clear faults".into(),
            },
        )?;
        Ok(())
    }
}

/// Makes a file this process created world-writable whatever its umask (see the module doc);
/// a file someone else owns is left alone (it was shared by its creator).
pub fn share(f: &File) {
    if let Ok(m) = f.metadata()
        && m.permissions().mode() & 0o777 != 0o666
        && m.uid() == nix::unistd::geteuid().as_raw()
    {
        let _ = f.set_permissions(fs::Permissions::from_mode(0o666));
    }
}

/// Creates `dir` (and parents), world-writable.
pub fn mkdir_shared(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
    let m = fs::metadata(dir).with_context(|| format!("stat {}", dir.display()))?;
    // Only the owner can (and needs to) share it; a directory someone else created was
    // shared by them.
    if m.permissions().mode() & 0o777 != 0o777 && m.uid() == nix::unistd::geteuid().as_raw() {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o777))
            .with_context(|| format!("chmod {}", dir.display()))?;
    }
    Ok(())
}

pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let s = fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    serde_json::from_str(&s).with_context(|| format!("parse {}", path.display()))
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut s = serde_json::to_string_pretty(value)?;
    s.push('\n');
    write_atomic(path, s.as_bytes())
}

/// Writes through a temporary file and a rename, world-writable (see the module doc).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().ok_or_else(|| anyhow!("no parent"))?;
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("no file name"))?
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o666)
            .open(&tmp)
            .with_context(|| format!("write {}", tmp.display()))?;
        f.write_all(bytes)?;
        f.set_permissions(fs::Permissions::from_mode(0o666))?;
    }
    fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))?;
    Ok(())
}

/// Replaces the password in `scp://user:password@host:file` by `***`.
pub fn redact(arg: &str) -> String {
    let Some(pos) = arg.find("scp://") else {
        return arg.to_owned();
    };
    let rest = &arg[pos + 6..];
    let Some(at) = rest.rfind('@') else {
        return arg.to_owned();
    };
    let userinfo = &rest[..at];
    match userinfo.find(':') {
        Some(c) => format!("{}scp://{}:***{}", &arg[..pos], &userinfo[..c], &rest[at..]),
        None => arg.to_owned(),
    }
}

/// Fails if `node` is not a plain name (it becomes a directory name).
pub fn check_node_name(node: &str) -> Result<()> {
    if node.is_empty()
        || node.len() > 64
        || !node
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("invalid node name '{node}': use letters, digits, '-' and '_'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Mode, Role};

    #[test]
    fn timestamps_are_utc_compact() {
        assert_eq!(timestamp(0), "19700101T000000Z");
        // 2026-11-28 08:30:00 UTC
        assert_eq!(timestamp(1_795_854_600_000), "20261128T083000Z");
    }

    #[test]
    fn redacts_scp_passwords() {
        assert_eq!(
            redact("--file=scp://u:s3cret@10.0.0.1:/b/x.tar.bz2"),
            "--file=scp://u:***@10.0.0.1:/b/x.tar.bz2"
        );
        assert_eq!(redact("scp://u@h:/x"), "scp://u@h:/x");
        assert_eq!(redact("/tmp/x"), "/tmp/x");
    }

    #[test]
    fn journal_round_trips_every_kind() {
        let dir = tempfile::tempdir().unwrap();
        let root = SimRoot::new(dir.path());
        let lock = root.lock().unwrap();
        let whats = vec![
            What::Command {
                command: "stop".into(),
                args: vec!["stop".into()],
                exit: 0,
                user: "root".into(),
                faults: vec![],
                started_ms: 1,
            },
            What::Event(Event::ServicesStopped),
            What::Event(Event::ModeChanged {
                from: Mode::Operation,
                to: Mode::Maintenance,
            }),
            What::Event(Event::RoleChanged {
                from: Role::Backup,
                to: Role::Master,
            }),
            What::Northbound {
                method: "GET".into(),
                path: "/".into(),
                status: 503,
            },
            What::Admin { action: "x".into() },
        ];
        for w in &whats {
            root.append_journal(&lock, "a", w.clone()).unwrap();
        }
        drop(lock);
        let j = root.read_journal().unwrap();
        assert_eq!(j.len(), whats.len());
        for (i, (e, w)) in j.iter().zip(&whats).enumerate() {
            assert_eq!(e.seq, i as u64 + 1);
            assert_eq!(&e.what, w);
        }
    }
}
