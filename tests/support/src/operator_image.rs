//! The operator image for pods on the node: built by `tools/image/build.sh` from the current
//! source (the script runs `cargo build --release --locked` every time and rebuilds the image
//! whenever the binary differs, so a test never runs a stale operator), and imported into the
//! node's containerd. Knows the operator only as an image; [`crate::operator`] runs its binary.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

use crate::cluster::{TestCluster, repo_root};

/// The operator image as `tools/image/build.sh` describes it in `esc-operator.json`.
#[derive(Clone, Debug)]
pub struct OperatorImage {
    /// `localhost/esc-operator:<version>`: what pods name (with `imagePullPolicy: Never`).
    pub name: String,
    /// The OCI archive.
    pub archive: PathBuf,
    /// The crate version baked into the image.
    pub version: String,
    /// The git revision the image was built from (`-dirty` with uncommitted changes).
    pub revision: String,
}

impl OperatorImage {
    /// Builds (or reuses) the image, once per process. Panics (in every caller) if the build
    /// failed: every test asking needs it.
    pub fn shared() -> &'static OperatorImage {
        static IMAGE: OnceLock<std::result::Result<OperatorImage, String>> = OnceLock::new();
        match IMAGE.get_or_init(|| Self::build().map_err(|e| format!("{e:#}"))) {
            Ok(image) => image,
            Err(e) => panic!("the operator image could not be built: {e}"),
        }
    }

    /// Runs `tools/image/build.sh` (its progress goes to stderr) and reads what it built.
    pub fn build() -> Result<OperatorImage> {
        let script = repo_root().join("tools/image/build.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("run {}", script.display()))?;
        if !out.status.success() {
            bail!("{} failed ({})", script.display(), out.status);
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let archive = PathBuf::from(
            stdout
                .lines()
                .last()
                .context("build.sh printed nothing")?
                .trim(),
        );
        let info_path = archive.with_file_name("esc-operator.json");
        let info: serde_json::Value = serde_json::from_slice(
            &std::fs::read(&info_path).with_context(|| format!("read {}", info_path.display()))?,
        )?;
        let field = |k: &str| -> Result<String> {
            info[k]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("{} has no {k}", info_path.display()))
        };
        Ok(OperatorImage {
            name: field("image")?,
            version: field("version")?,
            revision: field("revision")?,
            archive,
        })
    }

    /// Imports the image into `cluster`'s node and checks that containerd knows it by its name
    /// (pods refer to it by that name).
    pub fn import_into(&self, cluster: &TestCluster) -> Result<()> {
        cluster.import_image(&self.archive)?;
        let node = cluster.node().context("this cluster has no node")?;
        let out = node.ctr().args(["images", "ls", "-q"]).output()?;
        let names = String::from_utf8_lossy(&out.stdout);
        if !names.lines().any(|n| n.trim() == self.name) {
            bail!(
                "{} is not in containerd after the import: {names}",
                self.name
            );
        }
        Ok(())
    }
}
