//! The Helm CLIs the chart is tested with: Helm 3 and Helm 4, built from their Go modules by
//! `tools/helm/build.sh` (cached by version; a warm call runs no `go`), each run with a private
//! home (cache, config, data) so nothing of the machine's own Helm set-up leaks in or out.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::cluster::{TestCluster, repo_root};

/// The Helm lines users run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HelmMajor {
    V3,
    V4,
}

impl HelmMajor {
    pub const ALL: [HelmMajor; 2] = [HelmMajor::V3, HelmMajor::V4];

    /// "3" or "4".
    pub fn number(self) -> &'static str {
        match self {
            HelmMajor::V3 => "3",
            HelmMajor::V4 => "4",
        }
    }
}

/// One Helm CLI, with a home directory of its own (removed on drop).
pub struct Helm {
    pub major: HelmMajor,
    pub binary: PathBuf,
    home: tempfile::TempDir,
}

impl Helm {
    /// Builds (or reuses) Helm `major` with `tools/helm/build.sh`; the build runs once per
    /// process and machine.
    pub fn new(major: HelmMajor) -> Result<Helm> {
        static V3: OnceLock<PathBuf> = OnceLock::new();
        static V4: OnceLock<PathBuf> = OnceLock::new();
        let cell = match major {
            HelmMajor::V3 => &V3,
            HelmMajor::V4 => &V4,
        };
        let binary = match cell.get() {
            Some(b) => b.clone(),
            None => {
                let script = repo_root().join("tools/helm/build.sh");
                let out = Command::new("bash")
                    .arg(&script)
                    .arg(major.number())
                    .stderr(Stdio::inherit())
                    .output()
                    .with_context(|| format!("run {}", script.display()))?;
                if !out.status.success() {
                    bail!(
                        "{} {} failed ({})",
                        script.display(),
                        major.number(),
                        out.status
                    );
                }
                let path = PathBuf::from(
                    String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .last()
                        .context("tools/helm/build.sh printed nothing")?
                        .trim(),
                );
                cell.get_or_init(|| path).clone()
            }
        };
        Ok(Helm {
            major,
            binary,
            home: tempfile::Builder::new()
                .prefix("esc-testbed-helm-")
                .tempdir()?,
        })
    }

    /// Helm's private home, for a test that wants a file there (a values file).
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// The chart of this repository.
    pub fn chart_dir() -> PathBuf {
        repo_root().join("charts/esc-operator")
    }

    /// `helm` with a private home and no kubeconfig.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        let home = self.home.path();
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"));
        cmd
    }

    /// `helm` talking to `cluster` as its admin.
    pub fn on(&self, cluster: &TestCluster) -> Command {
        let mut cmd = self.command();
        cmd.env("KUBECONFIG", cluster.kubeconfig_path());
        cmd
    }

    /// Runs `cmd`; fails with its stderr unless it succeeded.
    pub fn run(cmd: &mut Command) -> Result<Output> {
        let out = cmd.output().with_context(|| format!("run {cmd:?}"))?;
        if !out.status.success() {
            bail!(
                "{cmd:?} failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out)
    }

    /// `helm template` of the chart as release `release` in `namespace` with `args` (such as
    /// `--set k=v`), parsed: one JSON value per object.
    pub fn template(&self, release: &str, namespace: &str, args: &[&str]) -> Result<Vec<Value>> {
        let out = Self::run(
            self.command()
                .args(["template", release])
                .arg(Self::chart_dir())
                .args(["--namespace", namespace])
                .args(args),
        )?;
        documents(&String::from_utf8(out.stdout)?)
    }
}

/// The objects of a multi-document YAML text (empty documents skipped).
pub fn documents(text: &str) -> Result<Vec<Value>> {
    let mut docs = Vec::new();
    for doc in serde_norway::Deserializer::from_str(text) {
        let value: Value = serde::Deserialize::deserialize(doc)?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// The objects of `docs` of `kind`.
pub fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// The one object of `kind` in `docs`.
pub fn one<'a>(docs: &'a [Value], kind: &str) -> Result<&'a Value> {
    match of_kind(docs, kind).as_slice() {
        [one] => Ok(one),
        other => bail!("{} objects of kind {kind}, not one", other.len()),
    }
}
