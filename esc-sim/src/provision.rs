//! Creating simulated nodes on disk: directories, state, the `escadm` link, SSH keys and the
//! node's own sshd config. Starting and stopping sshd is the caller's business (the test
//! harness in `esc-testbed` runs it under its process-group guard; `esc-sim up` runs it in the
//! foreground) — [`sshd_command`] gives the command line.

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::model::{NodeState, Role};
use crate::store::{self, SimRoot};

/// The local account for password logins (created by `tools/sshd/setup.sh`).
pub const TEST_USER: &str = "escsim";
/// Its password, generated once by `tools/sshd/setup.sh` (root-only file).
pub const TEST_PASSWORD_FILE: &str = "/var/lib/esc-sim/escsim.password";
/// Debian's sshd.
pub const SSHD: &str = "/usr/sbin/sshd";

/// The password of [`TEST_USER`].
pub fn test_password() -> Result<String> {
    let s = fs::read_to_string(TEST_PASSWORD_FILE).with_context(|| {
        format!("read {TEST_PASSWORD_FILE} (run tools/sshd/setup.sh as root first)")
    })?;
    let s = s.trim().to_owned();
    if s.is_empty() {
        bail!("{TEST_PASSWORD_FILE} is empty (run tools/sshd/setup.sh)");
    }
    Ok(s)
}

/// Key algorithms for client keys.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    Ed25519,
    Rsa,
    Ecdsa,
}

impl KeyType {
    fn ssh_keygen_type(self) -> &'static str {
        match self {
            KeyType::Ed25519 => "ed25519",
            KeyType::Rsa => "rsa",
            KeyType::Ecdsa => "ecdsa",
        }
    }
}

/// What to create.
#[derive(Clone, Debug)]
pub struct NodePlan {
    pub name: String,
    pub esc_version: String,
    pub role: Role,
    pub peer: Option<String>,
    /// 0, 1...: makes the node's service pids distinct.
    pub index: u32,
    pub address: Ipv4Addr,
    pub port: u16,
    /// The user that logs in with the client keys (any local account; `root` by default).
    pub key_user: String,
    /// Client key pairs to create and authorize (for both users).
    pub key_types: Vec<KeyType>,
    /// Private keys in PEM (`-m PEM`) instead of the OpenSSH format (RSA/ECDSA only).
    pub pem_keys: bool,
}

/// A client key pair of a node.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ClientKey {
    pub kind: KeyType,
    /// 0600, root-owned.
    pub private_key_path: PathBuf,
    /// `ssh-ed25519 AAAA... comment`.
    pub public_key: String,
}

/// How a node is reached; `<node>/node.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct NodeInfo {
    pub name: String,
    pub address: Ipv4Addr,
    pub port: u16,
    pub key_user: String,
    pub password_user: String,
    /// `ssh-ed25519 AAAA...` (no comment).
    pub host_public_key: String,
    pub client_keys: Vec<ClientKey>,
    pub sshd_config: PathBuf,
    pub sshd_log: PathBuf,
    pub pid_file: PathBuf,
    /// The northbound endpoint, when one is served.
    pub northbound: Option<SocketAddr>,
}

impl NodeInfo {
    /// `[127.0.0.5]:2222 ssh-ed25519 AAAA...`
    pub fn known_hosts_line(&self) -> String {
        format!("[{}]:{} {}", self.address, self.port, self.host_public_key)
    }

    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::from((self.address, self.port))
    }
}

/// A loopback address for the `n`-th node of this process: `127.<a>.<b>.<c>`, distinct within
/// a process and, through the pid, very likely across parallel test processes (ports are
/// picked free per address anyway, so a shared address still works).
pub fn loopback_address(n: u32) -> Ipv4Addr {
    let pid = std::process::id();
    let a = 1 + ((pid >> 16) % 200) as u8 + 10 * ((n / 250) % 5) as u8;
    let b = (pid & 0xff) as u8 ^ ((pid >> 8) & 0xff) as u8;
    let c = 2 + (n % 250) as u8;
    Ipv4Addr::new(127, a, b, c)
}

/// Prepares a sim root: the directory (world-traversable) and the simulator binary.
pub fn init_root(root: &SimRoot, esc_sim_bin: &Path) -> Result<PathBuf> {
    store::mkdir_shared(root.path())?;
    store::mkdir_shared(&root.nodes_dir())?;
    let bin = root.path().join("bin");
    store::mkdir_shared(&bin)?;
    let dest = bin.join("esc-sim");
    // A copy, not a link: the password user must be able to run it wherever the build is.
    let tmp = bin.join(".esc-sim.tmp");
    fs::copy(esc_sim_bin, &tmp)
        .with_context(|| format!("copy simulator binary {}", esc_sim_bin.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
    fs::rename(&tmp, &dest)?;
    Ok(dest)
}

const SUDO_SHIM: &str = r#"#!/bin/sh
# sudo on a simulated ESC node: every user of the node may run anything without a password.
# The simulation runs the command as the calling user (escadm does not check its uid).
while [ $# -gt 0 ]; do
  case "$1" in
    -S) read -r _ignored || true; shift ;;
    -u|-g|-p|-C|-h) shift 2 ;;
    --) shift; break ;;
    -*) shift ;;
    *) break ;;
  esac
done
[ $# -eq 0 ] && exec /bin/sh
exec "$@"
"#;

fn keygen(path: &Path, kind: KeyType, comment: &str, pem: bool) -> Result<String> {
    let _ = fs::remove_file(path);
    let _ = fs::remove_file(path.with_extension("pub"));
    let mut c = Command::new("ssh-keygen");
    c.arg("-q")
        .arg("-t")
        .arg(kind.ssh_keygen_type())
        .arg("-N")
        .arg("")
        .arg("-C")
        .arg(comment)
        .arg("-f")
        .arg(path);
    if kind == KeyType::Rsa {
        c.arg("-b").arg("2048");
    }
    if pem && kind != KeyType::Ed25519 {
        c.arg("-m").arg("PEM");
    }
    let out = c
        .stdin(Stdio::null())
        .output()
        .context("run ssh-keygen (is openssh-client installed? tools/sshd/setup.sh)")?;
    if !out.status.success() {
        bail!(
            "ssh-keygen: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut pubp = path.as_os_str().to_owned();
    pubp.push(".pub");
    Ok(fs::read_to_string(PathBuf::from(pubp))?.trim().to_owned())
}

/// Creates a node with no way in (no sshd, keys or `bin/`): its state, no faults, and the
/// directories escadm uses. For `esc-sim node create` (then `esc-sim run`) and for running
/// escadm in-process ([`crate::escadm::run`]).
pub fn create_bare_node(root: &SimRoot, state: &NodeState) -> Result<()> {
    let name = state.name.as_str();
    store::check_node_name(name)?;
    store::mkdir_shared(root.path())?;
    for d in [
        root.node_dir(name),
        root.tmp_dir(name),
        root.var_tmp_dir(name),
        root.log_dir(name),
        root.data_dir(name),
    ] {
        store::mkdir_shared(&d)?;
    }
    root.save_node(state)?;
    root.save_faults(name, &[])
}

/// Creates one node: state, faults, dirs, bin links, keys and sshd config. The sim root must
/// have been prepared with [`init_root`].
pub fn create_node(root: &SimRoot, plan: &NodePlan) -> Result<NodeInfo> {
    store::check_node_name(&plan.name)?;
    let node = plan.name.as_str();
    let dir = root.node_dir(node);
    for d in [
        dir.clone(),
        root.fs_dir(node),
        root.tmp_dir(node),
        root.var_tmp_dir(node),
        root.log_dir(node),
        root.dynamic_mapping_path(node)
            .parent()
            .expect("parent")
            .to_path_buf(),
        root.bin_dir(node),
        root.data_dir(node),
    ] {
        store::mkdir_shared(&d)?;
    }
    let ssh = root.ssh_dir(node);
    fs::create_dir_all(&ssh)?;
    fs::set_permissions(&ssh, fs::Permissions::from_mode(0o755))?;

    let state = NodeState::new(
        node,
        &plan.esc_version,
        plan.role,
        plan.peer.as_deref(),
        plan.index,
    );
    root.save_node(&state)?;
    root.save_faults(node, &[])?;
    store::write_atomic(
        &root.log_dir(node).join("escmanager.log"),
        format!(
            "{} ESC {} started as {}\n",
            store::timestamp(store::now_ms()),
            plan.esc_version,
            plan.role
        )
        .as_bytes(),
    )?;

    // bin: escadm -> the shared simulator binary; sudo shim.
    let bin = root.bin_dir(node);
    let target = root.path().join("bin/esc-sim");
    for name in ["escadm", "esc-sim"] {
        let l = bin.join(name);
        let _ = fs::remove_file(&l);
        symlink(&target, &l).with_context(|| format!("symlink {}", l.display()))?;
    }
    let sudo = bin.join("sudo");
    fs::write(&sudo, SUDO_SHIM)?;
    fs::set_permissions(&sudo, fs::Permissions::from_mode(0o755))?;

    // Keys.
    let host_key = ssh.join("host_ed25519_key");
    let host_pub = keygen(
        &host_key,
        KeyType::Ed25519,
        &format!("esc-sim host {node}"),
        false,
    )?;
    let host_public_key = host_pub
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let mut client_keys = Vec::new();
    let mut authorized = String::new();
    for kind in &plan.key_types {
        let p = ssh.join(format!("id_{}", kind.ssh_keygen_type()));
        let public = keygen(&p, *kind, &format!("esc-sim client {node}"), plan.pem_keys)?;
        authorized.push_str(&public);
        authorized.push('\n');
        client_keys.push(ClientKey {
            kind: *kind,
            private_key_path: p,
            public_key: public,
        });
    }
    fs::write(ssh.join("authorized_keys"), authorized)?;
    fs::set_permissions(
        ssh.join("authorized_keys"),
        fs::Permissions::from_mode(0o644),
    )?;

    let info = NodeInfo {
        name: node.to_owned(),
        address: plan.address,
        port: plan.port,
        key_user: plan.key_user.clone(),
        password_user: TEST_USER.to_owned(),
        host_public_key,
        client_keys,
        sshd_config: ssh.join("sshd_config"),
        sshd_log: ssh.join("sshd.log"),
        pid_file: ssh.join("sshd.pid"),
        northbound: None,
    };
    write_sshd_config(root, &info)?;
    save_info(root, &info)?;
    Ok(info)
}

pub fn save_info(root: &SimRoot, info: &NodeInfo) -> Result<()> {
    store::write_json(&root.node_dir(&info.name).join("node.json"), info)
}

pub fn load_info(root: &SimRoot, node: &str) -> Result<NodeInfo> {
    store::read_json(&root.node_dir(node).join("node.json"))
}

/// Writes the node's sshd_config (again, e.g. after a port change).
pub fn write_sshd_config(root: &SimRoot, info: &NodeInfo) -> Result<()> {
    let ssh = root.ssh_dir(&info.name);
    let mut users = vec![info.key_user.clone()];
    if info.password_user != info.key_user {
        users.push(info.password_user.clone());
    }
    let cfg = format!(
        "# sshd of simulated ESC node {name} (esc-sim). Not the machine's sshd.\n\
         ListenAddress {addr}\n\
         Port {port}\n\
         HostKey {hostkey}\n\
         PidFile {pid}\n\
         AuthorizedKeysFile {ak}\n\
         UsePAM no\n\
         StrictModes no\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication yes\n\
         KbdInteractiveAuthentication no\n\
         PermitRootLogin prohibit-password\n\
         PermitEmptyPasswords no\n\
         AllowUsers {users}\n\
         SetEnv {env_node}={name} {env_root}={root} PATH={bin}:/usr/bin:/bin\n\
         Subsystem sftp internal-sftp\n\
         PrintMotd no\n\
         PrintLastLog no\n\
         UseDNS no\n\
         MaxStartups 200\n\
         MaxSessions 100\n\
         LoginGraceTime 60\n\
         LogLevel INFO\n",
        name = info.name,
        addr = info.address,
        port = info.port,
        hostkey = ssh.join("host_ed25519_key").display(),
        pid = info.pid_file.display(),
        ak = ssh.join("authorized_keys").display(),
        users = users.join(" "),
        env_node = store::ENV_NODE,
        env_root = store::ENV_ROOT,
        root = root.path().display(),
        bin = root.bin_dir(&info.name).display(),
    );
    fs::write(&info.sshd_config, cfg)?;
    Ok(())
}

/// `sshd -D -f CONFIG -E LOG`: foreground, so its caller owns the process.
pub fn sshd_command(info: &NodeInfo) -> Command {
    let mut c = Command::new(SSHD);
    c.arg("-D")
        .arg("-f")
        .arg(&info.sshd_config)
        .arg("-E")
        .arg(&info.sshd_log);
    c
}

/// Waits until `addr` answers with an SSH banner. `alive` is polled to fail fast when the
/// daemon died (e.g. "address already in use").
pub fn wait_ready(
    addr: SocketAddr,
    timeout: Duration,
    mut alive: impl FnMut() -> bool,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            let mut buf = [0u8; 8];
            if s.read_exact(&mut buf).is_ok() && &buf == b"SSH-2.0-" {
                let _ = s.write_all(b"SSH-2.0-esc-sim-probe\r\n");
                return Ok(());
            }
        }
        if !alive() {
            bail!("sshd on {addr} exited");
        }
        if Instant::now() > deadline {
            return Err(anyhow!("sshd on {addr} not ready after {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}
