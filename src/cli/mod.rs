//! The command line: one file per subcommand, the exit statuses, the termination message.
//!
//! Owns: argument parsing (clap), turning a subcommand's result into an exit status, and the
//! termination message a failed pod shows. May import every other module of the crate; nothing
//! imports `cli` (the binary's `main` only calls [`main`]). Subcommands stay thin: the work
//! lives in [`crate::runtime`], [`crate::controller`], [`crate::api`] and [`crate::access`].

mod check_access;
mod crd;
mod mover;
mod plugin;
mod run;

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
    /// Run the operator: leader election, the controllers, and HTTP (/healthz, /readyz,
    /// /metrics).
    // Boxed: the operator's many flags would make every other variant as large.
    Run(Box<run::RunArgs>),
    /// Print the CustomResourceDefinitions as YAML (all kinds, one document each), or write one
    /// file per CRD into a directory.
    Crd(crd::CrdArgs),
    /// Print the version of this build.
    Version,
    /// List every EscCluster, EscBackup and EscRestore this identity can see — in a pod, with
    /// its ServiceAccount token; elsewhere, with the kubeconfig — or say which permission is
    /// missing.
    CheckAccess(check_access::CheckAccessArgs),
    /// The data mover a backup Job runs (not for interactive use).
    Mover(mover::MoverArgs),
    /// `kubectl esc`: status, maintenance, backup and restore from kubectl (also run when
    /// this binary is installed or linked as `kubectl-esc`).
    #[command(name = "kubectl-esc")]
    KubectlEsc(plugin::PluginArgs),
}

/// Parses the arguments, runs the subcommand and maps its result to the exit status.
pub fn main() -> ExitCode {
    // One TLS provider for the whole process: kube's client and the AWS SDK both use rustls, and
    // rustls refuses to pick when more than one provider is linked.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();

    // Installed as `kubectl-esc`, kubectl runs it for `kubectl esc ...`.
    let invoked_as = std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    if invoked_as.starts_with("kubectl-esc") {
        let cli = plugin::PluginCli::parse();
        return exit_status(plugin::run(cli.args));
    }
    let cli = Cli::parse();
    let result = match cli.command {
        // The mover writes its own report as the termination message and exits 0 or 1.
        Command::Mover(args) => return mover::mover(args),
        Command::Run(args) => run::run(*args),
        Command::Crd(args) => crd::crd(args),
        Command::Version => {
            println!("esc-operator {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::CheckAccess(args) => check_access::check_access(args),
        Command::KubectlEsc(args) => plugin::run(args),
    };
    exit_status(result)
}

fn exit_status(result: Result<(), Failure>) -> ExitCode {
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

/// A small async runtime for the subcommands that make a few API calls and end.
fn current_thread_runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::from(format!("start the async runtime: {e}")))
}
