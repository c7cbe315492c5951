//! The `esc-sim` command line: create, inspect and fault simulated nodes, read the journal,
//! serve a node's northbound endpoint, and `up`: a standalone node or an HA pair behind real
//! sshd daemons, for the demo.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use crate::faults::Fault;
use crate::formats;
use crate::model::Role;
use crate::provision::{self, KeyType, NodeInfo, NodePlan};
use crate::store::{self, SimRoot};

#[derive(Parser, Debug)]
#[command(
    name = "esc-sim",
    version,
    about = "Cisco ESC simulator: nodes, faults, journal"
)]
struct Cli {
    /// The sim root directory (set on nodes by sshd).
    #[arg(long, env = "ESC_SIM_ROOT", global = true)]
    root: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Provision nodes and serve each with its own sshd until Ctrl-C / SIGTERM.
    Up {
        /// An HA pair (esc-a MASTER, esc-b BACKUP) instead of one standalone node.
        #[arg(long)]
        ha: bool,
        #[arg(long, default_value = "5.10.0.86")]
        esc_version: String,
        /// Also serve each node's northbound endpoint (HTTP on the node's address).
        #[arg(long)]
        northbound: bool,
        /// Address of the first node (the second gets the next one).
        #[arg(long)]
        address: Option<Ipv4Addr>,
        /// SSH port of the nodes (default: a free one each).
        #[arg(long)]
        port: Option<u16>,
        /// Client key type(s) to create.
        #[arg(long, value_enum, default_values_t = [KeyArg::Ed25519])]
        key_type: Vec<KeyArg>,
        /// Print the nodes as one JSON document instead of text.
        #[arg(long)]
        json: bool,
        /// The account the client keys log in as.
        #[arg(long, default_value = provision::TEST_USER)]
        key_user: String,
    },
    /// Inspect or change nodes.
    Node {
        #[command(subcommand)]
        cmd: NodeCmd,
    },
    /// Inject or clear faults.
    Fault {
        #[command(subcommand)]
        cmd: FaultCmd,
    },
    /// Print the journal (JSON lines).
    Journal,
    /// Run escadm as NODE without SSH: `esc-sim run esc -- op_mode show`.
    Run {
        node: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Serve NODE's northbound endpoint on LISTEN (foreground).
    Northbound { node: String, listen: SocketAddr },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum KeyArg {
    Ed25519,
    Rsa,
    Ecdsa,
}

impl From<KeyArg> for KeyType {
    fn from(k: KeyArg) -> Self {
        match k {
            KeyArg::Ed25519 => KeyType::Ed25519,
            KeyArg::Rsa => KeyType::Rsa,
            KeyArg::Ecdsa => KeyType::Ecdsa,
        }
    }
}

#[derive(Subcommand, Debug)]
enum NodeCmd {
    /// Create a node without sshd (for local runs with `esc-sim run`).
    Create {
        name: String,
        #[arg(long, default_value = "5.10.0.86")]
        esc_version: String,
        #[arg(long, value_enum, default_value = "standalone")]
        role: RoleArg,
        #[arg(long)]
        peer: Option<String>,
    },
    List,
    /// State, faults and how to reach the node, as JSON.
    Show {
        name: String,
    },
    /// Change a node's state.
    Set {
        name: String,
        /// In-flight transactions.
        #[arg(long)]
        in_flight: Option<u32>,
        /// Seconds after which the in-flight transactions complete.
        #[arg(long)]
        drain_after: Option<f64>,
        /// Database content (JSON).
        #[arg(long)]
        db_content: Option<String>,
        /// The ESC version the node runs (e.g. to simulate an upgrade).
        #[arg(long)]
        esc_version: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum RoleArg {
    Standalone,
    Master,
    Backup,
}

#[derive(Subcommand, Debug)]
enum FaultCmd {
    /// Add a fault: `esc-sim fault add esc --command backup --fault '{"kind":"exit","code":9}'`.
    Add {
        node: String,
        /// Command it hits (`backup`, `op_mode set`, ...); all commands when absent.
        #[arg(long)]
        command: Option<String>,
        /// How many times; until cleared when absent.
        #[arg(long)]
        times: Option<u32>,
        /// The fault as JSON (see README: exit, hang, garbage, warnings, drop_connection,
        /// slow, disk_full).
        #[arg(long)]
        fault: String,
    },
    List {
        node: String,
    },
    Clear {
        node: String,
    },
}

pub fn main() -> i32 {
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("esc-sim: {e:#}");
            1
        }
    }
}

fn root_of(cli_root: &Option<PathBuf>) -> Result<SimRoot> {
    match cli_root {
        Some(r) => Ok(SimRoot::new(r.clone())),
        None => bail!("no sim root: give --root DIR or set ESC_SIM_ROOT"),
    }
}

fn run(cli: Cli) -> Result<i32> {
    match cli.cmd {
        Cmd::Up {
            ha,
            esc_version,
            northbound,
            address,
            port,
            key_type,
            json,
            key_user,
        } => up(
            cli.root,
            ha,
            &esc_version,
            northbound,
            address,
            port,
            key_type.into_iter().map(Into::into).collect(),
            json,
            &key_user,
        ),
        Cmd::Node { cmd } => {
            let root = root_of(&cli.root)?;
            node_cmd(&root, cmd)
        }
        Cmd::Fault { cmd } => {
            let root = root_of(&cli.root)?;
            match cmd {
                FaultCmd::Add {
                    node,
                    command,
                    times,
                    fault,
                } => {
                    let kind = serde_json::from_str(&fault).context("parse --fault JSON")?;
                    root.add_fault(
                        &node,
                        Fault {
                            command,
                            fault: kind,
                            times,
                        },
                    )?;
                }
                FaultCmd::List { node } => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&root.load_faults(&node)?)?
                    )
                }
                FaultCmd::Clear { node } => root.clear_faults(&node)?,
            }
            Ok(0)
        }
        Cmd::Journal => {
            let root = root_of(&cli.root)?;
            for e in root.read_journal()? {
                println!("{}", serde_json::to_string(&e)?);
            }
            Ok(0)
        }
        Cmd::Run { node, args } => {
            let root = root_of(&cli.root)?;
            root.load_node(&node)?;
            let exe = std::env::current_exe()?;
            let err = Command::new(exe)
                .arg0("escadm")
                .args(args)
                .env(store::ENV_NODE, &node)
                .env(store::ENV_ROOT, root.path())
                .exec();
            bail!("exec escadm: {err}")
        }
        Cmd::Northbound { node, listen } => {
            let root = root_of(&cli.root)?;
            root.load_node(&node)?;
            let l = TcpListener::bind(listen).with_context(|| format!("bind {listen}"))?;
            crate::northbound::serve(root, node, l)?;
            Ok(0)
        }
    }
}

fn node_cmd(root: &SimRoot, cmd: NodeCmd) -> Result<i32> {
    match cmd {
        NodeCmd::Create {
            name,
            esc_version,
            role,
            peer,
        } => {
            let role = match role {
                RoleArg::Standalone => Role::Standalone,
                RoleArg::Master => Role::Master,
                RoleArg::Backup => Role::Backup,
            };
            if role != Role::Standalone && peer.is_none() {
                bail!("an HA node needs --peer");
            }
            let index = root.node_names()?.len() as u32;
            let st =
                crate::model::NodeState::new(&name, &esc_version, role, peer.as_deref(), index);
            provision::create_bare_node(root, &st)?;
            println!("created {name} in {}", root.path().display());
        }
        NodeCmd::List => {
            for n in root.node_names()? {
                let st = root.load_node(&n)?;
                println!(
                    "{n}\t{}\t{}\t{}\t{}",
                    st.role,
                    st.mode,
                    if st.all_stopped() {
                        "stopped"
                    } else {
                        "running"
                    },
                    st.esc_version
                );
            }
        }
        NodeCmd::Show { name } => {
            let st = root.load_node(&name)?;
            let info = provision::load_info(root, &name).ok();
            let v = serde_json::json!({
                "state": st,
                "monitoring": st.monitoring(),
                "corruption": st.corruption().map(|c| formats::corruption_detail(&c)),
                "faults": root.load_faults(&name)?,
                "access": info,
                "paths": {
                    "var_tmp": root.var_tmp_dir(&name),
                    "log_dir": root.log_dir(&name),
                    "dynamic_mapping": root.dynamic_mapping_path(&name),
                    "data": root.data_dir(&name),
                },
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        NodeCmd::Set {
            name,
            in_flight,
            drain_after,
            db_content,
            esc_version,
        } => {
            let content = db_content
                .map(|s| serde_json::from_str::<serde_json::Value>(&s))
                .transpose()
                .context("parse --db-content")?;
            root.update_node(&name, "node set", |st| {
                if let Some(n) = in_flight {
                    st.in_flight = n;
                    st.in_flight_drain_at_ms = None;
                }
                if let Some(s) = drain_after {
                    st.in_flight_drain_at_ms = Some(store::now_ms() + (s * 1000.0) as u64);
                }
                if let Some(c) = content {
                    st.db.content = c;
                }
                if let Some(v) = esc_version {
                    st.esc_version = v;
                }
            })?;
        }
    }
    Ok(0)
}

/// A child in its own process group that gets SIGTERM when this process dies.
struct Daemon {
    child: Child,
}

impl Daemon {
    fn spawn(mut cmd: Command, log: &std::path::Path) -> Result<Daemon> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0);
        // SAFETY: only async-signal-safe prctl between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                    .map_err(std::io::Error::from)
            });
        }
        Ok(Daemon {
            child: cmd.spawn().context("spawn")?,
        })
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pg = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pg, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..100 {
            if !self.alive() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = nix::sys::signal::killpg(pg, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

#[allow(clippy::too_many_arguments)]
fn up(
    root: Option<PathBuf>,
    ha: bool,
    esc_version: &str,
    northbound: bool,
    address: Option<Ipv4Addr>,
    port: Option<u16>,
    key_types: Vec<KeyType>,
    json: bool,
    key_user: &str,
) -> Result<i32> {
    use nix::sys::signal::{SigSet, Signal};
    let root = SimRoot::new(root.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("esc-sim-up-{}", std::process::id()))
    }));
    let exe = std::env::current_exe()?;
    provision::init_root(&root, &exe)?;
    let names: Vec<(&str, Role, Option<&str>)> = if ha {
        vec![
            ("esc-a", Role::Master, Some("esc-b")),
            ("esc-b", Role::Backup, Some("esc-a")),
        ]
    } else {
        vec![("esc", Role::Standalone, None)]
    };
    let mut infos: Vec<NodeInfo> = Vec::new();
    let mut daemons = Vec::new();
    for (i, (name, role, peer)) in names.iter().enumerate() {
        let addr = match address {
            Some(a) => Ipv4Addr::from(u32::from(a) + i as u32),
            None => provision::loopback_address(i as u32),
        };
        let p = match port {
            Some(p) => p,
            None => host_procs::free_port(addr)?,
        };
        let mut info = provision::create_node(
            &root,
            &NodePlan {
                name: (*name).to_owned(),
                esc_version: esc_version.to_owned(),
                role: *role,
                peer: peer.map(str::to_owned),
                index: i as u32,
                address: addr,
                port: p,
                key_user: key_user.to_owned(),
                key_types: key_types.clone(),
                pem_keys: false,
            },
        )?;
        let mut d = Daemon::spawn(provision::sshd_command(&info), &info.sshd_log)?;
        provision::wait_ready(info.socket_addr(), Duration::from_secs(15), || d.alive())
            .with_context(|| format!("see {}", info.sshd_log.display()))?;
        daemons.push(d);
        if northbound {
            let nb_port = host_procs::free_port(addr)?;
            let listen = SocketAddr::from((addr, nb_port));
            let mut c = Command::new(&exe);
            c.arg("--root")
                .arg(root.path())
                .arg("northbound")
                .arg(*name)
                .arg(listen.to_string());
            let log = root.node_dir(name).join("northbound.log");
            daemons.push(Daemon::spawn(c, &log)?);
            info.northbound = Some(listen);
            provision::save_info(&root, &info)?;
        }
        infos.push(info);
    }
    for info in &infos {
        std::fs::write(
            root.ssh_dir(&info.name).join("known_hosts"),
            format!("{}\n", info.known_hosts_line()),
        )?;
    }
    store::write_json(&root.path().join("up.json"), &infos)?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "root": root.path(), "nodes": infos, "password_file": provision::TEST_PASSWORD_FILE })
        );
    } else {
        println!(
            "esc-sim: {} node(s) up, sim root {}",
            infos.len(),
            root.path().display()
        );
        for info in &infos {
            let st = root.load_node(&info.name)?;
            println!("node {} ({}, ESC {})", info.name, st.role, st.esc_version);
            println!("  address:     {}:{}", info.address, info.port);
            for k in &info.client_keys {
                println!(
                    "  key login:   ssh -i {} -p {} -o UserKnownHostsFile={} {}@{}",
                    k.private_key_path.display(),
                    info.port,
                    root.ssh_dir(&info.name).join("known_hosts").display(),
                    info.key_user,
                    info.address
                );
            }
            println!(
                "  password:    user {} (password in {}, root only)",
                info.password_user,
                provision::TEST_PASSWORD_FILE
            );
            println!("  host key:    {}", info.host_public_key);
            println!("  known_hosts: {}", info.known_hosts_line());
            if let Some(nb) = info.northbound {
                println!("  northbound:  http://{nb}/");
            }
        }
        println!("journal: {}", root.journal_path().display());
        println!("Ctrl-C or SIGTERM stops the daemons.");
    }
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGHUP);
    set.thread_block()?;
    let _ = set.wait();
    drop(daemons);
    Ok(0)
}
