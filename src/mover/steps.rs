//! What every mover run shares: the step it is in, announced on stdout as it begins
//! ([`Steps`]); a failure as the step it happened in and a stable reason ([`StepError`]); the
//! stop signal ([`terminated`]); and the periodic progress lines ([`progress_lines`]).
//!
//! Owns: those four, and the mapping of an ESC driver error to a sink error with the
//! transport's own reason ([`driver_error`]). Imports [`crate::mover::report`] (the lines it
//! prints), the sink's [`SinkError`] and the ESC driver's error.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::esc::DriverError;
use crate::mover::report::{MoverStep, ProgressLine};
use crate::mover::sink::SinkError;
use crate::mover::sink::sftp::ssh_error;

/// The step the run is in, announced on stdout as it begins.
pub(crate) struct Steps(std::sync::Mutex<MoverStep>);

impl Steps {
    pub(crate) fn new() -> Self {
        Steps(std::sync::Mutex::new(MoverStep::ReadRequest))
    }

    pub(crate) fn enter(&self, step: MoverStep) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = step;
        ProgressLine::Step { step }.print();
    }

    pub(crate) fn current(&self) -> MoverStep {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Completes when the process is asked to stop (the Job deleted, its deadline reached): the
/// kubelet sends SIGTERM and waits the grace period before SIGKILL.
pub(crate) async fn terminated() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => std::future::pending().await,
    }
}

/// A failed step: what the report says.
#[derive(Debug)]
pub(crate) struct StepError {
    pub(crate) step: MoverStep,
    pub(crate) error: SinkError,
}

impl StepError {
    pub(crate) fn at(step: MoverStep) -> impl FnOnce(SinkError) -> StepError {
        move |error| StepError { step, error }
    }
}

/// An ESC driver's failure with the transport's own reason when it is an SSH one.
pub(crate) fn driver_error(e: &DriverError) -> SinkError {
    match e {
        DriverError::Ssh(ssh) => ssh_error(ssh),
        other => SinkError::new(other.reason(), other.to_string()),
    }
}

/// The progress lines' task, stopped when dropped: also when the run is cut short by the stop
/// signal, so no line follows the report.
pub(crate) struct ProgressTask(tokio::task::JoinHandle<()>);

impl ProgressTask {
    /// Starts [`progress_lines`].
    pub(crate) fn start(count: Arc<AtomicU64>, total: u64, every: Duration) -> Self {
        ProgressTask(tokio::spawn(progress_lines(count, total, every)))
    }
}

impl Drop for ProgressTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Prints a progress line every `every`: the bytes `count` holds of `total`, and the rate
/// since the last line. Runs until aborted.
pub(crate) async fn progress_lines(count: Arc<AtomicU64>, total: u64, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.tick().await;
    let mut last = (Instant::now(), 0u64);
    loop {
        ticks.tick().await;
        let now = Instant::now();
        let bytes = count.load(Ordering::Relaxed);
        let rate = bytes.saturating_sub(last.1) as f64
            / now.duration_since(last.0).as_secs_f64().max(1e-9);
        last = (now, bytes);
        ProgressLine::Progress {
            bytes,
            total_bytes: total,
            bytes_per_second: rate,
        }
        .print();
    }
}
