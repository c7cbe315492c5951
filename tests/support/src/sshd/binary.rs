//! The simulator binary the nodes run: given, found next to the test binary when fresh, or
//! built once per process (see the module doc of [`crate::sshd`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::SystemTime;

use anyhow::{Context, Result, anyhow, bail};

/// Locates (or builds, once per process) the `esc-sim` binary; see the module doc.
pub fn esc_sim_binary() -> Result<PathBuf> {
    static BIN: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| find_or_build().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

fn newest_source_mtime() -> Option<SystemTime> {
    fn walk(dir: &Path, newest: &mut Option<SystemTime>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, newest);
            } else if let Ok(m) = e.metadata().and_then(|m| m.modified()) {
                *newest = Some(newest.map_or(m, |n| n.max(m)));
            }
        }
    }
    let ws = workspace_dir();
    let mut newest = None;
    walk(&ws.join("esc-sim/src"), &mut newest);
    if let Ok(m) = std::fs::metadata(ws.join("esc-sim/Cargo.toml")).and_then(|m| m.modified()) {
        newest = Some(newest.map_or(m, |n: SystemTime| n.max(m)));
    }
    newest
}

fn fresh(bin: &Path, newest: Option<SystemTime>) -> bool {
    let Ok(m) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return false;
    };
    newest.is_none_or(|n| m >= n)
}

fn find_or_build() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("ESC_SIM_BIN") {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("ESC_SIM_BIN={} is not a file", p.display());
        }
        return Ok(p);
    }
    let newest = newest_source_mtime();
    // target/<profile>/deps/<test> or target/<profile>/<bin>
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().map(Path::to_path_buf);
    if dir
        .as_ref()
        .and_then(|d| d.file_name())
        .is_some_and(|n| n == "deps" || n == "examples")
    {
        dir = dir.and_then(|d| d.parent().map(Path::to_path_buf));
    }
    let target_dir = dir
        .as_ref()
        .and_then(|d| d.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| workspace_dir().join("target"));
    if let Some(d) = &dir {
        let cand = d.join("esc-sim");
        if fresh(&cand, newest) {
            return Ok(cand);
        }
    }
    let harness_target = target_dir.join("esc-sim-harness");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .arg("build")
        .arg("--quiet")
        .arg("--manifest-path")
        .arg(workspace_dir().join("Cargo.toml"))
        .arg("-p")
        .arg("esc-sim")
        .arg("--bin")
        .arg("esc-sim")
        .arg("--target-dir")
        .arg(&harness_target)
        .stdin(Stdio::null())
        .output()
        .context("run cargo to build esc-sim (or set ESC_SIM_BIN)")?;
    if !out.status.success() {
        bail!(
            "cargo build -p esc-sim failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let p = harness_target.join("debug/esc-sim");
    if !p.is_file() {
        bail!("built esc-sim not found at {}", p.display());
    }
    Ok(p)
}
