//! `esc-operator mover backup`: the transfer a backup Job runs; `esc-operator mover stage`: the
//! restore's staging, the artifact's database member streamed onto a node. The request comes
//! from the environment ([`crate::mover::REQUEST_ENV`]), credentials from mounted Secret volumes;
//! progress goes to stdout as JSON lines, logs to stderr as JSON, and the one [`MoverReport`] to
//! the termination message file. Exit status 0 when the artifact is stored and verified (or the
//! member staged and verified), 1 otherwise.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use crate::mover::{
    MoverReport, MoverRequest, MoverStep, RequestError, StageRequest, backup, stage,
};
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
    Backup(RunArgs),
    /// Read a backup artifact from S3 or an SFTP host, check it whole, and write its database
    /// member to a file on an ESC node (the request is read from the ESC_MOVER_REQUEST
    /// variable).
    Stage(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
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
        MoverCommand::Backup(args) => run_command(&args, || {
            let request = MoverRequest::from_env()?;
            Ok(Box::pin(async move { backup::run(&request).await }))
        }),
        MoverCommand::Stage(args) => run_command(&args, || {
            let request = StageRequest::from_env()?;
            Ok(Box::pin(async move { stage::run(&request).await }))
        }),
    }
}

type Run = std::pin::Pin<Box<dyn std::future::Future<Output = MoverReport>>>;

/// Reads the request (`start`), runs it on a small runtime and writes the report.
fn run_command(args: &RunArgs, start: impl FnOnce() -> Result<Run, RequestError>) -> ExitCode {
    if let Err(e) = telemetry::init(LogFormat::Json, &args.log) {
        eprintln!("{e}");
    }
    let report = match start() {
        Err(e) => MoverReport::failed(MoverStep::ReadRequest, e.reason(), e.to_string()),
        Ok(run) => {
            // The store's transfer runs while the SSH streams are read: a few threads,
            // whatever the host's core count (a Job's CPU limit is small).
            let threads = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .clamp(2, 4);
            match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(run),
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
