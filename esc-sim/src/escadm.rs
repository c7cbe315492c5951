//! `escadm` on a simulated ESC node: parses the command line as escadm does, runs the command
//! against the node's state (under the sim root's lock), applies injected faults and prints
//! the typed reply through [`crate::formats`].
//!
//! The core, [`run`], takes everything a process would get from its environment (an
//! [`Invocation`]: sim root, node, arguments, user, working directory, clock) and its three
//! streams, so that it runs in-process as well (the golden transcripts are made that way);
//! [`main`] is the process shell around it. The node comes from `ESC_SIM_NODE` and the sim root
//! from `ESC_SIM_ROOT`, both set by the node's sshd (`SetEnv`); outside sshd they can be set by
//! hand (or use `esc-sim run`).
//!
//! May import: `model`, `reply`, `formats`, `faults`, `store` (this is the top of the escadm
//! side; nothing but `main.rs` imports it).

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{BufRead, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use crate::faults::{FaultKind, take_matching};
use crate::formats::{self, Source};
use crate::model::{self, Database, Event, Mode, Outcome, Refusal, World};
use crate::reply::{Begun, Failed, Failure, IoFailure, Reply, Report, Usage};
use crate::store::{self, Lock, SimRoot, What, now_ms, redact};

/// A parsed escadm command line.
#[derive(Clone, Debug, PartialEq)]
pub enum Cmd {
    OpModeShow,
    OpModeSet { mode: Mode, ipt_check: bool },
    Status { verbose: bool },
    Backup { file: String },
    Restore { file: String },
    Stop,
    Restart,
    LogCollect,
}

impl Cmd {
    /// The key faults match on.
    pub fn key(&self) -> &'static str {
        match self {
            Cmd::OpModeShow => "op_mode show",
            Cmd::OpModeSet { .. } => "op_mode set",
            Cmd::Status { .. } => "status",
            Cmd::Backup { .. } => "backup",
            Cmd::Restore { .. } => "restore",
            Cmd::Stop => "stop",
            Cmd::Restart => "restart",
            Cmd::LogCollect => "log collect",
        }
    }
}

/// Takes `--name=value` or `--name value` options out of `args`.
fn options(args: &[String], allowed: &[&str]) -> Result<Vec<(String, Option<String>)>, Usage> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let Some(stripped) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
            return Err(Usage::UnexpectedArgument(a.clone()));
        };
        let (name, value) = match stripped.split_once('=') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => (stripped.to_owned(), None),
        };
        if !allowed.contains(&name.as_str()) {
            return Err(Usage::UnknownOption(a.clone()));
        }
        let takes_value = name != "v";
        let value = if takes_value && value.is_none() {
            i += 1;
            match args.get(i) {
                Some(v) => Some(v.clone()),
                None => return Err(Usage::OptionNeedsValue(name)),
            }
        } else {
            value
        };
        out.push((name, value));
        i += 1;
    }
    Ok(out)
}

fn bool_opt(v: &str) -> Result<bool, Usage> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(Usage::BadIptCheck(v.to_owned())),
    }
}

/// Parses escadm's arguments (without the program name).
pub fn parse(args: &[String]) -> Result<Cmd, Usage> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        [] => Err(Usage::NoCommand),
        ["op_mode", "show"] => Ok(Cmd::OpModeShow),
        ["op_mode", "set", rest @ ..] => {
            let rest: Vec<String> = rest.iter().map(|s| (*s).to_owned()).collect();
            let mut mode = None;
            let mut ipt_check = false;
            for (name, value) in options(&rest, &["mode", "ipt_check"])? {
                let value = value.unwrap_or_default();
                match name.as_str() {
                    "mode" => {
                        mode = Some(
                            Mode::parse_arg(&value).ok_or_else(|| Usage::BadMode(value.clone()))?,
                        )
                    }
                    _ => ipt_check = bool_opt(&value)?,
                }
            }
            let mode = mode.ok_or(Usage::OpModeSetNeedsMode)?;
            Ok(Cmd::OpModeSet { mode, ipt_check })
        }
        ["op_mode", ..] => Err(Usage::OpModeNeedsSubcommand),
        ["status", rest @ ..] => {
            let rest: Vec<String> = rest.iter().map(|s| (*s).to_owned()).collect();
            let opts = options(&rest, &["v"])?;
            Ok(Cmd::Status {
                verbose: !opts.is_empty(),
            })
        }
        [c @ ("backup" | "restore"), rest @ ..] => {
            let rest: Vec<String> = rest.iter().map(|s| (*s).to_owned()).collect();
            let opts = options(&rest, &["file"])?;
            let file = opts
                .into_iter()
                .find_map(|(_, v)| v)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| Usage::NeedsFile {
                    command: (*c).to_owned(),
                })?;
            if *c == "backup" {
                Ok(Cmd::Backup { file })
            } else {
                Ok(Cmd::Restore { file })
            }
        }
        ["stop"] => Ok(Cmd::Stop),
        ["restart"] => Ok(Cmd::Restart),
        ["log", "collect"] => Ok(Cmd::LogCollect),
        [other, ..] => Err(Usage::UnknownCommand((*other).to_owned())),
    }
}

/// `scp://user[:password]@host[:port]:file` (the `:port` part is a simulator extension, for
/// backup peers that do not listen on port 22).
#[derive(Clone, Debug, PartialEq)]
pub struct ScpUrl {
    pub user: String,
    pub password: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    pub path: String,
}

pub fn parse_scp(s: &str) -> Option<ScpUrl> {
    let rest = s.strip_prefix("scp://")?;
    let at = rest.rfind('@')?;
    let (userinfo, hostpart) = (&rest[..at], &rest[at + 1..]);
    let (user, password) = match userinfo.split_once(':') {
        Some((u, p)) => (u.to_owned(), Some(p.to_owned())),
        None => (userinfo.to_owned(), None),
    };
    let (host, after) = hostpart.split_once(':')?;
    let (port, path) = match after.split_once(':') {
        Some((p, path)) if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) => {
            (Some(p.parse().ok()?), path)
        }
        _ => (None, after),
    };
    if user.is_empty() || host.is_empty() || path.is_empty() {
        return None;
    }
    Some(ScpUrl {
        user,
        password,
        host: host.to_owned(),
        port,
        path: path.to_owned(),
    })
}

/// Where a backup goes or a restore comes from.
enum Location {
    Local(PathBuf),
    Scp(ScpUrl),
}

/// Who runs escadm, where and when: what a process gets from its environment.
#[derive(Clone, Debug)]
pub struct Invocation {
    pub root: SimRoot,
    pub node: String,
    /// The arguments, without the program name.
    pub args: Vec<String>,
    /// The user it runs as (journal and node log only).
    pub user: String,
    /// The working directory: relative `--file` paths are resolved against it.
    pub cwd: PathBuf,
    /// Unix milliseconds now: in-flight drains, log file names, archive timestamps.
    pub clock: fn() -> u64,
}

/// The three standard streams of a run.
pub struct Streams<'a> {
    pub stdin: &'a mut dyn BufRead,
    pub stdout: &'a mut dyn Write,
    pub stderr: &'a mut dyn Write,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    Exit(i32),
    /// A drop-connection fault struck: the session must be cut now, with no exit status.
    Dropped,
}

/// What a run printed came from the seed only, or not; and how it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ran {
    pub ended: Ended,
    pub source: Source,
}

/// Runs escadm with `args` (without the program name) as a process; returns the exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let args: Vec<String> = args
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let (root, node) = match identity() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{}", formats::error_line(&format!("{e:#}")));
            return formats::EXIT_INTERNAL;
        }
    };
    let inv = Invocation {
        root,
        node,
        args,
        user: current_user(),
        cwd: std::env::current_dir().unwrap_or_default(),
        clock: now_ms,
    };
    let stdin = std::io::stdin();
    let mut stdin = stdin.lock();
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    let ran = run(
        &inv,
        &mut Streams {
            stdin: &mut stdin,
            stdout: &mut stdout,
            stderr: &mut stderr,
        },
    );
    match ran.ended {
        Ended::Exit(code) => code,
        Ended::Dropped => drop_connection(&inv.root, &inv.node),
    }
}

fn identity() -> Result<(SimRoot, String)> {
    let node = std::env::var(store::ENV_NODE)
        .map_err(|_| anyhow!("not a simulated ESC node: {} is not set", store::ENV_NODE))?;
    store::check_node_name(&node)?;
    let root = SimRoot::from_env()?;
    Ok((root, node))
}

fn current_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| nix::unistd::getuid().to_string())
}

/// One run in progress.
struct Ctx<'a> {
    inv: &'a Invocation,
    root: &'a SimRoot,
    node: &'a str,
    started_ms: u64,
}

impl Ctx<'_> {
    fn now(&self) -> u64 {
        (self.inv.clock)()
    }
}

/// Runs escadm in-process: the command's effects land in the sim root, its output in `io`.
pub fn run(inv: &Invocation, io: &mut Streams) -> Ran {
    let ctx = Ctx {
        inv,
        root: &inv.root,
        node: &inv.node,
        started_ms: (inv.clock)(),
    };
    match run_checked(&ctx, io) {
        Ok(ran) => ran,
        Err(e) => {
            let _ = writeln!(io.stderr, "{}", formats::error_line(&format!("{e:#}")));
            let _ = journal_command(&ctx, "internal", formats::EXIT_INTERNAL, &[]);
            Ran {
                ended: Ended::Exit(formats::EXIT_INTERNAL),
                source: Source::Assumed,
            }
        }
    }
}

fn journal_command(ctx: &Ctx, command: &str, exit: i32, faults: &[FaultKind]) -> Result<()> {
    let lock = ctx.root.lock()?;
    journal_command_locked(ctx, &lock, command, exit, faults)
}

fn journal_command_locked(
    ctx: &Ctx,
    lock: &Lock,
    command: &str,
    exit: i32,
    faults: &[FaultKind],
) -> Result<()> {
    let args: Vec<String> = ctx.inv.args.iter().map(|a| redact(a)).collect();
    ctx.root.append_journal(
        lock,
        ctx.node,
        What::Command {
            command: command.to_owned(),
            args: args.clone(),
            exit,
            user: ctx.inv.user.clone(),
            faults: faults.iter().map(|f| f.name().to_owned()).collect(),
            started_ms: ctx.started_ms,
        },
    )?;
    // The node's own log, for `log collect`.
    let line = format!(
        "{} {} escadm {} -> exit {exit}\n",
        store::timestamp(ctx.now()),
        ctx.inv.user,
        args.join(" ")
    );
    append_log(ctx.root, ctx.node, "escadm.log", &line);
    Ok(())
}

fn append_log(root: &SimRoot, node: &str, file: &str, line: &str) {
    let dir = root.log_dir(node);
    let _ = store::mkdir_shared(&dir);
    if let Ok(mut f) = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o666)
        .open(dir.join(file))
    {
        store::share(&f);
        let _ = f.write_all(line.as_bytes());
    }
}

fn run_checked(ctx: &Ctx, io: &mut Streams) -> Result<Ran> {
    // Fails early (and clearly) when the node does not exist.
    ctx.root.load_node(ctx.node)?;
    let cmd = match parse(&ctx.inv.args) {
        Ok(c) => c,
        Err(u) => {
            let failure = Failure::Usage(u);
            let exit = formats::failure_exit(&failure);
            journal_command(ctx, "usage", exit, &[])?;
            writeln!(
                io.stderr,
                "{}",
                formats::error_line(&formats::failure_message(&failure))
            )?;
            return Ok(Ran {
                ended: Ended::Exit(exit),
                source: Source::Assumed,
            });
        }
    };
    // Phase 1: take the faults that hit this command.
    let faults = {
        let _lock = ctx.root.lock()?;
        let mut all = ctx.root.load_faults(ctx.node)?;
        let hit = take_matching(&mut all, cmd.key());
        if !hit.is_empty() {
            ctx.root.save_faults(ctx.node, &all)?;
        }
        hit
    };
    for f in &faults {
        if let FaultKind::Hang { seconds } = f {
            std::thread::sleep(Duration::from_secs_f64(seconds.max(0.0)));
        }
    }
    if let Some((code, message)) = faults.iter().find_map(|f| match f {
        FaultKind::Exit { code, message } => Some((*code, message.clone())),
        _ => None,
    }) {
        journal_command(ctx, cmd.key(), code, &faults)?;
        for l in prelude_lines(ctx, &faults) {
            io.stdout.write_all(&l)?;
            io.stdout.write_all(b"\n")?;
        }
        io.stdout.flush()?;
        let failure = Failure::Injected { code, message };
        writeln!(
            io.stderr,
            "{}",
            formats::error_line(&formats::failure_message(&failure))
        )?;
        return Ok(Ran {
            ended: Ended::Exit(code),
            source: Source::Assumed,
        });
    }
    // Phase 2: run it.
    let reply = execute(ctx, &cmd, &faults, io)?;
    // Phase 3: print, through the output faults.
    Ok(emit(ctx, &reply, &faults, io))
}

/// Loads the world, completes due in-flight transactions, runs `f`, saves what changed,
/// journals the events and the command.
fn with_world(
    ctx: &Ctx,
    cmd: &Cmd,
    faults: &[FaultKind],
    f: impl FnOnce(&mut World) -> Result<Outcome<Report>, Refusal>,
) -> Result<Reply> {
    let lock = ctx.root.lock()?;
    let mut world = ctx.root.load_world(ctx.node)?;
    let drained = world.drain(ctx.now());
    ctx.root.journal_events(&lock, &drained)?;
    let before = world.clone();
    let reply = match f(&mut world) {
        Ok(outcome) => {
            if world != before || !drained.is_empty() {
                ctx.root.save_world(&world)?;
            }
            record(ctx, &lock, &outcome.events)?;
            Ok(outcome.value)
        }
        Err(r) => {
            // A refusal changes nothing but the drain that came first.
            if !drained.is_empty() {
                ctx.root.save_world(&before)?;
            }
            Err(Failed::at_once(r))
        }
    };
    journal_command_locked(ctx, &lock, cmd.key(), formats::exit_code(&reply), faults)?;
    Ok(reply)
}

/// Journals a step's events and writes the service starts and stops to the node's log.
fn record(ctx: &Ctx, lock: &Lock, events: &[(String, Event)]) -> Result<()> {
    ctx.root.journal_events(lock, events)?;
    for (node, e) in events {
        let what = match e {
            Event::ServicesStarted => "started",
            Event::ServicesStopped => "stopped",
            _ => continue,
        };
        append_log(
            ctx.root,
            node,
            "escmanager.log",
            &format!("{} ESC services {what}\n", store::timestamp(ctx.now())),
        );
    }
    Ok(())
}

/// A step that answers without changing anything.
fn read_only<T>(value: T) -> Result<Outcome<T>, Refusal> {
    Ok(Outcome {
        value,
        events: Vec::new(),
    })
}

fn execute(ctx: &Ctx, cmd: &Cmd, faults: &[FaultKind], io: &mut Streams) -> Result<Reply> {
    let node = ctx.node;
    match cmd {
        Cmd::OpModeShow => with_world(ctx, cmd, faults, |w| {
            read_only(Report::OpMode(model::op_mode_show(w, node)))
        }),
        Cmd::Status { .. } => with_world(ctx, cmd, faults, |w| {
            read_only(Report::Status(model::status(w, node)))
        }),
        Cmd::OpModeSet { mode, ipt_check } => with_world(ctx, cmd, faults, |w| {
            model::op_mode_set(w, node, *mode, *ipt_check).map(|o| relabel(o, Report::ModeSet))
        }),
        Cmd::Stop => with_world(ctx, cmd, faults, |w| {
            Ok(relabel(model::stop(w, node), |_| Report::Stopped))
        }),
        Cmd::Restart => with_world(ctx, cmd, faults, |w| {
            Ok(relabel(model::restart(w, node), |_| Report::Restarted))
        }),
        Cmd::Backup { file } => backup(ctx, cmd, faults, file, io),
        Cmd::Restore { file } => restore(ctx, cmd, faults, file, io),
        Cmd::LogCollect => log_collect(ctx, cmd, faults),
    }
}

/// The same step, its value turned into what escadm reports.
fn relabel<T>(o: Outcome<T>, f: impl FnOnce(T) -> Report) -> Outcome<Report> {
    Outcome {
        value: f(o.value),
        events: o.events,
    }
}

fn location(ctx: &Ctx, file: &str) -> Result<Location, Usage> {
    if file.starts_with("scp://") {
        parse_scp(file)
            .map(Location::Scp)
            .ok_or_else(|| Usage::BadScpDestination(redact(file)))
    } else {
        let p = PathBuf::from(file);
        let p = if p.is_absolute() {
            p
        } else {
            ctx.inv.cwd.join(&p)
        };
        Ok(Location::Local(p))
    }
}

fn disk_full_after(faults: &[FaultKind]) -> Option<u64> {
    faults.iter().find_map(|f| match f {
        FaultKind::DiskFull { after_bytes } => Some(*after_bytes),
        _ => None,
    })
}

/// Asks for the password of an scp URL that has none, as escadm does (stderr prompt, stdin).
fn scp_password(url: &ScpUrl, io: &mut Streams) -> Result<String, IoFailure> {
    if let Some(p) = &url.password {
        return Ok(p.clone());
    }
    let _ = io.stderr.write_all(formats::PASSWORD_PROMPT.as_bytes());
    let _ = io.stderr.flush();
    let mut line = String::new();
    match io.stdin.read_line(&mut line) {
        Ok(n) if n > 0 => Ok(line.trim_end_matches(['\r', '\n']).to_owned()),
        _ => Err(IoFailure::NoPassword {
            user: url.user.clone(),
            host: url.host.clone(),
        }),
    }
}

/// A scratch directory under the node's tmp, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(ctx: &Ctx) -> Result<Scratch> {
        let p =
            ctx.root
                .tmp_dir(ctx.node)
                .join(format!("escadm-{}-{}", std::process::id(), ctx.now()));
        store::mkdir_shared(&p)?;
        Ok(Scratch(p))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn run_tool(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Writes the tar.bz2 of `db` to `<scratch>/db.tar.bz2`. The archive depends only on the
/// database, the node and the clock (sorted members, fixed times, owners and modes), so the
/// same backup has the same size wherever and by whomever it runs.
fn build_archive(ctx: &Ctx, scratch: &Path, db: &Database) -> Result<PathBuf> {
    let dir = scratch.join("esc_db");
    store::mkdir_shared(&dir)?;
    let now = ctx.now();
    let meta = serde_json::json!({
        "esc_version": db.esc_version,
        "schema_version": db.schema_version,
        "node": ctx.node,
        "created": store::timestamp(now),
    });
    fs::write(dir.join("metadata.json"), serde_json::to_vec_pretty(&meta)?)?;
    fs::write(
        dir.join("database.json"),
        serde_json::to_vec_pretty(&db.content)?,
    )?;
    let out = scratch.join("db.tar.bz2");
    run_tool(
        Command::new("tar")
            .arg("-cjf")
            .arg(&out)
            .arg("--sort=name")
            .arg(format!("--mtime=@{}", now / 1000))
            .arg("--owner=0")
            .arg("--group=0")
            .arg("--numeric-owner")
            .arg("--mode=a+rw")
            .arg("-C")
            .arg(scratch)
            .arg("esc_db"),
        "tar",
    )?;
    Ok(out)
}

/// Reads a backup archive back into a [`Database`].
fn read_archive(scratch: &Path, archive: &Path, shown: &str) -> Result<Database, IoFailure> {
    if !archive.is_file() {
        return Err(IoFailure::CannotRead {
            path: shown.to_owned(),
            reason: "No such file or directory".to_owned(),
        });
    }
    let dir = scratch.join("extract");
    store::mkdir_shared(&dir).map_err(|e| IoFailure::Tool(format!("{e:#}")))?;
    let bad = |why: String| IoFailure::NotABackup {
        src: shown.to_owned(),
        why,
    };
    run_tool(
        Command::new("tar")
            .arg("-xjf")
            .arg(archive)
            .arg("-C")
            .arg(&dir),
        "tar",
    )
    .map_err(|e| bad(format!("{e:#}")))?;
    let meta: serde_json::Value = fs::read(dir.join("esc_db/metadata.json"))
        .map_err(|e| bad(format!("esc_db/metadata.json: {e}")))
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| bad(format!("metadata: {e}"))))?;
    let content: serde_json::Value = fs::read(dir.join("esc_db/database.json"))
        .map_err(|e| bad(format!("esc_db/database.json: {e}")))
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| bad(format!("database: {e}"))))?;
    let esc_version = meta["esc_version"]
        .as_str()
        .ok_or_else(|| bad("metadata has no esc_version".into()))?
        .to_owned();
    let schema_version = meta["schema_version"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| model::schema_of(&esc_version));
    Ok(Database {
        esc_version,
        schema_version,
        content,
    })
}

/// Copies `src` to `dest`; with a disk-full fault only the first `limit` bytes, then fails.
fn copy_out(src: &Path, dest: &Path, limit: Option<u64>) -> Result<u64, IoFailure> {
    let shown = dest.display().to_string();
    let io = |e: std::io::Error| IoFailure::CannotWrite {
        path: shown.clone(),
        reason: e.to_string(),
    };
    match limit {
        None => fs::copy(src, dest).map_err(io),
        Some(n) => {
            let bytes = fs::read(src).map_err(io)?;
            let n = (n as usize).min(bytes.len().saturating_sub(1));
            fs::write(dest, &bytes[..n]).map_err(io)?;
            Err(IoFailure::DiskFull { path: shown })
        }
    }
}

fn scp_base(ctx: &Ctx, url: &ScpUrl) -> Command {
    let mut c = Command::new("sshpass");
    c.arg("-e")
        .arg("scp")
        .arg("-q")
        .arg("-o")
        .arg("BatchMode=no");
    if let Some(p) = url.port {
        c.arg("-P").arg(p.to_string());
    }
    let kh = ctx.root.ssh_dir(ctx.node).join("escadm_known_hosts");
    c.arg("-o")
        .arg("StrictHostKeyChecking=accept-new")
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", kh.display()))
        .arg("-o")
        .arg("PubkeyAuthentication=no")
        .arg("-o")
        .arg("PreferredAuthentications=password,keyboard-interactive")
        .arg("-o")
        .arg("ConnectTimeout=15");
    c
}

/// Journals a command that failed before it took the lock for its work.
fn failed_early(ctx: &Ctx, cmd: &Cmd, faults: &[FaultKind], failed: Failed) -> Result<Reply> {
    let reply = Err(failed);
    journal_command(ctx, cmd.key(), formats::exit_code(&reply), faults)?;
    Ok(reply)
}

fn backup(
    ctx: &Ctx,
    cmd: &Cmd,
    faults: &[FaultKind],
    file: &str,
    io: &mut Streams,
) -> Result<Reply> {
    let loc = match location(ctx, file) {
        Ok(l) => l,
        Err(u) => return failed_early(ctx, cmd, faults, Failed::at_once(u)),
    };
    // The password prompt (if any) comes before anything is locked.
    let password = match &loc {
        Location::Scp(u) => match scp_password(u, io) {
            Ok(p) => Some(p),
            Err(e) => return failed_early(ctx, cmd, faults, Failed::at_once(e)),
        },
        Location::Local(_) => None,
    };
    let shown = match &loc {
        Location::Local(p) => p.display().to_string(),
        Location::Scp(_) => redact(file),
    };
    let lock = ctx.root.lock()?;
    let mut world = ctx.root.load_world(ctx.node)?;
    let drained = world.drain(ctx.now());
    ctx.root.journal_events(&lock, &drained)?;
    if !drained.is_empty() {
        ctx.root.save_world(&world)?;
    }
    let reply = (|| -> Result<Reply> {
        if let Err(r) = model::check_backup(&world, ctx.node) {
            return Ok(Err(Failed::at_once(r)));
        }
        let begun = || Begun::Backup {
            dest: shown.clone(),
        };
        let scratch = Scratch::new(ctx)?;
        let archive = build_archive(ctx, &scratch.0, &world.node(ctx.node).db)?;
        let limit = disk_full_after(faults);
        let bytes = match &loc {
            Location::Local(dest) => match copy_out(&archive, dest, limit) {
                Ok(b) => b,
                Err(e) => return Ok(Err(Failed::after(begun(), e))),
            },
            Location::Scp(url) => {
                if limit.is_some() {
                    let full = IoFailure::DiskFull {
                        path: shown.clone(),
                    };
                    return Ok(Err(Failed::after(begun(), full)));
                }
                let mut c = scp_base(ctx, url);
                c.arg(&archive)
                    .arg(format!("{}@{}:{}", url.user, url.host, url.path))
                    .env("SSHPASS", password.clone().unwrap_or_default());
                if let Err(e) = run_tool(&mut c, "scp") {
                    return Ok(Err(Failed::after(
                        begun(),
                        IoFailure::Tool(format!("{e:#}")),
                    )));
                }
                fs::metadata(&archive).map(|m| m.len()).unwrap_or(0)
            }
        };
        ctx.root.journal_events(
            &lock,
            &[(
                ctx.node.to_owned(),
                Event::BackupWritten {
                    dest: shown.clone(),
                    bytes,
                },
            )],
        )?;
        Ok(Ok(Report::BackedUp {
            dest: shown.clone(),
            bytes,
        }))
    })()?;
    journal_command_locked(ctx, &lock, cmd.key(), formats::exit_code(&reply), faults)?;
    Ok(reply)
}

fn restore(
    ctx: &Ctx,
    cmd: &Cmd,
    faults: &[FaultKind],
    file: &str,
    io: &mut Streams,
) -> Result<Reply> {
    let node = ctx.node;
    // Refuse before anything else (no prompt, no download) while services run.
    {
        let lock = ctx.root.lock()?;
        let world = ctx.root.load_world(node)?;
        if let Err(r) = model::check_restore(&world, node) {
            let reply = Err(Failed::at_once(r));
            journal_command_locked(ctx, &lock, cmd.key(), formats::exit_code(&reply), faults)?;
            return Ok(reply);
        }
    }
    let loc = match location(ctx, file) {
        Ok(l) => l,
        Err(u) => return failed_early(ctx, cmd, faults, Failed::at_once(u)),
    };
    let scratch = Scratch::new(ctx)?;
    let (archive, shown) = match &loc {
        Location::Local(p) => (p.clone(), p.display().to_string()),
        Location::Scp(url) => {
            let password = match scp_password(url, io) {
                Ok(p) => p,
                Err(e) => return failed_early(ctx, cmd, faults, Failed::at_once(e)),
            };
            let local = scratch.0.join("download.tar.bz2");
            let mut c = scp_base(ctx, url);
            c.arg(format!("{}@{}:{}", url.user, url.host, url.path))
                .arg(&local)
                .env("SSHPASS", password);
            let shown = redact(file);
            if let Err(e) = run_tool(&mut c, "scp") {
                let failed = Failed::after(
                    Begun::Restore { src: shown },
                    IoFailure::Tool(format!("{e:#}")),
                );
                return failed_early(ctx, cmd, faults, failed);
            }
            (local, shown)
        }
    };
    let begun = Begun::Restore { src: shown.clone() };
    let db = match read_archive(&scratch.0, &archive, &shown) {
        Ok(db) => db,
        Err(e) => return failed_early(ctx, cmd, faults, Failed::after(begun, e)),
    };
    let lock = ctx.root.lock()?;
    let mut world = ctx.root.load_world(node)?;
    // Checked again: the services may have started while the archive was read.
    let reply = match model::check_restore(&world, node) {
        Err(r) => Err(Failed::after(begun, r)),
        Ok(()) => {
            let outcome = model::apply_restore(&mut world, node, db);
            ctx.root.save_world(&world)?;
            record(ctx, &lock, &outcome.events)?;
            Ok(Report::Restored { src: shown })
        }
    };
    journal_command_locked(ctx, &lock, cmd.key(), formats::exit_code(&reply), faults)?;
    Ok(reply)
}

fn log_collect(ctx: &Ctx, cmd: &Cmd, faults: &[FaultKind]) -> Result<Reply> {
    let node = ctx.node;
    let lock = ctx.root.lock()?;
    let reply = (|| -> Result<Reply> {
        let var_tmp = ctx.root.var_tmp_dir(node);
        store::mkdir_shared(&var_tmp)?;
        store::mkdir_shared(&ctx.root.log_dir(node))?;
        let dest = var_tmp.join(formats::log_file_name(&store::timestamp(ctx.now())));
        let scratch = Scratch::new(ctx)?;
        let tmp = scratch.0.join("logs.tar.bz2");
        let logs_parent = ctx.root.fs_dir(node).join("var/log");
        run_tool(
            Command::new("tar")
                .arg("-cjf")
                .arg(&tmp)
                .arg("-C")
                .arg(&logs_parent)
                .arg("esc"),
            "tar",
        )?;
        if let Err(e) = copy_out(&tmp, &dest, disk_full_after(faults)) {
            return Ok(Err(Failed::after(Begun::LogCollect, e)));
        }
        let path = dest.display().to_string();
        ctx.root.journal_events(
            &lock,
            &[(node.to_owned(), Event::LogsCollected { path: path.clone() })],
        )?;
        Ok(Ok(Report::LogsCollected { path }))
    })()?;
    journal_command_locked(ctx, &lock, cmd.key(), formats::exit_code(&reply), faults)?;
    Ok(reply)
}

/// Lines printed before the output by the warnings and garbage faults.
fn prelude_lines(ctx: &Ctx, faults: &[FaultKind]) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    for f in faults {
        match f {
            FaultKind::Warnings { lines: w } => {
                if w.is_empty() {
                    lines.push(formats::DEFAULT_WARNING.as_bytes().to_vec());
                } else {
                    lines.extend(w.iter().map(|l| l.as_bytes().to_vec()));
                }
            }
            FaultKind::Garbage { lines: n } => {
                let mut x = ctx.now() ^ 0x9e37_79b9_7f4a_7c15;
                for i in 0..*n {
                    let mut l = Vec::new();
                    for _ in 0..(20 + (i % 40)) {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let b = (x & 0xff) as u8;
                        // Anything but a newline: control characters, invalid UTF-8, '=' signs.
                        l.push(if b == b'\n' { b'=' } else { b });
                    }
                    lines.push(l);
                }
            }
            _ => {}
        }
    }
    lines
}

/// Prints the reply through the output faults (prelude lines, slow lines, a dropped session).
fn emit(ctx: &Ctx, reply: &Reply, faults: &[FaultKind], io: &mut Streams) -> Ran {
    let rendered = formats::render(reply);
    let delay = faults.iter().find_map(|f| match f {
        FaultKind::Slow { line_delay_ms } => Some(Duration::from_millis(*line_delay_ms)),
        _ => None,
    });
    let drop_after = faults.iter().find_map(|f| match f {
        FaultKind::DropConnection { after_lines } => Some(*after_lines as usize),
        _ => None,
    });
    let mut lines: Vec<Vec<u8>> = prelude_lines(ctx, faults);
    let prelude = lines.len();
    let source = if prelude == 0 {
        rendered.source
    } else {
        Source::Assumed
    };
    lines.extend(rendered.stdout.iter().map(|l| l.as_bytes().to_vec()));
    let dropped = Ran {
        ended: Ended::Dropped,
        source,
    };
    for (i, l) in lines.iter().enumerate() {
        if drop_after == Some(i.saturating_sub(prelude)) && i >= prelude {
            let _ = io.stdout.flush();
            return dropped;
        }
        if let Some(d) = delay {
            std::thread::sleep(d);
        }
        let _ = io.stdout.write_all(l);
        let _ = io.stdout.write_all(b"\n");
        let _ = io.stdout.flush();
    }
    if drop_after.is_some() {
        let _ = io.stdout.flush();
        return dropped;
    }
    if let Some(e) = &rendered.stderr {
        if let Some(d) = delay {
            std::thread::sleep(d);
        }
        let _ = writeln!(io.stderr, "{e}");
        let _ = io.stderr.flush();
    }
    Ran {
        ended: Ended::Exit(rendered.exit),
        source,
    }
}

/// Kills the sshd processes serving this session (never the node's listening sshd), so the
/// client's connection drops with no exit status. Then exits.
fn drop_connection(root: &SimRoot, node: &str) -> ! {
    // Give sshd a moment to forward what was printed.
    std::thread::sleep(Duration::from_millis(100));
    let listener: Option<i32> = fs::read_to_string(root.ssh_dir(node).join("sshd.pid"))
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let mut pid = nix::unistd::getppid().as_raw();
    let mut victims = Vec::new();
    let mut under_listener = false;
    for _ in 0..16 {
        if pid <= 1 {
            break;
        }
        if Some(pid) == listener {
            under_listener = true;
            break;
        }
        let Some(process) = host_procs::process(pid as u32) else {
            break;
        };
        if process.comm.starts_with("sshd") {
            victims.push(pid);
        }
        pid = process.ppid as i32;
    }
    // Only sessions of this node's own sshd: never an sshd this escadm merely runs under
    // (`esc-sim run` from a developer's ssh login, say).
    if !under_listener {
        victims.clear();
    }
    for v in victims {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(v),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    std::process::exit(255)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Cmd, Usage> {
        let v: Vec<String> = s.split_whitespace().map(str::to_owned).collect();
        parse(&v)
    }

    #[test]
    fn parses_the_manuals_command_lines() {
        assert_eq!(p("op_mode show").unwrap(), Cmd::OpModeShow);
        assert_eq!(
            p("op_mode set --mode=maintenance").unwrap(),
            Cmd::OpModeSet {
                mode: Mode::Maintenance,
                ipt_check: false
            }
        );
        assert_eq!(
            p("op_mode set --mode=maintenance --ipt_check=true").unwrap(),
            Cmd::OpModeSet {
                mode: Mode::Maintenance,
                ipt_check: true
            }
        );
        assert_eq!(
            p("op_mode set --mode operation").unwrap(),
            Cmd::OpModeSet {
                mode: Mode::Operation,
                ipt_check: false
            }
        );
        assert_eq!(p("status --v").unwrap(), Cmd::Status { verbose: true });
        assert_eq!(
            p("backup --file /tmp/db.tar.bz2").unwrap(),
            Cmd::Backup {
                file: "/tmp/db.tar.bz2".into()
            }
        );
        assert_eq!(
            p("restore --file=/tmp/db.tar.bz2").unwrap(),
            Cmd::Restore {
                file: "/tmp/db.tar.bz2".into()
            }
        );
        assert_eq!(p("log collect").unwrap(), Cmd::LogCollect);
        assert_eq!(p("stop").unwrap(), Cmd::Stop);
        assert_eq!(p("restart").unwrap(), Cmd::Restart);
    }

    #[test]
    fn rejects_the_manuals_typo_and_other_usage_errors() {
        assert_eq!(
            p("op_mode set --mode=maintenace --ipt_check=true"),
            Err(Usage::BadMode("maintenace".into()))
        );
        let cases = [
            ("", Usage::NoCommand),
            ("op_mode", Usage::OpModeNeedsSubcommand),
            ("op_mode set", Usage::OpModeSetNeedsMode),
            (
                "op_mode set --mode=MAINTENANCE",
                Usage::BadMode("MAINTENANCE".into()),
            ),
            (
                "op_mode set --mode=maintenance --ipt_check=yes",
                Usage::BadIptCheck("yes".into()),
            ),
            (
                "backup",
                Usage::NeedsFile {
                    command: "backup".into(),
                },
            ),
            ("backup --file", Usage::OptionNeedsValue("file".into())),
            ("status --verbose", Usage::UnknownOption("--verbose".into())),
            ("status v", Usage::UnexpectedArgument("v".into())),
            ("frobnicate", Usage::UnknownCommand("frobnicate".into())),
            ("log", Usage::UnknownCommand("log".into())),
        ];
        for (bad, want) in cases {
            assert_eq!(p(bad), Err(want), "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(args in proptest::collection::vec(".{0,20}", 0..6)) {
            let _ = parse(&args);
        }

        #[test]
        fn scp_parsing_never_panics_and_redaction_hides_the_password(
            user in "[a-z]{1,8}",
            password in "[A-Za-z0-9@:!]{1,16}",
            host in "[a-z0-9.]{1,12}",
            path in "/[a-z/]{1,12}",
        ) {
            let url = format!("scp://{user}:{password}@{host}:{path}");
            let u = parse_scp(&url).expect("valid url");
            proptest::prop_assert_eq!(&u.password, &Some(password.clone()));
            proptest::prop_assert_eq!(&u.path, &path);
            let shown = redact(&format!("--file={url}"));
            proptest::prop_assert!(!shown.contains(&format!(":{password}@")), "{}", shown);
        }
    }

    #[test]
    fn scp_urls() {
        let u = parse_scp("scp://admin:pw:with@at@10.0.0.5:/backups/db.tar.bz2").unwrap();
        assert_eq!(u.user, "admin");
        assert_eq!(u.password.as_deref(), Some("pw:with@at"));
        assert_eq!(u.host, "10.0.0.5");
        assert_eq!(u.port, None);
        assert_eq!(u.path, "/backups/db.tar.bz2");
        let u = parse_scp("scp://admin@127.0.0.9:2222:db.tar.bz2").unwrap();
        assert_eq!(u.password, None);
        assert_eq!(u.port, Some(2222));
        assert_eq!(u.path, "db.tar.bz2");
        assert!(parse_scp("scp://admin:pw@host").is_none());
        assert!(parse_scp("/tmp/x").is_none());
    }

    /// A standalone node `esc` in a temporary sim root, run in-process at a fixed time.
    struct Local {
        _dir: tempfile::TempDir,
        root: SimRoot,
    }

    const NOW: u64 = 1_795_854_600_000;

    impl Local {
        fn new() -> Local {
            let dir = tempfile::tempdir().unwrap();
            let root = SimRoot::new(dir.path());
            let st = model::NodeState::new("esc", "5.10.0.86", model::Role::Standalone, None, 0);
            crate::provision::create_bare_node(&root, &st).unwrap();
            Local { _dir: dir, root }
        }

        fn run(&self, args: &str) -> (Ran, String) {
            let inv = Invocation {
                root: self.root.clone(),
                node: "esc".into(),
                args: args.split_whitespace().map(str::to_owned).collect(),
                user: "tester".into(),
                cwd: self.root.data_dir("esc"),
                clock: || NOW,
            };
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let ran = run(
                &inv,
                &mut Streams {
                    stdin: &mut &b""[..],
                    stdout: &mut out,
                    stderr: &mut err,
                },
            );
            (ran, String::from_utf8(out).unwrap())
        }

        fn commands(&self) -> Vec<(String, i32)> {
            self.root
                .read_journal()
                .unwrap()
                .into_iter()
                .filter_map(|e| match e.what {
                    What::Command { command, exit, .. } => Some((command, exit)),
                    _ => None,
                })
                .collect()
        }

        fn drains(&self) -> usize {
            self.root
                .read_journal()
                .unwrap()
                .iter()
                .filter(|e| matches!(e.what, What::Event(Event::InFlightDrained { .. })))
                .count()
        }
    }

    #[test]
    fn a_refusal_changes_nothing_and_is_journaled_with_its_exit() {
        let l = Local::new();
        l.root
            .update_node("esc", "test", |n| n.in_flight = 2)
            .unwrap();
        let (ran, out) = l.run("op_mode set --mode=maintenance --ipt_check=true");
        assert_eq!(ran.ended, Ended::Exit(formats::EXIT_IN_FLIGHT));
        assert_eq!(ran.source, Source::Assumed);
        assert!(out.is_empty());
        assert_eq!(l.root.load_node("esc").unwrap().mode, Mode::Operation);
        assert_eq!(
            l.commands(),
            [("op_mode set".to_owned(), formats::EXIT_IN_FLIGHT)]
        );
        let (ran, _) = l.run("op_mode set --mode=maintenance");
        assert_eq!((ran.ended, ran.source), (Ended::Exit(0), Source::Seed));
        assert_eq!(l.root.load_node("esc").unwrap().mode, Mode::Maintenance);
    }

    #[test]
    fn a_drain_is_saved_and_journaled_once_even_by_a_read_only_command() {
        let l = Local::new();
        l.root
            .update_node("esc", "test", |n| {
                n.in_flight = 2;
                n.in_flight_drain_at_ms = Some(NOW - 1);
            })
            .unwrap();
        assert_eq!(l.run("status --v").0.ended, Ended::Exit(0));
        assert_eq!(l.root.load_node("esc").unwrap().in_flight, 0);
        l.run("op_mode show");
        assert_eq!(l.drains(), 1);
    }

    #[test]
    fn a_dropped_session_is_reported_after_the_change_and_the_lines_before_it() {
        let l = Local::new();
        l.root
            .add_fault(
                "esc",
                crate::faults::Fault::once(
                    Some("stop"),
                    FaultKind::DropConnection { after_lines: 1 },
                ),
            )
            .unwrap();
        let (ran, out) = l.run("stop");
        assert_eq!(ran.ended, Ended::Dropped);
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(l.root.load_node("esc").unwrap().all_stopped());
        assert_eq!(l.commands(), [("stop".to_owned(), 0)]);
    }

    #[test]
    fn usage_errors_and_unknown_nodes_touch_no_state() {
        let l = Local::new();
        let before = l.root.load_node("esc").unwrap();
        assert_eq!(
            l.run("op_mode set --mode=maintenace").0.ended,
            Ended::Exit(formats::EXIT_USAGE)
        );
        assert_eq!(l.root.load_node("esc").unwrap(), before);
        assert_eq!(l.commands(), [("usage".to_owned(), formats::EXIT_USAGE)]);
        let inv = Invocation {
            root: l.root.clone(),
            node: "nope".into(),
            args: vec!["status".into()],
            user: "tester".into(),
            cwd: PathBuf::new(),
            clock: || NOW,
        };
        let mut err = Vec::new();
        let ran = run(
            &inv,
            &mut Streams {
                stdin: &mut &b""[..],
                stdout: &mut Vec::new(),
                stderr: &mut err,
            },
        );
        assert_eq!(ran.ended, Ended::Exit(formats::EXIT_INTERNAL));
        assert!(
            String::from_utf8(err)
                .unwrap()
                .contains("no simulated ESC node 'nope'")
        );
    }

    #[test]
    fn the_same_backup_has_the_same_bytes() {
        let l = Local::new();
        l.run("op_mode set --mode=maintenance");
        let a = l.root.data_dir("esc").join("a.tar.bz2");
        let b = l.root.data_dir("esc").join("b.tar.bz2");
        for p in [&a, &b] {
            let (ran, _) = l.run(&format!("backup --file {}", p.display()));
            assert_eq!(ran.ended, Ended::Exit(0));
        }
        assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());
    }
}
