//! The EscBackupSchedule reconciler: list the schedule's runs (EscBackups with its label and
//! owner reference), let [`crate::plan::schedule`] decide, create the one run it asks for, store
//! the status (only when it changed), delete what retention selects, publish Events and
//! metrics, and sleep until the next scheduled time.
//!
//! Creating first and storing the cursor after makes a crash between the two harmless: the run's
//! name is its scheduled time, so the next reconcile finds it (or the create answers
//! AlreadyExists) and never starts a second one. Deleting a run goes through the EscBackup
//! controller's finalizer, which applies its `deletionPolicy` to the artifact.
//!
//! The current time comes from the system clock, or — for tests only — from the file given to
//! the hidden `--test-clock-file` flag ([`Clock`]).

pub mod metrics;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
use kube::{Resource, ResourceExt};

use super::context::Context;
use super::metrics::ClusterLabels;
use super::{back_off, instrumented, readable};
use crate::api::{EscBackup, EscBackupSchedule, EscBackupScheduleStatus, EscBackupSpec};
use crate::plan::schedule::{
    NewRun, RunView, SCHEDULE_LABEL, SCHEDULED_TIME_ANNOTATION, ScheduleInput, SchedulePlan, plan,
};

/// The controller's name in metrics, logs and Events.
pub const CONTROLLER: &str = "escbackupschedule";
/// With a test clock, how often a schedule looks at the file again (its time does not pass by
/// itself, so the sleep until the next scheduled time means nothing).
const TEST_CLOCK_POLL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("EscBackupSchedule {object}: {message}")]
    Api { object: String, message: String },
    #[error("EscBackupSchedule {object}: the test clock: {message}")]
    Clock { object: String, message: String },
}

impl Error {
    /// Short and stable: a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Api { .. } => "Api",
            Error::Clock { .. } => "Clock",
        }
    }
}

/// Where "now" comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Clock {
    System,
    /// TESTING ONLY: one RFC 3339 timestamp in a file, read at every reconcile. A file that
    /// cannot be read or parsed fails the reconcile: never a silent fall back to the system
    /// clock, which would run schedules at surprising times in a test.
    File(PathBuf),
}

impl Clock {
    pub fn from_options(file: Option<&PathBuf>) -> Clock {
        file.map_or(Clock::System, |f| Clock::File(f.clone()))
    }

    /// Now, in whole seconds (as the API server stores times).
    pub fn now(&self) -> Result<Timestamp, String> {
        let now = match self {
            Clock::System => Timestamp::now(),
            Clock::File(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("read {}: {e}", path.display()))?;
                text.trim()
                    .parse()
                    .map_err(|e| format!("{}: {e}", path.display()))?
            }
        };
        Timestamp::from_second(now.as_second()).map_err(|e| e.to_string())
    }
}

/// The schedule controller for one watched scope, and a future that completes once its caches
/// have listed everything (readiness).
pub fn controller(
    ctx: Arc<Context>,
    schedules: Api<DeserializeGuard<EscBackupSchedule>>,
    backups: Api<DeserializeGuard<EscBackup>>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> (BoxFuture<'static, ()>, BoxFuture<'static, ()>) {
    let (reader, writer) = reflector::store();
    let on_delete = ctx.clone();
    let stream = watcher(schedules, watcher::Config::default().any_semantic())
        .default_backoff()
        // A deleted schedule is not reconciled again: its series and stored status go here.
        .inspect_ok(move |event| {
            if let watcher::Event::Delete(schedule) = event {
                on_delete.metrics.schedules.deleted(&labels(schedule));
                on_delete.forget(schedule);
            }
        })
        .reflect(writer)
        .applied_objects();
    let ready = {
        let reader = reader.clone();
        async move {
            let _ = reader.wait_until_ready().await;
        }
        .boxed()
    };
    let run = Controller::for_stream(stream, reader)
        // Its runs: one ending (or deleted) is when the schedule's status and retention move.
        .owns(
            backups,
            watcher::Config::default()
                .labels(SCHEDULE_LABEL)
                .any_semantic(),
        )
        .with_config(
            kube::runtime::controller::Config::default()
                .concurrency(ctx.options.max_concurrent_reconciles),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "controller event");
            }
        })
        .boxed();
    (run, ready)
}

fn labels<K: Resource>(schedule: &K) -> ClusterLabels {
    ClusterLabels {
        namespace: schedule.namespace().unwrap_or_default(),
        name: schedule.name_any(),
    }
}

fn object(schedule: &EscBackupSchedule) -> String {
    format!(
        "{}/{}",
        schedule.namespace().unwrap_or_default(),
        schedule.name_any()
    )
}

/// One reconcile of one schedule.
pub async fn reconcile(
    guarded: Arc<DeserializeGuard<EscBackupSchedule>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    instrumented(CONTROLLER, &*guarded, &ctx, async {
        let Some(schedule) = readable(&guarded, &ctx).await else {
            return Ok(Action::await_change());
        };
        if schedule.meta().deletion_timestamp.is_some() {
            // Its runs go by garbage collection (or stay, orphaned, if the user asked).
            return Ok(Action::await_change());
        }
        drive(&schedule, &ctx).await
    })
    .await
}

/// After a failed reconcile: back off this object alone.
pub fn error_policy(
    guarded: Arc<DeserializeGuard<EscBackupSchedule>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    back_off(
        CONTROLLER,
        &*guarded,
        error.reason(),
        error,
        &ctx,
        Duration::from_secs(60),
    )
}

async fn drive(schedule: &EscBackupSchedule, ctx: &Context) -> Result<Action, Error> {
    let namespace = schedule.namespace().unwrap_or_default();
    let name = schedule.name_any();
    let api_error = |what: &str, e: kube::Error| Error::Api {
        object: object(schedule),
        message: format!("{what}: {e}"),
    };
    let clock = Clock::from_options(ctx.options.clock_file.as_ref());
    let now = clock.now().map_err(|message| Error::Clock {
        object: object(schedule),
        message,
    })?;
    let backups: Api<DeserializeGuard<EscBackup>> = Api::namespaced(ctx.client.clone(), &namespace);
    let listed = backups
        .list(&ListParams::default().labels(&format!("{SCHEDULE_LABEL}={name}")))
        .await
        .map_err(|e| api_error("listing its EscBackups", e))?;
    let uid = schedule.uid();
    let runs: Vec<RunView> = listed
        .items
        .iter()
        // Only the runs it created: the label alone could be copied onto anything.
        .filter(|b| {
            b.meta()
                .owner_references
                .iter()
                .flatten()
                .any(|o| Some(&o.uid) == uid.as_ref())
        })
        .map(run_view)
        .collect();

    let previous: EscBackupScheduleStatus = ctx
        .last_written(schedule)
        .unwrap_or_else(|| schedule.status.clone().unwrap_or_default());
    let SchedulePlan {
        status,
        create,
        delete,
        events,
        requeue,
        missed,
        skipped,
    } = plan(&ScheduleInput {
        name: &name,
        spec: &schedule.spec,
        generation: schedule.meta().generation,
        previous: &previous,
        runs: &runs,
        now,
    });

    // The run first: its name makes a retry after a lost status write find it.
    let mut existed = false;
    if let Some(run) = &create {
        existed = match create_run(ctx, schedule, run).await {
            Ok(existed) => existed,
            Err(e) => {
                // Retried with backoff; the cursor stays, so the time stays due (within the
                // starting deadline).
                ctx.publish(schedule, true, "RunNotCreated", &e.to_string(), "Schedule")
                    .await;
                return Err(e);
            }
        };
    }
    write_status(ctx, schedule, &previous, &status).await?;
    ctx.record_written(schedule, &status);
    ctx.reset_backoff(schedule);

    let typed: Api<EscBackup> = Api::namespaced(ctx.client.clone(), &namespace);
    for victim in &delete {
        match typed.delete(victim, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(backup = %victim, "retention: deleted"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            // Planned again at the next reconcile.
            Err(e) => tracing::warn!(backup = %victim, error = %e, "retention: could not delete"),
        }
    }
    for e in &events {
        if existed && e.reason == "RunCreated" {
            continue;
        }
        ctx.publish(schedule, e.warning, &e.reason, &e.note, "Schedule")
            .await;
    }
    ctx.metrics.schedules.observed(
        &labels(schedule),
        status
            .last_successful_time
            .as_ref()
            .map(|t| t.0.as_second()),
        missed,
        skipped,
    );

    Ok(match clock {
        Clock::File(_) => Action::requeue(TEST_CLOCK_POLL),
        Clock::System => match requeue {
            Some(after) => Action::requeue(after),
            None => Action::await_change(),
        },
    })
}

/// A run as the plan sees it. One that does not deserialize has an unknown phase: it counts as
/// active and is never removed (fail closed).
fn run_view(guarded: &DeserializeGuard<EscBackup>) -> RunView {
    let meta = guarded.meta();
    let scheduled = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(SCHEDULED_TIME_ANNOTATION))
        .and_then(|t| t.parse::<Timestamp>().ok());
    let status = guarded
        .0
        .as_ref()
        .ok()
        .and_then(|b| b.status.clone())
        .unwrap_or_default();
    RunView {
        name: guarded.name_any(),
        scheduled,
        phase: status.phase,
        completed: status.completed_at.map(|t| t.0),
        deleting: meta.deletion_timestamp.is_some(),
    }
}

/// Creates the run; `true` when it existed already (created by an earlier attempt).
async fn create_run(
    ctx: &Context,
    schedule: &EscBackupSchedule,
    run: &NewRun,
) -> Result<bool, Error> {
    let namespace = schedule.namespace().unwrap_or_default();
    let owner = schedule
        .controller_owner_ref(&())
        .ok_or_else(|| Error::Api {
            object: object(schedule),
            message: "it has no uid yet".into(),
        })?;
    let template = &schedule.spec.template;
    let backup = EscBackup {
        metadata: ObjectMeta {
            name: Some(run.name.clone()),
            namespace: Some(namespace.clone()),
            labels: Some(BTreeMap::from([(
                SCHEDULE_LABEL.to_owned(),
                schedule.name_any(),
            )])),
            annotations: Some(BTreeMap::from([(
                SCHEDULED_TIME_ANNOTATION.to_owned(),
                run.scheduled.to_string(),
            )])),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: EscBackupSpec {
            cluster_ref: schedule.spec.cluster_ref.clone(),
            target: template.target.clone(),
            include: template.include.clone(),
            ipt_check: None,
            deletion_policy: template.deletion_policy,
            after_backup: Default::default(),
        },
        status: None,
    };
    let api: Api<EscBackup> = Api::namespaced(ctx.client.clone(), &namespace);
    match api.create(&PostParams::default(), &backup).await {
        Ok(_) => {
            tracing::info!(backup = %run.name, scheduled = %run.scheduled, "created a scheduled run");
            Ok(false)
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(true),
        Err(e) => Err(Error::Api {
            object: object(schedule),
            message: format!("creating EscBackup {}: {e}", run.name),
        }),
    }
}

async fn write_status(
    ctx: &Context,
    schedule: &EscBackupSchedule,
    stored: &EscBackupScheduleStatus,
    status: &EscBackupScheduleStatus,
) -> Result<(), Error> {
    if stored == status {
        return Ok(());
    }
    super::apply_status(&ctx.client, schedule, status)
        .await
        .map_err(|e| Error::Api {
            object: object(schedule),
            message: format!("writing status: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_clock_reads_its_file_and_fails_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("now");
        let clock = Clock::File(path.clone());
        assert!(clock.now().unwrap_err().contains("read"));
        std::fs::write(&path, "2026-03-29T01:00:00.750Z\n").unwrap();
        assert_eq!(
            clock.now().unwrap(),
            "2026-03-29T01:00:00Z".parse::<Timestamp>().unwrap()
        );
        std::fs::write(&path, "yesterday").unwrap();
        assert!(clock.now().is_err(), "garbage is no time");
        assert_eq!(Clock::from_options(None), Clock::System);
    }
}
