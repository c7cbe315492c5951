//! How nodes are reached and observed: key types, the password user, sudo, the northbound
//! endpoint, the esc-sim CLI, big files, and that the harness stops what it started.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;

use esc_testbed::host_procs;
use esc_testbed::sshd::{Fill, KeyType, SimSpec, What};

#[test]
fn every_key_type_logs_in_and_the_host_key_is_verified() {
    let sim = common::start(SimSpec::standalone().key_types(&[
        KeyType::Ed25519,
        KeyType::Rsa,
        KeyType::Ecdsa,
    ]));
    let n = sim.node("esc");
    assert!(
        n.private_key_pem()
            .unwrap()
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----")
    );
    for k in n.client_keys() {
        let out = Command::new("ssh")
            .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o"])
            .arg(format!(
                "UserKnownHostsFile={}",
                n.known_hosts_file().display()
            ))
            .args(["-o", "StrictHostKeyChecking=yes", "-p"])
            .arg(n.port().to_string())
            .arg("-i")
            .arg(&k.private_key_path)
            .arg(format!("{}@{}", n.key_user(), n.address()))
            .arg("escadm op_mode show")
            .output()
            .unwrap();
        assert!(out.status.success(), "{:?}: {out:?}", k.kind);
        assert_eq!(out.stdout, b"Operation Mode = OPERATION\n");
    }
    assert!(n.known_hosts_line().starts_with(&format!(
        "[{}]:{} ssh-ed25519 AAAA",
        n.address(),
        n.port()
    )));
    // A wrong host key is refused by the client.
    let bad = n.data_dir().join("bad_known_hosts");
    std::fs::write(
        &bad,
        format!(
            "[{}]:{} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMSQ5cAvX6lstY3CIhQauJbJAQxgj6+wDBO+p3ompIHm\n",
            n.address(),
            n.port()
        ),
    )
    .unwrap();
    let out = Command::new("ssh")
        .args(["-o", "BatchMode=yes", "-o"])
        .arg(format!("UserKnownHostsFile={}", bad.display()))
        .args(["-o", "StrictHostKeyChecking=yes", "-p"])
        .arg(n.port().to_string())
        .arg("-i")
        .arg(n.private_key_path())
        .arg(format!("root@{}", n.address()))
        .arg("true")
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn pem_keys_on_request() {
    let mut spec = SimSpec::standalone().key_types(&[KeyType::Rsa, KeyType::Ecdsa]);
    spec.pem_keys = true;
    let sim = common::start(spec);
    let n = sim.node("esc");
    assert!(
        n.private_key_of(KeyType::Rsa)
            .unwrap()
            .starts_with("-----BEGIN RSA PRIVATE KEY-----")
    );
    assert!(
        n.private_key_of(KeyType::Ecdsa)
            .unwrap()
            .starts_with("-----BEGIN EC PRIVATE KEY-----")
    );
    assert_eq!(n.escadm("op_mode show").unwrap().exit, 0);
}

#[test]
fn password_user_and_key_user_see_one_world_and_sudo_works() {
    let mut spec = SimSpec::standalone();
    spec.key_user = "root".into();
    let sim = common::start(spec);
    let n = sim.node("esc");
    let o = n
        .ssh_password("id -un; sudo escadm op_mode set --mode=maintenance")
        .unwrap();
    assert_eq!(o.exit, 0, "{o:?}");
    assert_eq!(
        o.lines(),
        [
            "escsim",
            "Set mode to MAINTENANCE",
            "Operation Mode = MAINTENANCE"
        ]
    );
    assert_eq!(
        n.escadm("op_mode show").unwrap().stdout,
        "Operation Mode = MAINTENANCE\n"
    );
    let o = n
        .ssh("sudo -n escadm op_mode set --mode=operation")
        .unwrap();
    assert_eq!(o.exit, 0, "{o:?}");
    let o = n.ssh_password("escadm op_mode show").unwrap();
    assert_eq!(o.stdout, "Operation Mode = OPERATION\n");
    let users: Vec<String> = sim
        .journal()
        .unwrap()
        .commands(None)
        .iter()
        .map(|e| match &e.what {
            What::Command { user, .. } => user.clone(),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(users, ["escsim", "root", "root", "escsim"]);
    // A wrong password is refused.
    let out = Command::new("sshpass")
        .arg("-e")
        .arg("ssh")
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(["-o", "PubkeyAuthentication=no", "-p"])
        .arg(n.port().to_string())
        .arg(format!("escsim@{}", n.address()))
        .arg("true")
        .env("SSHPASS", "definitely-wrong")
        .output()
        .unwrap();
    assert!(!out.status.success());
}

fn http_get(url: &str) -> (u16, String) {
    let addr = url.strip_prefix("http://").unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET /esc/health HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

#[test]
fn northbound_answers_unavailable_in_maintenance_and_reports_monitoring_paused() {
    let sim = common::start(SimSpec::ha().northbound());
    let (a, b) = (sim.node("esc-a"), sim.node("esc-b"));
    let (status, body) = http_get(&a.northbound_url().unwrap());
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""monitoring":"active""#), "{body}");
    let (status, _) = http_get(&b.northbound_url().unwrap());
    assert_eq!(status, 503, "the standby serves no northbound");
    a.escadm("op_mode set --mode=maintenance").unwrap();
    let (status, body) = http_get(&a.northbound_url().unwrap());
    assert_eq!(status, 503);
    assert!(body.contains("unavailable temporarily"), "{body}");
    assert!(body.contains(r#""monitoring":"paused""#), "{body}");
    a.escadm("op_mode set --mode=operation").unwrap();
    assert_eq!(http_get(&a.northbound_url().unwrap()).0, 200);
    let nb: Vec<u16> = sim
        .journal()
        .unwrap()
        .entries()
        .iter()
        .filter_map(|e| match &e.what {
            What::Northbound { status, .. } => Some(*status),
            _ => None,
        })
        .collect();
    assert_eq!(nb, [200, 503, 503, 200]);
}

#[test]
fn cli_inspects_faults_and_changes_nodes() {
    let sim = common::standalone();
    let n = sim.node("esc");
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_esc-sim"))
            .arg("--root")
            .arg(sim.root())
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "esc-sim {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    cli(&[
        "fault",
        "add",
        "esc",
        "--command",
        "backup",
        "--times",
        "1",
        "--fault",
        r#"{"kind":"exit","code":13}"#,
    ]);
    assert_eq!(n.faults().unwrap().len(), 1);
    cli(&["node", "set", "esc", "--in-flight", "4"]);
    assert_eq!(n.state().unwrap().in_flight, 4);
    let show: serde_json::Value = serde_json::from_str(&cli(&["node", "show", "esc"])).unwrap();
    assert_eq!(show["state"]["in_flight"], 4);
    assert_eq!(show["access"]["port"], n.port());
    assert_eq!(show["monitoring"], "active");
    let listing = cli(&["node", "list"]);
    assert!(
        listing.starts_with("esc\tSTANDALONE\tOPERATION\trunning\t5.10.0.86"),
        "{listing}"
    );
    // `run` executes escadm as the node without ssh.
    let out = cli(&["run", "esc", "--", "op_mode", "show"]);
    assert_eq!(out, "Operation Mode = OPERATION\n");
    cli(&["fault", "clear", "esc"]);
    assert!(n.faults().unwrap().is_empty());
    let journal = cli(&["journal"]);
    assert!(journal.lines().count() >= 4, "{journal}");
}

#[test]
fn big_files_in_a_nodes_data_dir_stream_over_ssh() {
    let sim = common::standalone();
    let n = sim.node("esc");
    let size = 8 << 20;
    let p = n.create_file("big.bin", size, Fill::Random(7)).unwrap();
    assert_eq!(std::fs::metadata(&p).unwrap().len(), size);
    let z = n.create_file("zeros.bin", 1 << 30, Fill::Zeros).unwrap();
    assert_eq!(std::fs::metadata(&z).unwrap().len(), 1 << 30);
    let o = n.ssh(&format!("sha256sum {}", p.display())).unwrap();
    let local = Command::new("sha256sum").arg(&p).output().unwrap();
    assert_eq!(o.stdout.as_bytes(), local.stdout);
    let o = n.ssh(&format!("cat {}", p.display())).unwrap();
    assert_eq!(o.stdout_bytes.len() as u64, size);
}

#[test]
fn dropping_the_simulation_stops_its_daemons_and_removes_its_root() {
    let sim = common::start(SimSpec::ha().northbound());
    let pids: Vec<u32> = sim.nodes().iter().filter_map(|n| n.sshd_pid()).collect();
    assert_eq!(pids.len(), 2);
    let root = sim.root().to_path_buf();
    for &p in &pids {
        assert!(host_procs::is_alive(p), "sshd {p} does not run");
    }
    drop(sim);
    for &p in &pids {
        assert!(
            !host_procs::is_alive(p),
            "sshd {p} still runs: {:?}",
            host_procs::process(p)
        );
    }
    assert!(!root.exists());
}

#[test]
fn dropping_the_simulation_ends_sessions_and_commands_still_running() {
    let sim = common::standalone();
    let n = sim.node("esc");
    n.fault_once(
        "status",
        esc_testbed::sshd::FaultKind::Hang { seconds: 60.0 },
    )
    .unwrap();
    let mut client = n
        .ssh_command("escadm status --v")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let root = sim.root().to_owned();
    // Live (non-zombie) processes whose environment puts them in the simulation: (pid, args).
    // Matched more loosely than the harness does (anything at or under the root), so that the
    // test does not share its blind spots.
    let running = || -> Vec<(u32, Vec<std::ffi::OsString>)> {
        host_procs::processes()
            .unwrap()
            .into_iter()
            .filter(|p| p.is_alive())
            .filter(|p| {
                p.environ().is_ok_and(|env| {
                    env.get("ESC_SIM_ROOT")
                        .is_some_and(|v| std::path::Path::new(v).starts_with(&root))
                })
            })
            .map(|p| (p.pid, p.cmdline().unwrap_or_default()))
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // Wait until escadm itself runs (hung), not just the session's shell.
    while !running()
        .iter()
        .any(|(_, args)| args.first().is_some_and(|a| a == "escadm"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "escadm never started: {:?}",
            running()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    drop(sim);
    // The hung escadm and its sshd session are gone; the client sees the connection end.
    let left = running();
    assert!(
        left.is_empty(),
        "processes of the dropped simulation still run: {left:?}"
    );
    let status = client.wait().unwrap();
    assert!(!status.success());
}

#[test]
fn esc_sim_up_serves_an_ha_pair_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("sim");
    let log = dir.path().join("up.log");
    let mut c = Command::new(env!("CARGO_BIN_EXE_esc-sim"));
    c.arg("up")
        .arg("--ha")
        .arg("--json")
        .arg("--root")
        .arg(&root);
    let mut up = esc_testbed::process::ProcessGroup::spawn("esc-sim-up", c, &log).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let doc: serde_json::Value = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.starts_with('{')) {
            break serde_json::from_str(line).unwrap();
        }
        assert!(up.try_exit_status().is_none(), "esc-sim up exited: {text}");
        assert!(std::time::Instant::now() < deadline, "esc-sim up: {text}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut pids = Vec::new();
    for (node, role) in doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .zip(["Master", "Backup"])
    {
        let name = node["name"].as_str().unwrap();
        let ssh = root.join("nodes").join(name).join("ssh");
        let out = Command::new("ssh")
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
            ])
            .arg(format!(
                "UserKnownHostsFile={}",
                ssh.join("known_hosts").display()
            ))
            .arg("-p")
            .arg(node["port"].to_string())
            .arg("-i")
            .arg(node["client_keys"][0]["private_key_path"].as_str().unwrap())
            .arg(format!(
                "{}@{}",
                node["key_user"].as_str().unwrap(),
                node["address"].as_str().unwrap()
            ))
            .arg("escadm status --v")
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.ends_with(&format!("ESC status=0 ESC {role} Healthy\n")),
            "{stdout}"
        );
        let pid: u32 = std::fs::read_to_string(ssh.join("sshd.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        pids.push(pid);
    }
    up.stop(std::time::Duration::from_secs(10));
    for p in pids {
        assert!(
            host_procs::process(p).is_none(),
            "sshd {p} survived esc-sim up"
        );
    }
}
