//! The mover Jobs of backup and restore runs: the image they run, creating one (adopting it
//! when an earlier attempt's answer was lost), finding its pod, reading its progress, stopping
//! it. The Jobs themselves are built in [`super::backup::job`].

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{
    Api, DeleteParams, ListParams, LogParams, PostParams, Preconditions, PropagationPolicy,
};

use super::backup::job;
use super::context::Context;
use crate::api::TransferProgress;
use crate::plan::report::Problem;

/// How often a running transfer's progress is read into status.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// The image the mover runs: the template's, or the operator's own.
pub fn mover_image(ctx: &Context) -> Result<String, Problem> {
    ctx.options
        .mover
        .image
        .clone()
        .or_else(|| ctx.options.operator_image.clone())
        .ok_or_else(|| {
            Problem::new(
                "MoverImageUnknown",
                "the operator knows no image for the mover: set image in its --mover-template \
                 file or the ESC_OPERATOR_IMAGE environment variable",
            )
        })
}

/// Creates the Job. One of that name that exists already is taken as this run's (an earlier
/// attempt whose answer was lost) only if the run controls it: [`job::job_state`] fails the run
/// on any other.
pub async fn create(ctx: &Context, namespace: &str, job: &Job) -> Result<(), Problem> {
    let name = job.name_any();
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
    match jobs.create(&PostParams::default(), job).await {
        Ok(_) => {
            tracing::info!(job = %name, "created the mover Job");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(Problem::new(
            "MoverJobNotCreated",
            format!("creating the mover Job {name} failed: {e}"),
        )),
    }
}

/// The mover's last progress line, read from its log at most every [`PROGRESS_EVERY`] per run
/// (a long transfer writes its status that often, not at every wake-up).
pub async fn progress(
    ctx: &Context,
    namespace: &str,
    run_uid: &str,
    pod: &Pod,
) -> Option<TransferProgress> {
    if !ctx.throttle.ready(run_uid, PROGRESS_EVERY) {
        return None;
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let params = LogParams {
        container: Some(job::MOVER_CONTAINER.to_owned()),
        tail_lines: Some(50),
        limit_bytes: Some(64 * 1024),
        ..LogParams::default()
    };
    let log = pods.logs(&pod.name_any(), &params).await.ok()?;
    job::last_progress(&log)
}

/// The pod of the mover Job `job` (the newest it controls).
pub async fn job_pod(ctx: &Context, namespace: &str, job: &Job) -> Option<Pod> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let job_name = job.name_any();
    let list = pods
        .list(&ListParams::default().labels(&format!("job-name={job_name}")))
        .await
        .ok()?;
    job::newest_pod_of(list.items, job.uid().as_deref().unwrap_or_default())
}

/// Deletes a mover Job that is still running (cancel or failure); its pod goes with it. Only a
/// Job that the run `run_uid` controls, and only that very Job (a uid precondition): a Job of
/// the same name made by someone else is left alone.
pub async fn stop_job(ctx: &Context, namespace: &str, job_name: &str, run_uid: &str) {
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
    match jobs.get_opt(job_name).await {
        Ok(Some(job)) => {
            if !job::controlled_by(&job.metadata, run_uid) {
                tracing::warn!(
                    job = job_name,
                    "not deleting the Job: this run did not create it"
                );
                return;
            }
            let done = job
                .status
                .as_ref()
                .is_some_and(|s| s.completion_time.is_some() || s.failed.unwrap_or(0) > 0);
            let params = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                preconditions: Some(Preconditions {
                    uid: job.uid(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            if !done && let Err(e) = jobs.delete(job_name, &params).await {
                tracing::warn!(error = %e, job = job_name, "could not delete the mover Job");
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, job = job_name, "reading the mover Job"),
    }
}
