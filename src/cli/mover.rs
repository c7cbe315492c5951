//! `esc-operator mover backup`: the transfer a backup Job runs. The request comes from the
//! environment ([`crate::mover::REQUEST_ENV`]), credentials from mounted Secret volumes; progress goes to
//! stdout as JSON lines, logs to stderr as JSON, and the one [`MoverReport`] to the termination
//! message file. Exit status 0 when the artifact is stored and verified, 1 otherwise.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use crate::mover::backup;
use crate::mover::{MoverReport, MoverRequest, MoverStep};
use crate::runtime::telemetry::{self, LogFormat};

#[derive(clap::Args)]
pub(super) struct MoverArgs {
    #[command(subcommand)]
    command: MoverCommand,
}

#[derive(Subcommand)]
enum MoverCommand {
    /// Stream the files a backup left on the ESC nodes into one archive in S3 or on an SFTP
    /// host, verify it, and report (the request is read from the ESC_MOVER_REQUEST variable).
    Backup(BackupArgs),
}

#[derive(clap::Args)]
struct BackupArgs {
    /// Where the JSON report goes (Kubernetes shows this file as the container's termination
    /// message).
    #[arg(long, default_value = "/dev/termination-log")]
    termination_log: PathBuf,
    /// Log filter, `RUST_LOG` syntax.
    #[arg(long, env = "ESC_MOVER_LOG", default_value = "info")]
    log: String,
}

pub(super) fn mover(args: MoverArgs) -> ExitCode {
    match args.command {
        MoverCommand::Backup(args) => backup_command(args),
    }
}

fn backup_command(args: BackupArgs) -> ExitCode {
    if let Err(e) = telemetry::init(LogFormat::Json, &args.log) {
        eprintln!("{e}");
    }
    let report = match MoverRequest::from_env() {
        Err(e) => MoverReport::failed(MoverStep::ReadRequest, e.reason(), e.to_string()),
        Ok(request) => {
            // Parts upload while the SSH streams are read: a few threads, whatever the host's
            // core count (a Job's CPU limit is small).
            let threads = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .clamp(2, 4);
            match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(backup::run(&request)),
                Err(e) => MoverReport::failed(
                    MoverStep::ReadRequest,
                    "RuntimeFailed",
                    format!("cannot start the async runtime: {e}"),
                ),
            }
        }
    };
    write_report(&args.termination_log, &report);
    if report.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn write_report(path: &Path, report: &MoverReport) {
    let text = report.to_termination_message();
    tracing::info!(report = %text, "mover finished");
    if let Err(e) = std::fs::write(path, &text) {
        tracing::error!(path = %path.display(), error = %e, "cannot write the report");
        eprintln!("cannot write the report to {}: {e}", path.display());
    }
}
