//! `escadm` on a simulated ESC node: parses the command line as escadm does, runs the command
//! against the node's state (under the sim root's lock), applies injected faults and prints
//! the result in the formats of [`crate::formats`].
//!
//! The node comes from `ESC_SIM_NODE` and the sim root from `ESC_SIM_ROOT`, both set by the
//! node's sshd (`SetEnv`); outside sshd they can be set by hand (or use `esc-sim run`).

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{BufRead, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use crate::faults::{FaultKind, take_matching};
use crate::formats::{self, EXIT_IO, EXIT_USAGE};
use crate::model::{self, Database, Event, Mode, Outcome, Refusal, World};
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
fn options(args: &[String], allowed: &[&str]) -> Result<Vec<(String, Option<String>)>, Refusal> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let Some(stripped) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
            return Err(usage(&format!("unexpected argument '{a}'")));
        };
        let (name, value) = match stripped.split_once('=') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => (stripped.to_owned(), None),
        };
        if !allowed.contains(&name.as_str()) {
            return Err(usage(&format!("unknown option '{a}'")));
        }
        let takes_value = name != "v";
        let value = if takes_value && value.is_none() {
            i += 1;
            match args.get(i) {
                Some(v) => Some(v.clone()),
                None => return Err(usage(&format!("option '--{name}' needs a value"))),
            }
        } else {
            value
        };
        out.push((name, value));
        i += 1;
    }
    Ok(out)
}

fn usage(detail: &str) -> Refusal {
    Refusal::new(EXIT_USAGE, formats::usage(detail))
}

fn bool_opt(v: &str) -> Result<bool, Refusal> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(Refusal::new(EXIT_USAGE, formats::bad_ipt_check(v))),
    }
}

/// Parses escadm's arguments (without the program name).
pub fn parse(args: &[String]) -> Result<Cmd, Refusal> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        [] => Err(usage("no command given")),
        ["op_mode", "show"] => Ok(Cmd::OpModeShow),
        ["op_mode", "set", rest @ ..] => {
            let rest: Vec<String> = rest.iter().map(|s| (*s).to_owned()).collect();
            let mut mode = None;
            let mut ipt_check = false;
            for (name, value) in options(&rest, &["mode", "ipt_check"])? {
                let value = value.unwrap_or_default();
                match name.as_str() {
                    "mode" => {
                        mode =
                            Some(Mode::parse_arg(&value).ok_or_else(|| {
                                Refusal::new(EXIT_USAGE, formats::bad_mode(&value))
                            })?)
                    }
                    _ => ipt_check = bool_opt(&value)?,
                }
            }
            let mode = mode.ok_or_else(|| usage("op_mode set needs --mode"))?;
            Ok(Cmd::OpModeSet { mode, ipt_check })
        }
        ["op_mode", ..] => Err(usage("op_mode needs 'show' or 'set'")),
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
                .ok_or_else(|| usage(&format!("{c} needs --file")))?;
            if *c == "backup" {
                Ok(Cmd::Backup { file })
            } else {
                Ok(Cmd::Restore { file })
            }
        }
        ["stop"] => Ok(Cmd::Stop),
        ["restart"] => Ok(Cmd::Restart),
        ["log", "collect"] => Ok(Cmd::LogCollect),
        [other, ..] => Err(usage(&format!("unknown command '{other}'"))),
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

fn location(file: &str) -> Result<Location, Refusal> {
    if file.starts_with("scp://") {
        parse_scp(file).map(Location::Scp).ok_or_else(|| {
            usage(&format!(
                "bad scp destination '{}': expected scp://<username>:<password>@<host>:<file>",
                redact(file)
            ))
        })
    } else {
        let p = PathBuf::from(file);
        let p = if p.is_absolute() {
            p
        } else {
            std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
        };
        Ok(Location::Local(p))
    }
}

struct Ctx {
    root: SimRoot,
    node: String,
    args: Vec<String>,
    user: String,
    started_ms: u64,
}

/// Runs escadm with `args` (without the program name); returns the exit code.
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
    let ctx = Ctx {
        root,
        node,
        args,
        user: current_user(),
        started_ms: now_ms(),
    };
    match run(&ctx) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}", formats::error_line(&format!("{e:#}")));
            let _ = journal_command(&ctx, "internal", formats::EXIT_INTERNAL, &[]);
            formats::EXIT_INTERNAL
        }
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
    let args: Vec<String> = ctx.args.iter().map(|a| redact(a)).collect();
    ctx.root.append_journal(
        lock,
        &ctx.node,
        What::Command {
            command: command.to_owned(),
            args: args.clone(),
            exit,
            user: ctx.user.clone(),
            faults: faults.iter().map(|f| f.name().to_owned()).collect(),
            started_ms: ctx.started_ms,
        },
    )?;
    // The node's own log, for `log collect`.
    let line = format!(
        "{} {} escadm {} -> exit {exit}\n",
        store::timestamp(now_ms()),
        ctx.user,
        args.join(" ")
    );
    append_log(&ctx.root, &ctx.node, "escadm.log", &line);
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

/// What a command printed and how it ended.
struct Result_ {
    stdout: Vec<String>,
    refusal: Option<Refusal>,
}

impl Result_ {
    fn ok(stdout: Vec<String>) -> Self {
        Result_ {
            stdout,
            refusal: None,
        }
    }
    fn refused(stdout: Vec<String>, r: Refusal) -> Self {
        Result_ {
            stdout,
            refusal: Some(r),
        }
    }
    fn exit(&self) -> i32 {
        self.refusal.as_ref().map(|r| r.exit).unwrap_or(0)
    }
}

fn run(ctx: &Ctx) -> Result<i32> {
    // Fails early (and clearly) when the node does not exist.
    ctx.root.load_node(&ctx.node)?;
    let cmd = match parse(&ctx.args) {
        Ok(c) => c,
        Err(r) => {
            journal_command(ctx, "usage", r.exit, &[])?;
            eprintln!("{}", formats::error_line(&r.message));
            return Ok(r.exit);
        }
    };
    // Phase 1: take the faults that hit this command.
    let faults = {
        let _lock = ctx.root.lock()?;
        let mut all = ctx.root.load_faults(&ctx.node)?;
        let hit = take_matching(&mut all, cmd.key());
        if !hit.is_empty() {
            ctx.root.save_faults(&ctx.node, &all)?;
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
        emit_faulty_prelude(&faults);
        eprintln!(
            "{}",
            formats::error_line(&message.unwrap_or_else(|| formats::injected_failure(code)))
        );
        return Ok(code);
    }
    // Phase 2: run it.
    let res = execute(ctx, &cmd, &faults)?;
    // Phase 3: print, through the output faults.
    emit(ctx, &res, &faults);
    Ok(res.exit())
}

/// Loads the world, completes due in-flight transactions, runs `f`, saves, journals.
fn with_world(
    ctx: &Ctx,
    cmd: &Cmd,
    faults: &[FaultKind],
    f: impl FnOnce(&mut World) -> Result<Result_>,
) -> Result<Result_> {
    let lock = ctx.root.lock()?;
    let mut world = ctx.root.load_world(&ctx.node)?;
    let drained = world.drain(now_ms());
    ctx.root.journal_events(&lock, &drained)?;
    let before = world.clone();
    let res = f(&mut world)?;
    if world != before {
        ctx.root.save_world(&world)?;
    }
    journal_command_locked(ctx, &lock, cmd.key(), res.exit(), faults)?;
    Ok(res)
}

fn apply(ctx: &Ctx, lock: &Lock, outcome: Outcome) -> Result<Vec<String>> {
    ctx.root.journal_events(lock, &outcome.events)?;
    for (node, e) in &outcome.events {
        match e {
            Event::ServicesStarted => append_log(
                &ctx.root,
                node,
                "escmanager.log",
                &format!("{} ESC services started\n", store::timestamp(now_ms())),
            ),
            Event::ServicesStopped => append_log(
                &ctx.root,
                node,
                "escmanager.log",
                &format!("{} ESC services stopped\n", store::timestamp(now_ms())),
            ),
            _ => {}
        }
    }
    Ok(outcome.stdout)
}

fn execute(ctx: &Ctx, cmd: &Cmd, faults: &[FaultKind]) -> Result<Result_> {
    let node = ctx.node.as_str();
    match cmd {
        Cmd::OpModeShow => with_world(ctx, cmd, faults, |w| {
            Ok(Result_::ok(model::op_mode_show(w, node).stdout))
        }),
        Cmd::Status { .. } => with_world(ctx, cmd, faults, |w| {
            Ok(Result_::ok(model::status(w, node).stdout))
        }),
        Cmd::OpModeSet { mode, ipt_check } => locked_outcome(ctx, cmd, faults, |w| {
            model::op_mode_set(w, node, *mode, *ipt_check)
        }),
        Cmd::Stop => locked_outcome(ctx, cmd, faults, |w| Ok(model::stop(w, node))),
        Cmd::Restart => locked_outcome(ctx, cmd, faults, |w| Ok(model::restart(w, node))),
        Cmd::Backup { file } => backup(ctx, cmd, faults, file),
        Cmd::Restore { file } => restore(ctx, cmd, faults, file),
        Cmd::LogCollect => log_collect(ctx, cmd, faults),
    }
}

fn locked_outcome(
    ctx: &Ctx,
    cmd: &Cmd,
    faults: &[FaultKind],
    f: impl FnOnce(&mut World) -> Result<Outcome, Refusal>,
) -> Result<Result_> {
    let lock = ctx.root.lock()?;
    let mut world = ctx.root.load_world(&ctx.node)?;
    let drained = world.drain(now_ms());
    ctx.root.journal_events(&lock, &drained)?;
    let res = match f(&mut world) {
        Ok(outcome) => {
            ctx.root.save_world(&world)?;
            Result_::ok(apply(ctx, &lock, outcome)?)
        }
        Err(r) => {
            if !drained.is_empty() {
                ctx.root.save_world(&world)?;
            }
            Result_::refused(Vec::new(), r)
        }
    };
    journal_command_locked(ctx, &lock, cmd.key(), res.exit(), faults)?;
    Ok(res)
}

fn disk_full_after(faults: &[FaultKind]) -> Option<u64> {
    faults.iter().find_map(|f| match f {
        FaultKind::DiskFull { after_bytes } => Some(*after_bytes),
        _ => None,
    })
}

/// Asks for the password of an scp URL that has none, as escadm does (stderr prompt, stdin).
fn scp_password(url: &ScpUrl) -> Result<String, Refusal> {
    if let Some(p) = &url.password {
        return Ok(p.clone());
    }
    eprint!("{}", formats::PASSWORD_PROMPT);
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(n) if n > 0 => Ok(line.trim_end_matches(['\r', '\n']).to_owned()),
        _ => Err(Refusal::new(
            EXIT_IO,
            format!("no password given for {}@{}", url.user, url.host),
        )),
    }
}

/// A scratch directory under the node's tmp, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(root: &SimRoot, node: &str) -> Result<Scratch> {
        let p = root
            .tmp_dir(node)
            .join(format!("escadm-{}-{}", std::process::id(), now_ms()));
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

/// Writes the tar.bz2 of `db` to `<scratch>/db.tar.bz2`.
fn build_archive(scratch: &Path, node: &str, db: &Database) -> Result<PathBuf> {
    let dir = scratch.join("esc_db");
    store::mkdir_shared(&dir)?;
    let meta = serde_json::json!({
        "esc_version": db.esc_version,
        "schema_version": db.schema_version,
        "node": node,
        "created": store::timestamp(now_ms()),
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
            .arg("-C")
            .arg(scratch)
            .arg("esc_db"),
        "tar",
    )?;
    Ok(out)
}

/// Reads a backup archive back into a [`Database`].
fn read_archive(scratch: &Path, archive: &Path, shown: &str) -> Result<Database, Refusal> {
    if !archive.is_file() {
        return Err(Refusal::new(
            EXIT_IO,
            formats::io_error("cannot read", shown, "No such file or directory"),
        ));
    }
    let dir = scratch.join("extract");
    store::mkdir_shared(&dir).map_err(|e| Refusal::new(EXIT_IO, format!("{e:#}")))?;
    run_tool(
        Command::new("tar")
            .arg("-xjf")
            .arg(archive)
            .arg("-C")
            .arg(&dir),
        "tar",
    )
    .map_err(|e| Refusal::new(EXIT_IO, formats::not_a_backup(shown, &format!("{e:#}"))))?;
    let bad = |why: String| Refusal::new(EXIT_IO, formats::not_a_backup(shown, &why));
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
fn copy_out(src: &Path, dest: &Path, limit: Option<u64>) -> Result<u64, Refusal> {
    let shown = dest.display().to_string();
    let io = |e: std::io::Error| {
        Refusal::new(
            EXIT_IO,
            formats::io_error("cannot write", &shown, &e.to_string()),
        )
    };
    match limit {
        None => fs::copy(src, dest).map_err(io),
        Some(n) => {
            let bytes = fs::read(src).map_err(io)?;
            let n = (n as usize).min(bytes.len().saturating_sub(1));
            fs::write(dest, &bytes[..n]).map_err(io)?;
            Err(Refusal::new(EXIT_IO, formats::disk_full(&shown)))
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
    let kh = ctx.root.ssh_dir(&ctx.node).join("escadm_known_hosts");
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

fn backup(ctx: &Ctx, cmd: &Cmd, faults: &[FaultKind], file: &str) -> Result<Result_> {
    let loc = match location(file) {
        Ok(l) => l,
        Err(r) => {
            journal_command(ctx, cmd.key(), r.exit, faults)?;
            return Ok(Result_::refused(Vec::new(), r));
        }
    };
    // The password prompt (if any) comes before anything is locked.
    let password = match &loc {
        Location::Scp(u) => match scp_password(u) {
            Ok(p) => Some(p),
            Err(r) => {
                journal_command(ctx, cmd.key(), r.exit, faults)?;
                return Ok(Result_::refused(Vec::new(), r));
            }
        },
        Location::Local(_) => None,
    };
    let shown = match &loc {
        Location::Local(p) => p.display().to_string(),
        Location::Scp(_) => redact(file),
    };
    let node = ctx.node.clone();
    let lock = ctx.root.lock()?;
    let mut world = ctx.root.load_world(&node)?;
    let drained = world.drain(now_ms());
    ctx.root.journal_events(&lock, &drained)?;
    if !drained.is_empty() {
        ctx.root.save_world(&world)?;
    }
    let res = (|| -> Result<Result_> {
        if let Err(r) = model::check_backup(&world, &node) {
            return Ok(Result_::refused(Vec::new(), r));
        }
        let mut out = vec![formats::backup_start(&shown)];
        let scratch = Scratch::new(&ctx.root, &node)?;
        let archive = build_archive(&scratch.0, &node, &world.node(&node).db)?;
        let limit = disk_full_after(faults);
        let bytes = match &loc {
            Location::Local(dest) => match copy_out(&archive, dest, limit) {
                Ok(b) => b,
                Err(r) => return Ok(Result_::refused(out, r)),
            },
            Location::Scp(url) => {
                if limit.is_some() {
                    return Ok(Result_::refused(
                        out,
                        Refusal::new(EXIT_IO, formats::disk_full(&shown)),
                    ));
                }
                let mut c = scp_base(ctx, url);
                c.arg(&archive)
                    .arg(format!("{}@{}:{}", url.user, url.host, url.path))
                    .env("SSHPASS", password.clone().unwrap_or_default());
                if let Err(e) = run_tool(&mut c, "scp") {
                    return Ok(Result_::refused(
                        out,
                        Refusal::new(EXIT_IO, format!("{e:#}")),
                    ));
                }
                fs::metadata(&archive).map(|m| m.len()).unwrap_or(0)
            }
        };
        ctx.root.journal_events(
            &lock,
            &[(
                node.clone(),
                Event::BackupWritten {
                    dest: shown.clone(),
                    bytes,
                },
            )],
        )?;
        out.push(formats::backup_done(&shown, bytes));
        Ok(Result_::ok(out))
    })()?;
    journal_command_locked(ctx, &lock, cmd.key(), res.exit(), faults)?;
    Ok(res)
}

fn restore(ctx: &Ctx, cmd: &Cmd, faults: &[FaultKind], file: &str) -> Result<Result_> {
    let node = ctx.node.clone();
    // Refuse before anything else (no prompt, no download) while services run.
    {
        let lock = ctx.root.lock()?;
        let world = ctx.root.load_world(&node)?;
        if let Err(r) = model::check_restore(&world, &node) {
            journal_command_locked(ctx, &lock, cmd.key(), r.exit, faults)?;
            return Ok(Result_::refused(Vec::new(), r));
        }
    }
    let refuse = |r: Refusal, out: Vec<String>| -> Result<Result_> {
        journal_command(ctx, cmd.key(), r.exit, faults)?;
        Ok(Result_::refused(out, r))
    };
    let loc = match location(file) {
        Ok(l) => l,
        Err(r) => return refuse(r, Vec::new()),
    };
    let scratch = Scratch::new(&ctx.root, &node)?;
    let (archive, shown) = match &loc {
        Location::Local(p) => (p.clone(), p.display().to_string()),
        Location::Scp(url) => {
            let password = match scp_password(url) {
                Ok(p) => p,
                Err(r) => return refuse(r, Vec::new()),
            };
            let local = scratch.0.join("download.tar.bz2");
            let mut c = scp_base(ctx, url);
            c.arg(format!("{}@{}:{}", url.user, url.host, url.path))
                .arg(&local)
                .env("SSHPASS", password);
            let shown = redact(file);
            if let Err(e) = run_tool(&mut c, "scp") {
                return refuse(
                    Refusal::new(EXIT_IO, format!("{e:#}")),
                    vec![formats::restore_start(&shown)],
                );
            }
            (local, shown)
        }
    };
    let out = vec![formats::restore_start(&shown)];
    let db = match read_archive(&scratch.0, &archive, &shown) {
        Ok(db) => db,
        Err(r) => return refuse(r, out),
    };
    let lock = ctx.root.lock()?;
    let mut world = ctx.root.load_world(&node)?;
    let res = match model::check_restore(&world, &node) {
        Err(r) => Result_::refused(out, r),
        Ok(()) => {
            let outcome = model::apply_restore(&mut world, &node, db);
            ctx.root.save_world(&world)?;
            apply(ctx, &lock, outcome)?;
            let mut out = out;
            out.push(formats::RESTORE_DONE.to_owned());
            Result_::ok(out)
        }
    };
    journal_command_locked(ctx, &lock, cmd.key(), res.exit(), faults)?;
    Ok(res)
}

fn log_collect(ctx: &Ctx, cmd: &Cmd, faults: &[FaultKind]) -> Result<Result_> {
    let node = ctx.node.clone();
    let lock = ctx.root.lock()?;
    let res = (|| -> Result<Result_> {
        let mut out = vec![formats::COLLECTING_LOGS.to_owned()];
        let var_tmp = ctx.root.var_tmp_dir(&node);
        store::mkdir_shared(&var_tmp)?;
        store::mkdir_shared(&ctx.root.log_dir(&node))?;
        let now = now_ms();
        let dest = var_tmp.join(formats::log_file_name(&store::timestamp(now)));
        let scratch = Scratch::new(&ctx.root, &node)?;
        let tmp = scratch.0.join("logs.tar.bz2");
        let logs_parent = ctx.root.fs_dir(&node).join("var/log");
        run_tool(
            Command::new("tar")
                .arg("-cjf")
                .arg(&tmp)
                .arg("-C")
                .arg(&logs_parent)
                .arg("esc"),
            "tar",
        )?;
        if let Err(r) = copy_out(&tmp, &dest, disk_full_after(faults)) {
            return Ok(Result_::refused(out, r));
        }
        let shown = dest.display().to_string();
        ctx.root.journal_events(
            &lock,
            &[(
                node.clone(),
                Event::LogsCollected {
                    path: shown.clone(),
                },
            )],
        )?;
        out.push(formats::log_file_line(&shown));
        Ok(Result_::ok(out))
    })()?;
    journal_command_locked(ctx, &lock, cmd.key(), res.exit(), faults)?;
    Ok(res)
}

/// Lines printed before the output by the warnings and garbage faults.
fn prelude_lines(faults: &[FaultKind]) -> Vec<Vec<u8>> {
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
                let mut x = now_ms() ^ 0x9e37_79b9_7f4a_7c15;
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

fn emit_faulty_prelude(faults: &[FaultKind]) {
    let mut so = std::io::stdout().lock();
    for l in prelude_lines(faults) {
        let _ = so.write_all(&l);
        let _ = so.write_all(b"\n");
    }
    let _ = so.flush();
}

fn emit(ctx: &Ctx, res: &Result_, faults: &[FaultKind]) {
    let delay = faults.iter().find_map(|f| match f {
        FaultKind::Slow { line_delay_ms } => Some(Duration::from_millis(*line_delay_ms)),
        _ => None,
    });
    let drop_after = faults.iter().find_map(|f| match f {
        FaultKind::DropConnection { after_lines } => Some(*after_lines as usize),
        _ => None,
    });
    let mut lines: Vec<Vec<u8>> = prelude_lines(faults);
    lines.extend(res.stdout.iter().map(|l| l.as_bytes().to_vec()));
    let mut so = std::io::stdout().lock();
    let prelude = lines.len() - res.stdout.len();
    for (i, l) in lines.iter().enumerate() {
        if drop_after == Some(i.saturating_sub(prelude)) && i >= prelude {
            let _ = so.flush();
            drop_connection(ctx);
        }
        if let Some(d) = delay {
            std::thread::sleep(d);
        }
        let _ = so.write_all(l);
        let _ = so.write_all(b"\n");
        let _ = so.flush();
    }
    if drop_after.is_some() {
        let _ = so.flush();
        drop_connection(ctx);
    }
    if let Some(r) = &res.refusal {
        if let Some(d) = delay {
            std::thread::sleep(d);
        }
        eprintln!("{}", formats::error_line(&r.message));
    }
}

/// Kills the sshd processes serving this session (never the node's listening sshd), so the
/// client's connection drops with no exit status. Then exits.
fn drop_connection(ctx: &Ctx) -> ! {
    // Give sshd a moment to forward what was printed.
    std::thread::sleep(Duration::from_millis(100));
    let listener: Option<i32> = fs::read_to_string(ctx.root.ssh_dir(&ctx.node).join("sshd.pid"))
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
        let Some((comm, ppid)) = proc_stat(pid) else {
            break;
        };
        if comm.starts_with("sshd") {
            victims.push(pid);
        }
        pid = ppid;
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

/// (comm, ppid) of a process.
fn proc_stat(pid: i32) -> Option<(String, i32)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s[open + 1..close].to_owned();
    let rest: Vec<&str> = s[close + 1..].split_whitespace().collect();
    let ppid = rest.get(1)?.parse().ok()?;
    Some((comm, ppid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Cmd, Refusal> {
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
        let r = p("op_mode set --mode=maintenace --ipt_check=true").unwrap_err();
        assert_eq!(r.exit, EXIT_USAGE);
        assert!(r.message.contains("maintenace"));
        for bad in [
            "",
            "op_mode",
            "op_mode set",
            "op_mode set --mode=MAINTENANCE",
            "op_mode set --mode=maintenance --ipt_check=yes",
            "backup",
            "backup --file",
            "status --verbose",
            "frobnicate",
            "log",
        ] {
            assert_eq!(p(bad).unwrap_err().exit, EXIT_USAGE, "{bad:?}");
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
}
