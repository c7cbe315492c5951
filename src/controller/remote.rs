//! A backup's or restore's commands on the ESC nodes: start or poll a detached escadm run, read
//! its result, probe every node, keep the restore history, and remove what the run left
//! behind. Over the shared SSH pool; the cluster's SSH Secrets are read once per reconcile,
//! when first needed.

use std::sync::Arc;

use crate::api::{
    EscCluster, EscNodeStatus, NodeFile, NodeFileKind, NodeRole, OpMode, ServicesState,
};
use crate::controller::context::Context;
use crate::controller::nodes::{connect, problem};
use crate::controller::secrets::SshAccess;
use crate::controller::ssh_pool::NodeKey;
use crate::esc::history::{RestoreRecord, history_file};
use crate::esc::{DriverError, EscNode, EscadmCommand, RemotePath, RunDir, RunState};
use crate::plan::cluster::node_status;
use crate::plan::report::Problem;
use crate::plan::run::{DATABASE_FILE, RemoteCommand, RemoteOutcome};

/// How `escadm log collect` names its archives (`/var/tmp/esc_log-<timestamp>.tar.bz2`): the
/// only files removed besides run directories. The path comes from escadm's output, which is
/// not trusted to name any file.
fn is_log_archive(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or("");
    path.contains("/var/tmp/")
        && name.starts_with("esc_log")
        && name.ends_with(".tar.bz2")
        && !path.split('/').any(|c| c == "..")
}

pub struct Remote<'a> {
    ctx: &'a Context,
    cluster: Option<&'a EscCluster>,
    access: Option<Result<SshAccess, Problem>>,
}

impl<'a> Remote<'a> {
    pub fn new(ctx: &'a Context, cluster: Option<&'a EscCluster>) -> Self {
        Remote {
            ctx,
            cluster,
            access: None,
        }
    }

    async fn node(&mut self, name: &str) -> Result<(NodeKey, Arc<EscNode>), Problem> {
        let Some(cluster) = self.cluster else {
            return Err(Problem::new("ClusterNotFound", "the EscCluster is gone"));
        };
        if self.access.is_none() {
            let namespace = kube::ResourceExt::namespace(cluster).unwrap_or_default();
            self.access = Some(
                self.ctx
                    .secrets
                    .load(&self.ctx.client, &namespace, &cluster.spec.ssh)
                    .await,
            );
        }
        let access = match self.access.as_ref().expect("just loaded") {
            Ok(a) => a,
            Err(p) => return Err(p.clone()),
        };
        connect(self.ctx, cluster, access, name).await
    }

    fn base(&self) -> Result<RemotePath, Problem> {
        RemotePath::new(self.ctx.options.run_directory.as_str())
            .map_err(|e| Problem::new(e.reason(), format!("the operator's --run-directory: {e}")))
    }

    /// Starts (if needed) or polls the detached run `run` of `command` on `node`; `file` is the
    /// staged database of a restore.
    pub async fn run(
        &mut self,
        node_name: &str,
        run: &str,
        command: RemoteCommand,
        file: Option<&str>,
    ) -> RemoteOutcome {
        let dir = match self.base().and_then(|base| {
            RunDir::new(&base, run).map_err(|e| Problem::new(e.reason(), e.to_string()))
        }) {
            Ok(d) => d,
            Err(p) => return RemoteOutcome::Failed(p),
        };
        let (key, node) = match self.node(node_name).await {
            Ok(n) => n,
            Err(p) => return RemoteOutcome::Unreachable(p),
        };
        let escadm = match command {
            RemoteCommand::LogCollect => EscadmCommand::LogCollect,
            RemoteCommand::Stop => EscadmCommand::Stop,
            RemoteCommand::Restart => EscadmCommand::Restart,
            RemoteCommand::Backup => match dir.file(DATABASE_FILE) {
                Ok(file) => EscadmCommand::Backup { file },
                Err(e) => return RemoteOutcome::Failed(Problem::new(e.reason(), e.to_string())),
            },
            RemoteCommand::Restore => match file.map(RemotePath::new) {
                Some(Ok(file)) => EscadmCommand::Restore { file },
                Some(Err(e)) => {
                    return RemoteOutcome::Failed(Problem::new(e.reason(), e.to_string()));
                }
                None => {
                    return RemoteOutcome::Failed(Problem::new(
                        "NoStagedFile",
                        "escadm restore needs the staged database's path",
                    ));
                }
            },
        };
        let outcome = async {
            match node.poll_detached(&dir).await? {
                RunState::Absent => {
                    node.start_detached(&dir, &escadm).await?;
                    Ok(RemoteOutcome::Running)
                }
                RunState::Running => Ok(RemoteOutcome::Running),
                RunState::Lost => Ok(RemoteOutcome::Failed(Problem::new(
                    "RunLost",
                    format!(
                        "`{}` on {node_name} ended without an exit code (the node rebooted, or the \
                         process was killed); its output is in {}",
                        escadm.name(),
                        dir.path()
                    ),
                ))),
                RunState::Exited(code) => {
                    self.finish(&node, node_name, &dir, &escadm, command, code)
                        .await
                }
            }
        }
        .await;
        match outcome {
            Ok(o) => o,
            Err(e @ DriverError::Ssh(_)) => {
                self.ctx.ssh.discard(&key);
                RemoteOutcome::Unreachable(problem(&e))
            }
            Err(e) => RemoteOutcome::Failed(problem(&e)),
        }
    }

    async fn finish(
        &self,
        node: &EscNode,
        node_name: &str,
        dir: &RunDir,
        escadm: &EscadmCommand,
        command: RemoteCommand,
        code: i32,
    ) -> Result<RemoteOutcome, DriverError> {
        let file = |kind: NodeFileKind, path: String| NodeFile {
            node: node_name.to_owned(),
            kind,
            path,
        };
        Ok(match command {
            RemoteCommand::LogCollect => {
                let logs = node.finish_log_collect(dir, code).await?;
                RemoteOutcome::Finished(vec![file(NodeFileKind::Logs, logs.path)])
            }
            RemoteCommand::Backup => {
                let path = dir.file(DATABASE_FILE)?;
                node.finish_backup(dir, &path, code).await?;
                RemoteOutcome::Finished(vec![file(NodeFileKind::Database, path.to_string())])
            }
            RemoteCommand::Restore => match escadm {
                EscadmCommand::Restore { file } => {
                    node.finish_restore(dir, file, code).await?;
                    RemoteOutcome::Finished(Vec::new())
                }
                other => RemoteOutcome::Failed(Problem::new(
                    "CommandMismatch",
                    format!("a restore step ran `{}`", other.name()),
                )),
            },
            RemoteCommand::Restart => {
                node.finish_restart(dir, code).await?;
                RemoteOutcome::Finished(Vec::new())
            }
            RemoteCommand::Stop => {
                node.finish_stop(dir, code).await?;
                // escadm's word is not proof: every service must show stopped.
                let status = node.status().await?;
                if status.all_services_stopped() {
                    RemoteOutcome::Finished(Vec::new())
                } else {
                    let running: Vec<&str> = status.running_services().collect();
                    RemoteOutcome::Failed(Problem::new(
                        "ServicesStillRunning",
                        format!(
                            "`escadm stop` on {node_name} succeeded but `status --v` does not show \
                             every service stopped (running: {})",
                            if running.is_empty() {
                                "none recognised; some lines were not understood".to_owned()
                            } else {
                                running.join(", ")
                            }
                        ),
                    ))
                }
            }
        })
    }

    /// `status --v` on `node_name`, as status shows it: unreachable, not understood (role and
    /// services `Unknown`), or what it reported.
    pub async fn status(&mut self, node_name: &str) -> EscNodeStatus {
        let unknown = |reachable| EscNodeStatus {
            name: node_name.to_owned(),
            role: NodeRole::Unknown,
            reachable,
            services: ServicesState::Unknown,
            stopped_services: Vec::new(),
            esc_version: None,
        };
        let (key, node) = match self.node(node_name).await {
            Ok(n) => n,
            Err(_) => return unknown(false),
        };
        match node.status().await {
            Ok(status) => node_status(node_name, &status),
            Err(DriverError::Ssh(_)) => {
                self.ctx.ssh.discard(&key);
                unknown(false)
            }
            Err(_) => unknown(true),
        }
    }

    /// `op_mode show` on `node_name`; `None` when it cannot be told.
    pub async fn op_mode(&mut self, node_name: &str) -> Option<OpMode> {
        let (_, node) = self.node(node_name).await.ok()?;
        match node.op_mode().await.ok()? {
            crate::esc::OpMode::Operation => Some(OpMode::Operation),
            crate::esc::OpMode::Maintenance => Some(OpMode::Maintenance),
        }
    }

    /// The restore history on `node_name` (in the state directory).
    pub async fn history(&mut self, node_name: &str) -> Result<Vec<RestoreRecord>, Problem> {
        let file = self.history_file(node_name)?;
        let (key, node) = self.node(node_name).await?;
        node.restore_history(&file)
            .await
            .map_err(|e| self.driver_problem(&key, node_name, &e))
    }

    /// Appends `record` to the restore history on `node_name`.
    pub async fn record(&mut self, node_name: &str, record: &RestoreRecord) -> Result<(), Problem> {
        let file = self.history_file(node_name)?;
        let (key, node) = self.node(node_name).await?;
        node.record_restore(&file, record)
            .await
            .map_err(|e| self.driver_problem(&key, node_name, &e))
    }

    /// Free bytes under the run directory on `node_name`.
    pub async fn free_space(&mut self, node_name: &str) -> Result<u64, Problem> {
        let base = self.base()?;
        let (key, node) = self.node(node_name).await?;
        node.free_space(&base)
            .await
            .map_err(|e| self.driver_problem(&key, node_name, &e))
    }

    fn history_file(&self, node_name: &str) -> Result<RemotePath, Problem> {
        let dir = RemotePath::new(self.ctx.options.state_directory.as_str()).map_err(|e| {
            Problem::new(e.reason(), format!("the operator's --state-directory: {e}"))
        })?;
        history_file(&dir, node_name).map_err(|e| Problem::new(e.reason(), e.to_string()))
    }

    fn driver_problem(&self, key: &NodeKey, node_name: &str, e: &DriverError) -> Problem {
        if matches!(e, DriverError::Ssh(_)) {
            self.ctx.ssh.discard(key);
        }
        let p = problem(e);
        Problem::new(p.reason, format!("{node_name}: {}", p.message))
    }

    /// Removes the run's files. Only what the run could have made: its run directories under
    /// the run base, and log archives under `/var/tmp/`.
    pub async fn cleanup(&mut self, files: &[NodeFile]) -> Result<(), Problem> {
        let base = self.base()?;
        let mut failures = Vec::new();
        for f in files {
            if f.kind == NodeFileKind::Database {
                // Inside its run directory, removed with it.
                continue;
            }
            let result = async {
                let (key, node) = self.node(&f.node).await?;
                let removed = match f.kind {
                    NodeFileKind::RunDirectory => {
                        let name = f
                            .path
                            .strip_prefix(base.as_str().trim_end_matches('/'))
                            .and_then(|rest| rest.strip_prefix('/'))
                            .unwrap_or("");
                        let dir = RunDir::new(&base, name).map_err(|e| {
                            Problem::new(
                                "CleanupRefused",
                                format!("{} is not a run directory under {base}: {e}", f.path),
                            )
                        })?;
                        node.remove_run(&dir).await
                    }
                    _ => {
                        if !is_log_archive(&f.path) {
                            return Err(Problem::new(
                                "CleanupRefused",
                                format!(
                                    "{} is not named like an escadm log archive (/var/tmp/esc_log-*.tar.bz2)",
                                    f.path
                                ),
                            ));
                        }
                        let path = RemotePath::new(f.path.as_str())
                            .map_err(|e| Problem::new(e.reason(), e.to_string()))?;
                        node.remove_file(&path).await
                    }
                };
                removed.map_err(|e| {
                    if matches!(e, DriverError::Ssh(_)) {
                        self.ctx.ssh.discard(&key);
                    }
                    problem(&e)
                })
            }
            .await;
            if let Err(p) = result {
                failures.push(format!("{}:{} ({})", f.node, f.path, p.message));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Problem::new("CleanupIncomplete", failures.join("; ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_log_archive;

    #[test]
    fn only_log_archives_are_removed_by_path() {
        for ok in [
            "/var/tmp/esc_log-20261129-101010.tar.bz2",
            "/srv/sim/esc-a/fs/var/tmp/esc_log-1.tar.bz2",
        ] {
            assert!(is_log_archive(ok), "{ok}");
        }
        for bad in [
            "/etc/passwd",
            "/var/tmp/esc_log-1.tar.bz2/../../etc/shadow.tar.bz2",
            "/var/tmp/../etc/esc_log-1.tar.bz2",
            "/var/tmp/other.tar.bz2",
            "/var/tmp/esc_log-1.tar",
            "/opt/esc_log-1.tar.bz2",
            "",
        ] {
            assert!(!is_log_archive(bad), "{bad}");
        }
    }
}
