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
        /// Write `<plural>.<group>.yaml` files into this directory instead of printing.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// Print the version of this build.
    Version,
    /// List every EscCluster, EscBackup and EscRestore this identity can see — in a pod, with
    /// its ServiceAccount token; elsewhere, with the kubeconfig — or say which permission is
    /// missing.
    CheckAccess {
        /// Namespace to list in. Default: the pod's own namespace in a cluster, else the
        /// kubeconfig's.
        #[arg(long, short = 'n', conflicts_with = "all_namespaces")]
        namespace: Option<String>,
        /// List across all namespaces (needs a ClusterRole).
        #[arg(long, short = 'A')]
        all_namespaces: bool,
    },
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
        Command::CheckAccess {
            namespace,
            all_namespaces,
        } => check_access(namespace, all_namespaces),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            write_termination_message(&failure.message);
            ExitCode::from(failure.kind as u8)
        }
    }
}

/// Why a command failed. The exit status tells the kinds apart, so a Job's pod status (and a
/// script) can distinguish "not allowed" from any other failure without parsing text.
struct Failure {
    kind: FailureKind,
    message: String,
}

/// Exit statuses (2 is clap's, for usage errors).
#[derive(Clone, Copy)]
#[repr(u8)]
enum FailureKind {
    Error = 1,
    /// The API server refused this identity (RBAC): fix the Role, not the operator.
    AccessDenied = 3,
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self {
            kind: FailureKind::Error,
            message,
        }
    }
}

/// In a pod the kubelet shows this file's content as the container's termination message
/// (`kubectl describe`, the pod's and so the Job's status), so a failed Job explains itself
/// without anyone reading its logs. Absent outside a pod.
const TERMINATION_LOG: &str = "/dev/termination-log";

/// Kubernetes keeps at most 4096 bytes of a termination message.
const TERMINATION_MESSAGE_LIMIT: usize = 4096;

fn write_termination_message(message: &str) {
    if !std::path::Path::new(TERMINATION_LOG).exists() {
        return;
    }
    let mut end = message.len().min(TERMINATION_MESSAGE_LIMIT);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    // Best effort: failing to report a failure must not hide the failure's exit status.
    let _ = std::fs::write(TERMINATION_LOG, &message[..end]);
}

fn print_or_write_crds(out_dir: Option<PathBuf>) -> Result<(), Failure> {
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

fn check_access(namespace: Option<String>, all_namespaces: bool) -> Result<(), Failure> {
    use esc_operator::access::{AccessError, Scope, check_access};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("start the async runtime: {e}"))?;
    runtime.block_on(async {
        let config = kube::Config::infer()
            .await
            .map_err(|e| format!("no Kubernetes configuration (in-cluster or kubeconfig): {e}"))?;
        let scope = if all_namespaces {
            Scope::AllNamespaces
        } else {
            Scope::Namespace(namespace.unwrap_or_else(|| config.default_namespace.clone()))
        };
        let client =
            kube::Client::try_from(config).map_err(|e| format!("Kubernetes client: {e}"))?;
        let listings = check_access(&client, &scope).await.map_err(|e| Failure {
            kind: match e {
                AccessError::Forbidden { .. } => FailureKind::AccessDenied,
                AccessError::Api { .. } => FailureKind::Error,
            },
            message: e.to_string(),
        })?;
        for listing in listings {
            println!("{}: {} in {scope}", listing.resource, listing.objects.len());
            for object in &listing.objects {
                println!("  {object}");
            }
        }
        Ok(())
    })
}
