//! The one binary of esc-operator. Subcommands: `crd`, `version` (and, as they land, `run`,
//! `mover`, `demo`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "esc-operator",
    version,
    about = "Cisco ESC maintenance, backup and restore as Kubernetes custom resources"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions as YAML (all kinds, one document each), or write one
    /// file per CRD into a directory.
    Crd {
        /// Write `<group>_<plural>.yaml` files into this directory instead of printing.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// Print the version of this build.
    Version,
}

fn main() -> ExitCode {
    // One TLS provider for the whole process: kube's client and the AWS SDK both use rustls, and
    // rustls refuses to pick when more than one provider is linked.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();

    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd { out_dir } => print_or_write_crds(out_dir),
        Command::Version => {
            println!("esc-operator {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn print_or_write_crds(out_dir: Option<PathBuf>) -> Result<(), String> {
    let crds = esc_operator::api::crds();
    match out_dir {
        None => {
            print!(
                "{}",
                esc_operator::api::crds_yaml(&crds).map_err(|e| e.to_string())?
            );
            Ok(())
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
            for crd in &crds {
                let path = dir.join(format!(
                    "{}.yaml",
                    crd.metadata.name.as_deref().unwrap_or("crd")
                ));
                let yaml = esc_operator::api::crds_yaml(std::slice::from_ref(crd))
                    .map_err(|e| e.to_string())?;
                std::fs::write(&path, yaml)
                    .map_err(|e| format!("write {}: {e}", path.display()))?;
            }
            Ok(())
        }
    }
}
