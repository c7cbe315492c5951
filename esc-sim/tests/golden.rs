//! Golden transcripts: `docs/escadm-formats/<command>--<case>.txt`, one per command and case,
//! are what the simulator prints. This test runs every case in-process (no sshd, no root, no
//! network: [`esc_sim::escadm::run`] on a sim root in a temporary directory, with a fixed clock)
//! and fails on any difference, and on any transcript no case makes. The operator's parsers
//! read the same files, so both sides are pinned to one text.
//!
//! Regenerate after a deliberate change: `ESC_SIM_BLESS=1 cargo test -p esc-sim --test golden`
//! (writes the changed files, removes the stale ones), then review the diff.
//!
//! Paths: the temporary sim root is written `/tmp/esc-sim` in the transcripts (in arguments
//! and output alike), so that they do not change from run to run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use esc_sim::escadm::{self, Ended, Invocation, Streams};
use esc_sim::faults::{Fault, FaultKind};
use esc_sim::formats::Source;
use esc_sim::model::{Database, NodeState, Role};
use esc_sim::provision;
use esc_sim::store::SimRoot;

/// 2026-11-28T08:30:00Z: every run of every case happens at this instant.
const CLOCK_MS: u64 = 1_795_854_600_000;
/// How the temporary sim root is written in the transcripts.
const SHOWN_ROOT: &str = "/tmp/esc-sim";
const BLESS_ENV: &str = "ESC_SIM_BLESS";
const VERSION: &str = "5.10.0.86";
/// A newer ESC, whose database a 5.10 node accepts but reports as corrupted.
const NEWER: &str = "5.11.0.3";

/// The commands transcripts are named after (the first part of a file name).
const COMMANDS: &[&str] = &[
    "op_mode-show",
    "op_mode-set",
    "status",
    "backup",
    "restore",
    "stop",
    "restart",
    "log-collect",
    "usage",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Topology {
    /// One node, `esc`.
    Standalone,
    /// `esc-a` MASTER and `esc-b` BACKUP.
    Ha,
}

/// One transcript: what runs where, after which setup.
struct Case {
    /// `<command>--<case>`, the file name without `.txt`.
    name: &'static str,
    describe: &'static str,
    topology: Topology,
    node: &'static str,
    /// Brings the world into the case's state (its commands are not part of the transcript).
    setup: fn(&Bench),
    /// escadm's arguments, space separated (none contains a space).
    args: &'static str,
    stdin: &'static str,
}

fn none(_: &Bench) {}

/// A fresh simulated world in a temporary directory.
struct Bench {
    _dir: tempfile::TempDir,
    root: SimRoot,
    real_root: String,
}

impl Bench {
    fn new(topology: Topology) -> Bench {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = SimRoot::new(dir.path());
        let nodes = match topology {
            Topology::Standalone => vec![NodeState::new("esc", VERSION, Role::Standalone, None, 0)],
            Topology::Ha => vec![
                NodeState::new("esc-a", VERSION, Role::Master, Some("esc-b"), 0),
                NodeState::new("esc-b", VERSION, Role::Backup, Some("esc-a"), 1),
            ],
        };
        for n in &nodes {
            provision::create_bare_node(&root, n).expect("create node");
        }
        let real_root = dir.path().to_str().expect("UTF-8 temp dir").to_owned();
        assert!(!real_root.contains(' '), "{real_root}");
        Bench {
            _dir: dir,
            root,
            real_root,
        }
    }

    /// Runs escadm in-process on `node`: (exit, stdout, stderr, source), paths shown.
    fn run(&self, node: &str, args: &str, stdin: &str) -> (Ended, String, String, Source) {
        let args: Vec<String> = args
            .split_whitespace()
            .map(|a| a.replace(SHOWN_ROOT, &self.real_root))
            .collect();
        let inv = Invocation {
            root: self.root.clone(),
            node: node.to_owned(),
            args,
            user: "escsim".to_owned(),
            cwd: self.root.data_dir(node),
            clock: || CLOCK_MS,
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut input = stdin.as_bytes();
        let ran = escadm::run(
            &inv,
            &mut Streams {
                stdin: &mut input,
                stdout: &mut out,
                stderr: &mut err,
            },
        );
        let shown = |b: Vec<u8>| {
            String::from_utf8(b)
                .expect("escadm printed UTF-8")
                .replace(&self.real_root, SHOWN_ROOT)
        };
        (ran.ended, shown(out), shown(err), ran.source)
    }

    /// A setup command, which must succeed.
    fn escadm(&self, node: &str, args: &str) {
        let (ended, out, err, _) = self.run(node, args, "");
        assert_eq!(
            ended,
            Ended::Exit(0),
            "setup `escadm {args}` on {node}: {out}{err}"
        );
    }

    fn update(&self, node: &str, f: impl FnOnce(&mut NodeState)) {
        self.root
            .update_node(node, "golden setup", f)
            .expect("update node");
    }

    fn fault(&self, node: &str, command: &str, fault: FaultKind) {
        self.root
            .add_fault(node, Fault::once(Some(command), fault))
            .expect("add fault");
    }

    fn stop_service(&self, node: &str, service: &str) {
        self.update(node, |n| {
            n.services
                .iter_mut()
                .find(|s| s.name == service)
                .expect("service")
                .running = false;
        });
    }

    /// A database written by a newer ESC, as a restore of its backup would leave it.
    fn newer_database(&self, node: &str) {
        self.update(node, |n| n.db = Database::fresh(NEWER));
    }

    fn warnings(&self, node: &str, command: &str) {
        self.fault(node, command, FaultKind::Warnings { lines: Vec::new() });
    }
}

/// `/tmp/esc-sim/nodes/<node>/data/<file>`: a path in the node's data directory.
macro_rules! data {
    ($node:literal, $file:literal) => {
        concat!("/tmp/esc-sim/nodes/", $node, "/data/", $file)
    };
}

fn cases() -> Vec<Case> {
    use Topology::{Ha, Standalone};
    let c = |name, describe, topology, node, setup: fn(&Bench), args| Case {
        name,
        describe,
        topology,
        node,
        setup,
        args,
        stdin: "",
    };
    vec![
        // ---- op_mode show ----
        c(
            "op_mode-show--operation",
            "standalone node in OPERATION mode (the default)",
            Standalone,
            "esc",
            none,
            "op_mode show",
        ),
        c(
            "op_mode-show--maintenance",
            "standalone node in MAINTENANCE mode",
            Standalone,
            "esc",
            |b| b.escadm("esc", "op_mode set --mode=maintenance"),
            "op_mode show",
        ),
        c(
            "op_mode-show--services-stopped",
            "the mode is shown while the services are stopped (that it works is assumed)",
            Standalone,
            "esc",
            |b| b.escadm("esc", "stop"),
            "op_mode show",
        ),
        c(
            "op_mode-show--ha-backup-replicated-mode",
            "on the HA BACKUP esc-b after MAINTENANCE was set on the MASTER esc-a: the mode is replicated (assumed)",
            Ha,
            "esc-b",
            |b| b.escadm("esc-a", "op_mode set --mode=maintenance"),
            "op_mode show",
        ),
        c(
            "op_mode-show--warnings",
            "an ESC 5.6+ warning line before the output (the simulator's warnings fault)",
            Standalone,
            "esc",
            |b| b.warnings("esc", "op_mode show"),
            "op_mode show",
        ),
        // ---- op_mode set ----
        c(
            "op_mode-set--maintenance",
            "standalone node enters MAINTENANCE",
            Standalone,
            "esc",
            none,
            "op_mode set --mode=maintenance",
        ),
        c(
            "op_mode-set--operation",
            "standalone node leaves MAINTENANCE",
            Standalone,
            "esc",
            |b| b.escadm("esc", "op_mode set --mode=maintenance"),
            "op_mode set --mode=operation",
        ),
        c(
            "op_mode-set--maintenance-already-set",
            "setting the mode the node already has prints the same lines (assumed)",
            Standalone,
            "esc",
            |b| b.escadm("esc", "op_mode set --mode=maintenance"),
            "op_mode set --mode=maintenance",
        ),
        c(
            "op_mode-set--maintenance-ipt-check",
            "--ipt_check=true with no transaction in flight",
            Standalone,
            "esc",
            none,
            "op_mode set --mode=maintenance --ipt_check=true",
        ),
        c(
            "op_mode-set--maintenance-in-flight-without-ipt-check",
            "2 transactions in flight, no --ipt_check (the manual's default): MAINTENANCE is entered",
            Standalone,
            "esc",
            |b| b.update("esc", |n| n.in_flight = 2),
            "op_mode set --mode=maintenance",
        ),
        c(
            "op_mode-set--maintenance-refused-in-flight",
            "--ipt_check=true with 2 transactions in flight: refused, exit 3",
            Standalone,
            "esc",
            |b| b.update("esc", |n| n.in_flight = 2),
            "op_mode set --mode=maintenance --ipt_check=true",
        ),
        c(
            "op_mode-set--ha-maintenance-on-master",
            "MASTER esc-a enters MAINTENANCE (its BACKUP follows)",
            Ha,
            "esc-a",
            none,
            "op_mode set --mode=maintenance --ipt_check=true",
        ),
        c(
            "op_mode-set--ha-maintenance-refused-in-flight-on-peer",
            "on the BACKUP esc-b with --ipt_check=true while 1 transaction is in flight on the MASTER esc-a: refused, exit 3",
            Ha,
            "esc-b",
            |b| b.update("esc-a", |n| n.in_flight = 1),
            "op_mode set --mode=maintenance --ipt_check=true",
        ),
        c(
            "op_mode-set--refused-services-stopped",
            "the services are stopped: refused, exit 7",
            Standalone,
            "esc",
            |b| b.escadm("esc", "stop"),
            "op_mode set --mode=maintenance",
        ),
        c(
            "op_mode-set--maintenance-warnings",
            "an ESC 5.6+ warning line before `Set mode to MAINTENANCE` (the simulator's warnings fault)",
            Standalone,
            "esc",
            |b| b.warnings("esc", "op_mode set"),
            "op_mode set --mode=maintenance",
        ),
        // ---- status --v: each role and health ----
        c(
            "status--standalone-healthy",
            "standalone node, every service running",
            Standalone,
            "esc",
            none,
            "status --v",
        ),
        c(
            "status--standalone-partial-stop",
            "standalone node with mona and escmanager stopped: unhealthy (the first stopped service), status=1",
            Standalone,
            "esc",
            |b| {
                b.stop_service("esc", "mona");
                b.stop_service("esc", "escmanager");
            },
            "status --v",
        ),
        c(
            "status--standalone-database-corrupted",
            "standalone 5.10 node running a database restored from ESC 5.11: unhealthy, status=2",
            Standalone,
            "esc",
            |b| b.newer_database("esc"),
            "status --v",
        ),
        c(
            "status--standalone-stopped",
            "standalone node after `escadm stop`: status=3",
            Standalone,
            "esc",
            |b| b.escadm("esc", "stop"),
            "status --v",
        ),
        c(
            "status--ha-master-healthy",
            "HA MASTER esc-a, every service running",
            Ha,
            "esc-a",
            none,
            "status --v",
        ),
        c(
            "status--ha-master-partial-stop",
            "HA MASTER esc-a with escmanager stopped: unhealthy, status=1",
            Ha,
            "esc-a",
            |b| b.stop_service("esc-a", "escmanager"),
            "status --v",
        ),
        c(
            "status--ha-master-database-corrupted",
            "HA MASTER esc-a (5.10) running a database from ESC 5.11: unhealthy, status=2",
            Ha,
            "esc-a",
            |b| b.newer_database("esc-a"),
            "status --v",
        ),
        c(
            "status--ha-master-stopped",
            "HA MASTER esc-a stopped after its BACKUP (no failover): keeps its last role, status=3",
            Ha,
            "esc-a",
            |b| {
                b.escadm("esc-b", "stop");
                b.escadm("esc-a", "stop");
            },
            "status --v",
        ),
        c(
            "status--ha-master-after-failover",
            "esc-b, the BACKUP, after the MASTER esc-a stopped: esc-b is MASTER",
            Ha,
            "esc-b",
            |b| b.escadm("esc-a", "stop"),
            "status --v",
        ),
        c(
            "status--ha-backup-healthy",
            "HA BACKUP esc-b, every service running",
            Ha,
            "esc-b",
            none,
            "status --v",
        ),
        c(
            "status--ha-backup-partial-stop",
            "HA BACKUP esc-b with keepalived stopped: unhealthy, status=1",
            Ha,
            "esc-b",
            |b| b.stop_service("esc-b", "keepalived"),
            "status --v",
        ),
        c(
            "status--ha-backup-database-corrupted",
            "HA BACKUP esc-b (5.10) holding a database from ESC 5.11: unhealthy, status=2",
            Ha,
            "esc-b",
            |b| b.newer_database("esc-b"),
            "status --v",
        ),
        c(
            "status--ha-backup-stopped",
            "HA BACKUP esc-b stopped: status=3",
            Ha,
            "esc-b",
            |b| b.escadm("esc-b", "stop"),
            "status --v",
        ),
        c(
            "status--without-v",
            "`status` without --v prints the same (assumed)",
            Standalone,
            "esc",
            none,
            "status",
        ),
        c(
            "status--warnings",
            "an ESC 5.6+ warning line before the service lines (the simulator's warnings fault)",
            Standalone,
            "esc",
            |b| b.warnings("esc", "status"),
            "status --v",
        ),
        // ---- backup ----
        c(
            "backup--standalone",
            "standalone node in MAINTENANCE backs up to a local file",
            Standalone,
            "esc",
            |b| b.escadm("esc", "op_mode set --mode=maintenance"),
            concat!("backup --file ", data!("esc", "esc-db.tar.bz2")),
        ),
        c(
            "backup--relative-file",
            "a relative --file is resolved against the working directory (here the node's data dir) and shown absolute",
            Standalone,
            "esc",
            |b| b.escadm("esc", "op_mode set --mode=maintenance"),
            "backup --file=esc-db.tar.bz2",
        ),
        c(
            "backup--ha-master",
            "HA MASTER esc-a in MAINTENANCE backs up",
            Ha,
            "esc-a",
            |b| b.escadm("esc-a", "op_mode set --mode=maintenance"),
            concat!("backup --file ", data!("esc-a", "esc-db.tar.bz2")),
        ),
        c(
            "backup--refused-operation-mode",
            "backup in OPERATION mode: refused, exit 4",
            Standalone,
            "esc",
            none,
            concat!("backup --file ", data!("esc", "esc-db.tar.bz2")),
        ),
        c(
            "backup--ha-refused-on-backup-node",
            "backup on the HA BACKUP esc-b (in MAINTENANCE): refused, exit 5",
            Ha,
            "esc-b",
            |b| b.escadm("esc-a", "op_mode set --mode=maintenance"),
            concat!("backup --file ", data!("esc-b", "esc-db.tar.bz2")),
        ),
        c(
            "backup--refused-services-stopped",
            "backup with the services stopped: refused, exit 7",
            Standalone,
            "esc",
            |b| {
                b.escadm("esc", "op_mode set --mode=maintenance");
                b.escadm("esc", "stop");
            },
            concat!("backup --file ", data!("esc", "esc-db.tar.bz2")),
        ),
        c(
            "backup--disk-full",
            "the disk fills up while writing (the simulator's disk_full fault): exit 8, a truncated file is left",
            Standalone,
            "esc",
            |b| {
                b.escadm("esc", "op_mode set --mode=maintenance");
                b.fault("esc", "backup", FaultKind::DiskFull { after_bytes: 100 });
            },
            concat!("backup --file ", data!("esc", "esc-db.tar.bz2")),
        ),
        c(
            "backup--cannot-write",
            "the destination directory does not exist: exit 8",
            Standalone,
            "esc",
            |b| b.escadm("esc", "op_mode set --mode=maintenance"),
            concat!("backup --file ", data!("esc", "missing/esc-db.tar.bz2")),
        ),
        c(
            "backup--scp-no-password",
            "an scp destination without a password: the prompt on stderr (no newline), no input: exit 8",
            Standalone,
            "esc",
            |b| b.escadm("esc", "op_mode set --mode=maintenance"),
            "backup --file scp://admin@10.0.0.5:/backups/esc-db.tar.bz2",
        ),
        // ---- restore ----
        c(
            "restore--standalone",
            "standalone node, services stopped, restores its own backup",
            Standalone,
            "esc",
            |b| {
                b.escadm("esc", "op_mode set --mode=maintenance");
                b.escadm(
                    "esc",
                    concat!("backup --file ", data!("esc", "esc-db.tar.bz2")),
                );
                b.escadm("esc", "stop");
            },
            concat!("restore --file ", data!("esc", "esc-db.tar.bz2")),
        ),
        c(
            "restore--ha-master",
            "HA MASTER esc-a restores after the BACKUP then the MASTER were stopped (the seed's order)",
            Ha,
            "esc-a",
            |b| {
                b.escadm("esc-a", "op_mode set --mode=maintenance");
                b.escadm(
                    "esc-a",
                    concat!("backup --file ", data!("esc-a", "esc-db.tar.bz2")),
                );
                b.escadm("esc-b", "stop");
                b.escadm("esc-a", "stop");
            },
            concat!("restore --file ", data!("esc-a", "esc-db.tar.bz2")),
        ),
        c(
            "restore--newer-esc-version",
            "a backup from ESC 5.11 restored on a 5.10 node is accepted (status --v then reports the database corrupted)",
            Standalone,
            "esc",
            |b| {
                b.newer_database("esc");
                b.escadm("esc", "op_mode set --mode=maintenance");
                b.escadm(
                    "esc",
                    concat!("backup --file ", data!("esc", "esc-511-db.tar.bz2")),
                );
                b.escadm("esc", "stop");
            },
            concat!("restore --file ", data!("esc", "esc-511-db.tar.bz2")),
        ),
        c(
            "restore--refused-services-running",
            "restore while the services run: refused before anything else, exit 6",
            Standalone,
            "esc",
            none,
            concat!("restore --file ", data!("esc", "esc-db.tar.bz2")),
        ),
        c(
            "restore--missing-file",
            "the archive does not exist: exit 8",
            Standalone,
            "esc",
            |b| b.escadm("esc", "stop"),
            concat!("restore --file ", data!("esc", "no-such.tar.bz2")),
        ),
        c(
            "restore--not-a-backup",
            "a tar.bz2 that holds no esc_db/metadata.json: exit 8",
            Standalone,
            "esc",
            |b| {
                b.escadm("esc", "stop");
                not_a_backup(&b.root.data_dir("esc"), "other.tar.bz2");
            },
            concat!("restore --file ", data!("esc", "other.tar.bz2")),
        ),
        c(
            "restore--scp-no-password",
            "an scp source without a password: the prompt on stderr (no newline), no input: exit 8",
            Standalone,
            "esc",
            |b| b.escadm("esc", "stop"),
            "restore --file scp://admin@10.0.0.5:/backups/esc-db.tar.bz2",
        ),
        // ---- stop ----
        c(
            "stop--standalone",
            "standalone node stops its services",
            Standalone,
            "esc",
            none,
            "stop",
        ),
        c(
            "stop--ha-master-fails-over",
            "the MASTER esc-a stops while its BACKUP runs: esc-b takes over (the output does not say so)",
            Ha,
            "esc-a",
            none,
            "stop",
        ),
        c(
            "stop--already-stopped",
            "stopping a stopped node prints the same and changes nothing (assumed)",
            Standalone,
            "esc",
            |b| b.escadm("esc", "stop"),
            "stop",
        ),
        // ---- restart ----
        c(
            "restart--standalone",
            "standalone node with its services running restarts them",
            Standalone,
            "esc",
            none,
            "restart",
        ),
        c(
            "restart--from-stopped",
            "standalone node starts its stopped services",
            Standalone,
            "esc",
            |b| b.escadm("esc", "stop"),
            "restart",
        ),
        c(
            "restart--ha-backup",
            "the BACKUP esc-b restarts while the MASTER runs: it stays BACKUP",
            Ha,
            "esc-b",
            none,
            "restart",
        ),
        // ---- log collect ----
        c(
            "log-collect--standalone",
            "the archive lands in the node's /var/tmp (under the sim root on the simulator); parse the path from `Log file: `",
            Standalone,
            "esc",
            none,
            "log collect",
        ),
        c(
            "log-collect--services-stopped",
            "logs are collected while the services are stopped (assumed)",
            Standalone,
            "esc",
            |b| b.escadm("esc", "stop"),
            "log collect",
        ),
        c(
            "log-collect--disk-full",
            "the disk fills up while writing the archive (the simulator's disk_full fault): exit 8",
            Standalone,
            "esc",
            |b| {
                b.fault(
                    "esc",
                    "log collect",
                    FaultKind::DiskFull { after_bytes: 10 },
                )
            },
            "log collect",
        ),
        // ---- usage errors: exit 2, nothing runs ----
        c(
            "usage--no-command",
            "escadm with no arguments",
            Standalone,
            "esc",
            none,
            "",
        ),
        c(
            "usage--unknown-command",
            "a command escadm does not have",
            Standalone,
            "esc",
            none,
            "frobnicate",
        ),
        c(
            "usage--op-mode-without-subcommand",
            "op_mode without show or set",
            Standalone,
            "esc",
            none,
            "op_mode",
        ),
        c(
            "usage--op-mode-set-without-mode",
            "op_mode set without --mode",
            Standalone,
            "esc",
            none,
            "op_mode set --ipt_check=true",
        ),
        c(
            "usage--bad-mode-manual-typo",
            "the manual's own typo `maintenace` is rejected",
            Standalone,
            "esc",
            none,
            "op_mode set --mode=maintenace --ipt_check=true",
        ),
        c(
            "usage--bad-mode-upper-case",
            "the mode value is lower case only",
            Standalone,
            "esc",
            none,
            "op_mode set --mode=MAINTENANCE",
        ),
        c(
            "usage--bad-ipt-check",
            "--ipt_check takes true or false",
            Standalone,
            "esc",
            none,
            "op_mode set --mode=maintenance --ipt_check=yes",
        ),
        c(
            "usage--unknown-option",
            "an option the command does not take",
            Standalone,
            "esc",
            none,
            "status --verbose",
        ),
        c(
            "usage--unexpected-argument",
            "a word where an option was expected",
            Standalone,
            "esc",
            none,
            "status v",
        ),
        c(
            "usage--option-needs-value",
            "--file given last, with no value",
            Standalone,
            "esc",
            none,
            "backup --file",
        ),
        c(
            "usage--backup-without-file",
            "backup without --file",
            Standalone,
            "esc",
            none,
            "backup",
        ),
        c(
            "usage--backup-bad-scp-destination",
            "an scp destination with no file part; the password is shown as ***",
            Standalone,
            "esc",
            none,
            "backup --file scp://admin:secret@10.0.0.5",
        ),
    ]
}

/// Writes a valid tar.bz2 that is no ESC backup.
fn not_a_backup(dir: &Path, name: &str) {
    let src = dir.join("not-esc");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("README"), "not an ESC database\n").unwrap();
    let st = std::process::Command::new("tar")
        .arg("-cjf")
        .arg(dir.join(name))
        .arg("-C")
        .arg(dir)
        .arg("not-esc")
        .status()
        .expect("run tar");
    assert!(st.success());
}

/// Runs a case and writes its transcript.
fn transcript(case: &Case) -> String {
    let bench = Bench::new(case.topology);
    (case.setup)(&bench);
    let (ended, stdout, stderr, source) = bench.run(case.node, case.args, case.stdin);
    let Ended::Exit(exit) = ended else {
        panic!("{}: the session was dropped", case.name);
    };
    let mut t = String::new();
    t.push_str("# escadm transcript v1\n");
    writeln!(t, "# case: {}", case.describe).unwrap();
    let source = match source {
        Source::Seed => "seed",
        Source::Assumed => "assumed",
    };
    writeln!(t, "# source: {source}").unwrap();
    let topology = match case.topology {
        Topology::Standalone => "standalone",
        Topology::Ha => "ha",
    };
    writeln!(t, "# topology: {topology}").unwrap();
    let argv: Vec<&str> = case.args.split_whitespace().collect();
    if argv.is_empty() {
        t.push_str("$ escadm\n");
    } else {
        writeln!(t, "$ escadm {}", argv.join(" ")).unwrap();
    }
    writeln!(t, "exit: {exit}").unwrap();
    for (section, text) in [("stdout", &stdout), ("stderr", &stderr)] {
        writeln!(t, "--- {section}").unwrap();
        t.push_str(text);
        if !text.is_empty() && !text.ends_with('\n') {
            t.push_str("\n--- no final newline\n");
        }
    }
    t.push_str("--- end\n");
    t
}

fn transcripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/escadm-formats")
}

/// A diff-ish view: every line, the differing ones as `-` (file) and `+` (simulator).
fn diff(expected: &str, actual: &str) -> String {
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let mut out = String::new();
    for i in 0..e.len().max(a.len()) {
        match (e.get(i), a.get(i)) {
            (Some(x), Some(y)) if x == y => writeln!(out, "   {x}").unwrap(),
            (x, y) => {
                if let Some(x) = x {
                    writeln!(out, " - {x}").unwrap();
                }
                if let Some(y) = y {
                    writeln!(out, " + {y}").unwrap();
                }
            }
        }
    }
    out
}

#[test]
fn golden_case_names_follow_the_contract() {
    let mut seen = BTreeMap::new();
    for case in cases() {
        let (command, rest) = case
            .name
            .split_once("--")
            .unwrap_or_else(|| panic!("{}: no `--`", case.name));
        assert!(COMMANDS.contains(&command), "{}: command", case.name);
        assert!(
            !rest.is_empty()
                && rest.split('-').all(|w| !w.is_empty()
                    && w.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())),
            "{}: the case is kebab-case",
            case.name
        );
        assert!(seen.insert(case.name, ()).is_none(), "{}: twice", case.name);
        // The file's command is the command that runs (usage errors aside).
        let words: Vec<&str> = case.args.split_whitespace().take(2).collect();
        if command != "usage" {
            assert_eq!(
                command.split(['-']).collect::<Vec<_>>(),
                words[..command.split('-').count()],
                "{}: runs `{}`",
                case.name,
                case.args
            );
        }
        assert!(!case.describe.contains('\n'), "{}", case.name);
    }
}

#[test]
fn golden_transcripts_match_the_simulator() {
    let dir = transcripts_dir();
    let bless = std::env::var_os(BLESS_ENV).is_some();
    let mut made = BTreeMap::new();
    for case in cases() {
        made.insert(format!("{}.txt", case.name), transcript(&case));
    }
    let mut problems = Vec::new();
    let mut present = Vec::new();
    if dir.exists() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            if name.ends_with(".txt") {
                present.push(name);
            }
        }
    }
    present.sort();
    for name in &present {
        if !made.contains_key(name) {
            if bless {
                std::fs::remove_file(dir.join(name)).unwrap();
            } else {
                problems.push(format!(
                    "docs/escadm-formats/{name}: no case makes this transcript (remove it, or add its case to esc-sim/tests/golden.rs)"
                ));
            }
        }
    }
    for (name, text) in &made {
        let path = dir.join(name);
        let old = std::fs::read_to_string(&path).ok();
        if old.as_deref() == Some(text.as_str()) {
            continue;
        }
        if bless {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, text).unwrap();
            continue;
        }
        problems.push(match old {
            None => format!("docs/escadm-formats/{name}: missing; the simulator prints:\n{text}"),
            Some(old) => format!(
                "docs/escadm-formats/{name} differs from what the simulator prints (- file, + simulator):\n{}",
                diff(&old, text)
            ),
        });
    }
    assert!(
        problems.is_empty(),
        "{}\n\n{} transcript problem(s). If the change is deliberate, regenerate with\n    {BLESS_ENV}=1 cargo test -p esc-sim --test golden\nand review the diff (the operator's parsers read these files).",
        problems.join("\n\n"),
        problems.len()
    );
}
