//! One running simulated node ([`SimNode`]): how it is reached (address, port, keys, logins),
//! its state, faults and files through the sim root, and powering it off and on.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};

use super::daemon::{spawn_sshd, wait_listening};
use super::teardown::stop_sshd;
use super::{ClientKey, Database, Fault, FaultKind, KeyType, NodeInfo, NodeState, SimRoot};
use crate::process::ProcessGroup;

/// How [`SimNode::create_file`] fills a file.
#[derive(Clone, Copy, Debug)]
pub enum Fill {
    /// A sparse file of zeros (instant, takes no disk).
    Zeros,
    /// Pseudo-random bytes from this seed (incompressible; ~1 s per GiB to write).
    Random(u64),
}

/// One running node.
pub struct SimNode {
    /// `None` while powered off.
    sshd: Mutex<Option<ProcessGroup>>,
    northbound: Option<ProcessGroup>,
    info: NodeInfo,
    root: SimRoot,
    password: String,
    known_hosts: PathBuf,
}

impl Drop for SimNode {
    fn drop(&mut self) {
        let sshd = self
            .sshd
            .get_mut()
            .map(Option::take)
            .unwrap_or_else(|e| e.into_inner().take());
        stop_sshd(&self.root, &self.info.name, sshd);
        if let Some(mut nb) = self.northbound.take() {
            nb.stop(Duration::from_secs(5));
        }
    }
}

impl SimNode {
    pub(super) fn launch(
        root: &SimRoot,
        mut info: NodeInfo,
        password: String,
        northbound: bool,
        bin: &Path,
    ) -> Result<SimNode> {
        let sshd = spawn_sshd(root, &mut info, true)?;
        let known_hosts = root.ssh_dir(&info.name).join("known_hosts");
        std::fs::write(&known_hosts, format!("{}\n", info.known_hosts_line()))?;
        let nb = if northbound {
            let port = host_procs::free_port(info.address)?;
            let listen = SocketAddr::from((info.address, port));
            let mut c = Command::new(bin);
            c.arg("--root")
                .arg(root.path())
                .arg("northbound")
                .arg(&info.name)
                .arg(listen.to_string());
            let pg = ProcessGroup::spawn(
                &format!("northbound-{}", info.name),
                c,
                &root.node_dir(&info.name).join("northbound.log"),
            )?;
            wait_listening(listen, Duration::from_secs(10))?;
            info.northbound = Some(listen);
            Some(pg)
        } else {
            None
        };
        esc_sim::provision::save_info(root, &info)?;
        Ok(SimNode {
            sshd: Mutex::new(Some(sshd)),
            northbound: nb,
            info,
            root: root.clone(),
            password,
            known_hosts,
        })
    }

    pub fn name(&self) -> &str {
        &self.info.name
    }
    /// The node's loopback address.
    pub fn address(&self) -> Ipv4Addr {
        self.info.address
    }
    pub fn port(&self) -> u16 {
        self.info.port
    }
    pub fn socket_addr(&self) -> SocketAddr {
        self.info.socket_addr()
    }
    /// Everything about how the node is reached.
    pub fn info(&self) -> &NodeInfo {
        &self.info
    }
    /// The account the client keys log in as.
    pub fn key_user(&self) -> &str {
        &self.info.key_user
    }
    /// All client keys (the first is the default one).
    pub fn client_keys(&self) -> &[ClientKey] {
        &self.info.client_keys
    }
    /// Path of the default client private key (0600, root-owned).
    pub fn private_key_path(&self) -> &Path {
        &self.info.client_keys[0].private_key_path
    }
    /// The default client private key, as text (OpenSSH format, or PEM with `pem_keys`).
    pub fn private_key_pem(&self) -> Result<String> {
        std::fs::read_to_string(self.private_key_path()).context("read client key")
    }
    /// The private key of the given type, when the node has one.
    pub fn private_key_of(&self, kind: KeyType) -> Result<String> {
        let k = self
            .info
            .client_keys
            .iter()
            .find(|k| k.kind == kind)
            .ok_or_else(|| anyhow!("node {} has no {kind:?} key", self.name()))?;
        std::fs::read_to_string(&k.private_key_path).context("read client key")
    }
    /// The local account for password logins (`escsim`).
    pub fn password_user(&self) -> &str {
        &self.info.password_user
    }
    /// Its password. Never log it.
    pub fn password(&self) -> &str {
        &self.password
    }
    /// `ssh-ed25519 AAAA...`
    pub fn host_public_key(&self) -> &str {
        &self.info.host_public_key
    }
    /// `[127.a.b.c]:port ssh-ed25519 AAAA...`
    pub fn known_hosts_line(&self) -> String {
        self.info.known_hosts_line()
    }
    /// A known_hosts file holding just [`Self::known_hosts_line`].
    pub fn known_hosts_file(&self) -> &Path {
        &self.known_hosts
    }
    /// The node's directory (state.json, faults.json, fs/, data/, ssh/...).
    pub fn state_dir(&self) -> PathBuf {
        self.root.node_dir(self.name())
    }
    /// The node's `/var/tmp` (where `log collect` writes).
    pub fn var_tmp_dir(&self) -> PathBuf {
        self.root.var_tmp_dir(self.name())
    }
    /// The node's `/var/log/esc`.
    pub fn log_dir(&self) -> PathBuf {
        self.root.log_dir(self.name())
    }
    /// Where this node's dynamic mapping file lives (exists after [`Self::set_dynamic_mapping`]).
    pub fn dynamic_mapping_path(&self) -> PathBuf {
        self.root.dynamic_mapping_path(self.name())
    }
    /// A world-writable directory for test files (big files for benchmarks).
    pub fn data_dir(&self) -> PathBuf {
        self.root.data_dir(self.name())
    }
    /// `http://addr:port` of the northbound endpoint, when started with it.
    pub fn northbound_url(&self) -> Option<String> {
        self.info.northbound.map(|a| format!("http://{a}"))
    }
    /// The pid of the node's listening sshd; `None` while powered off.
    pub fn sshd_pid(&self) -> Option<u32> {
        self.sshd_guard().as_ref().map(|p| p.pid())
    }

    fn sshd_guard(&self) -> std::sync::MutexGuard<'_, Option<ProcessGroup>> {
        self.sshd.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the node is up (its sshd runs).
    pub fn is_powered_on(&self) -> bool {
        self.sshd_guard().is_some()
    }

    /// Powers the VM off, as `nova stop` would: its ESC services stop (an HA MASTER whose peer
    /// runs fails over, exactly as with `escadm stop`), its sshd and every session on it end,
    /// so the node is unreachable. Journaled as an admin action plus the events.
    pub fn power_off(&self) -> Result<()> {
        let mut guard = self.sshd_guard();
        self.root.apply_admin(self.name(), "power off", |w| {
            esc_sim::model::stop(w, &self.info.name)
        })?;
        stop_sshd(&self.root, &self.info.name, guard.take());
        Ok(())
    }

    /// Powers the VM on: sshd comes back on the same address, port and host key, and the ESC
    /// services start with the role keepalived gives them (as `escadm restart` does).
    pub fn power_on(&self) -> Result<()> {
        let mut guard = self.sshd_guard();
        if guard.is_some() {
            return Ok(());
        }
        let mut info = self.info.clone();
        let pg = spawn_sshd(&self.root, &mut info, false)?;
        *guard = Some(pg);
        self.root.apply_admin(self.name(), "power on", |w| {
            esc_sim::model::restart(w, &self.info.name)
        })?;
        Ok(())
    }
    /// The sshd log (for assertions and failure messages).
    pub fn sshd_log(&self) -> String {
        std::fs::read_to_string(&self.info.sshd_log).unwrap_or_default()
    }
    /// Whether the northbound endpoint process runs.
    pub fn northbound_running(&mut self) -> bool {
        self.northbound
            .as_mut()
            .is_some_and(|p| p.try_exit_status().is_none())
    }

    // ---- state ----

    pub fn state(&self) -> Result<NodeState> {
        self.root.load_node(self.name())
    }

    /// Changes the node's state under the simulator's lock (journaled as an admin action).
    pub fn update_state<T>(&self, f: impl FnOnce(&mut NodeState) -> T) -> Result<T> {
        self.root.update_node(self.name(), "harness update", f)
    }

    /// `n` in-flight transactions; with `drain_after`, they complete after that long.
    pub fn set_in_flight(&self, n: u32, drain_after: Option<Duration>) -> Result<()> {
        let at = drain_after.map(|d| esc_sim::store::now_ms() + d.as_millis() as u64);
        self.root.update_node(
            self.name(),
            &format!("set in-flight {n} drain_after={drain_after:?}"),
            |s| {
                s.in_flight = n;
                s.in_flight_drain_at_ms = at;
            },
        )
    }

    pub fn database(&self) -> Result<Database> {
        Ok(self.state()?.db)
    }

    pub fn set_database_content(&self, content: serde_json::Value) -> Result<()> {
        self.root
            .update_node(self.name(), "set database content", |s| {
                s.db.content = content
            })
    }

    /// The ESC version the node runs (e.g. an upgraded node before a restore).
    pub fn set_esc_version(&self, v: &str) -> Result<()> {
        self.root
            .update_node(self.name(), &format!("set esc version {v}"), |s| {
                s.esc_version = v.to_owned()
            })
    }

    /// Writes the node's dynamic mapping file; returns its path.
    pub fn set_dynamic_mapping(&self, xml: &str) -> Result<PathBuf> {
        let p = self.dynamic_mapping_path();
        std::fs::write(&p, xml)?;
        Ok(p)
    }

    // ---- faults ----

    pub fn add_fault(&self, fault: Fault) -> Result<()> {
        self.root.add_fault(self.name(), fault)
    }

    /// A fault on `command` (`backup`, `op_mode set`, ...) that hits once.
    pub fn fault_once(&self, command: &str, kind: FaultKind) -> Result<()> {
        self.add_fault(Fault::once(Some(command), kind))
    }

    pub fn clear_faults(&self) -> Result<()> {
        self.root.clear_faults(self.name())
    }

    pub fn faults(&self) -> Result<Vec<Fault>> {
        self.root.load_faults(self.name())
    }

    // ---- files ----

    /// Creates `data/<name>` of `size` bytes; returns its path (readable over SFTP/scp).
    pub fn create_file(&self, name: &str, size: u64, fill: Fill) -> Result<PathBuf> {
        use std::io::Write;
        let p = self.data_dir().join(name);
        let f = std::fs::File::create(&p).with_context(|| format!("create {}", p.display()))?;
        match fill {
            Fill::Zeros => f.set_len(size)?,
            Fill::Random(seed) => {
                let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
                let mut x = seed | 1;
                let mut left = size;
                let mut buf = vec![0u8; 1 << 20];
                while left > 0 {
                    for chunk in buf.chunks_exact_mut(8) {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        chunk.copy_from_slice(&x.to_le_bytes());
                    }
                    let n = left.min(buf.len() as u64) as usize;
                    w.write_all(&buf[..n])?;
                    left -= n as u64;
                }
                w.flush()?;
            }
        }
        Ok(p)
    }
}
