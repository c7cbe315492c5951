//! `esc-operator crd`: the CRDs generated from `crate::api`.

use std::path::PathBuf;

use super::Failure;

#[derive(clap::Args)]
pub(super) struct CrdArgs {
    /// Write `<plural>.<group>.yaml` files into this directory instead of printing.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
}

pub(super) fn crd(args: CrdArgs) -> Result<(), Failure> {
    let crds = crate::api::crds();
    let Some(dir) = args.out_dir else {
        print!(
            "{}",
            crate::api::crds_yaml(&crds).map_err(|e| e.to_string())?
        );
        return Ok(());
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    for crd in &crds {
        let path = dir.join(format!(
            "{}.yaml",
            crd.metadata.name.as_deref().unwrap_or("crd")
        ));
        let yaml = crate::api::crds_yaml(std::slice::from_ref(crd)).map_err(|e| e.to_string())?;
        std::fs::write(&path, yaml).map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    Ok(())
}
