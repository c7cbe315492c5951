//! Where the cluster's binaries come from: the scripts of `tools/cluster`, which build them once
//! per machine and cache them by version.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

/// The directory with the Kubernetes binaries, built by `tools/cluster/build.sh` on first use
/// on a machine (10–15 min) and cached by version; later calls return at once.
/// `with_node` also builds containerd, its shim, `ctr` and runc.
pub fn bin_dir(with_node: bool) -> Result<PathBuf> {
    static CONTROL_PLANE: OnceLock<PathBuf> = OnceLock::new();
    static ALL: OnceLock<PathBuf> = OnceLock::new();
    let (cell, what) = if with_node {
        (&ALL, "all")
    } else {
        (&CONTROL_PLANE, "control-plane")
    };
    if let Some(dir) = cell.get() {
        return Ok(dir.clone());
    }
    let dir = run_tool("build.sh", &[what])?;
    Ok(cell.get_or_init(|| dir).clone())
}

/// Runs `tools/cluster/<script>` and returns the last line of its stdout as a path.
pub fn run_tool(script: &str, args: &[&str]) -> Result<PathBuf> {
    let path = repo_root().join("tools/cluster").join(script);
    let out = Command::new("bash")
        .arg(&path)
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("run {}", path.display()))?;
    if !out.status.success() {
        bail!("{} {:?} failed ({})", path.display(), args, out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout
        .lines()
        .last()
        .with_context(|| format!("{} printed nothing", path.display()))?;
    Ok(PathBuf::from(last.trim()))
}

/// The repository root (the test bed lives in `tests/support`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}
