//! The EscCluster decision: probes of every node + the previous status + who asks for
//! maintenance → the status to store, at most one `op_mode set` to send, the Events to publish
//! and when to probe next.
//!
//! Maintenance is shared: each *holder* (the annotation a person set, later each running
//! EscBackup / EscRestore) keeps ESC in maintenance; ESC enters when the first holder appears
//! and returns to operation when the last one goes. `status.maintenanceHolders` is the list the
//! operator enforces. It is stored *before* an `op_mode set --mode=maintenance` is sent and
//! emptied only *after* ESC is back in operation, so an operator killed at any point finds in
//! status whether it owns the maintenance window — and, because every decision starts from a
//! fresh `op_mode show`, it never sends the same `op_mode set` twice.
//!
//! Fail closed: a node whose output is not understood counts as neither healthy nor stopped;
//! an unknown operation mode, an unknown master or two masters block every mode change.

use std::time::Duration;

use k8s_openapi::jiff::SignedDuration;

use super::conditions::{self, Desired};
pub use super::report::{PlannedEvent, Problem};
use crate::api::{
    EscClusterSpec, EscClusterStatus, EscNodeStatus, HolderKind, MaintenanceHolder, NodeRole,
    OpMode as StatusMode, ServicesState, Time, Topology,
};
use crate::esc::{HaRole, Health, NodeStatus, OpMode, ServiceRunState};

/// The annotation through which a person (kubectl, GitOps) asks for maintenance.
pub const MAINTENANCE_ANNOTATION: &str = "escoperator.dev/maintenance";

/// Condition types of an EscCluster.
pub const READY: &str = "Ready";
pub const REACHABLE: &str = "Reachable";
pub const MAINTENANCE: &str = "Maintenance";
pub const DEGRADED: &str = "Degraded";

/// Something that asks for maintenance now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HolderRequest {
    pub kind: HolderKind,
    pub name: String,
    /// The holder's own `ipt_check` choice (an EscBackup's `spec.iptCheck`), over the
    /// cluster's `spec.maintenance.iptCheck` when this holder opens the window.
    pub ipt_check: Option<bool>,
}

impl HolderRequest {
    fn matches(&self, holder: &MaintenanceHolder) -> bool {
        self.kind == holder.kind && self.name == holder.name
    }
}

/// What the maintenance annotation asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnnotationRequest {
    /// Absent or `"false"`: no maintenance asked.
    Operation,
    /// `"true"`.
    Maintenance,
    /// Any other value: keep what was enforced and tell the user.
    Invalid(String),
}

impl AnnotationRequest {
    pub fn parse(value: Option<&str>) -> Self {
        match value.map(str::trim) {
            None | Some("false") => AnnotationRequest::Operation,
            Some("true") => AnnotationRequest::Maintenance,
            Some(other) => AnnotationRequest::Invalid(other.chars().take(64).collect()),
        }
    }

    /// The holder request of the annotation, given what status enforces today. An invalid value
    /// changes nothing: a typo must neither start nor end a maintenance window.
    pub fn request(&self, previous: &EscClusterStatus) -> Option<HolderRequest> {
        let held = previous
            .maintenance_holders
            .iter()
            .any(|h| h.kind == HolderKind::Annotation);
        let wanted = match self {
            AnnotationRequest::Operation => false,
            AnnotationRequest::Maintenance => true,
            AnnotationRequest::Invalid(_) => held,
        };
        wanted.then(|| HolderRequest {
            kind: HolderKind::Annotation,
            name: MAINTENANCE_ANNOTATION.to_owned(),
            ipt_check: None,
        })
    }
}

/// What one node answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeAnswer {
    pub op_mode: Result<OpMode, Problem>,
    pub status: Result<NodeStatus, Problem>,
}

/// One node's probe: reached (with its answers) or not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeProbe {
    pub name: String,
    pub result: Result<NodeAnswer, Problem>,
}

/// An `op_mode set` to send, on the node that holds the mode (the MASTER, or the standalone node).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModeAction {
    Enter { node: String, ipt_check: bool },
    Exit { node: String },
}

impl ModeAction {
    pub fn node(&self) -> &str {
        match self {
            ModeAction::Enter { node, .. } | ModeAction::Exit { node } => node,
        }
    }
    pub fn target_mode(&self) -> OpMode {
        match self {
            ModeAction::Enter { .. } => OpMode::Maintenance,
            ModeAction::Exit { .. } => OpMode::Operation,
        }
    }
}

/// What became of the action of the previous [`plan`] call in the same reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActionOutcome {
    Done(ModeAction),
    Failed(ModeAction, Problem),
}

/// Everything [`plan`] looks at.
#[derive(Clone, Debug)]
pub struct ClusterInput<'a> {
    pub spec: &'a EscClusterSpec,
    pub generation: Option<i64>,
    pub previous: &'a EscClusterStatus,
    pub annotation: AnnotationRequest,
    /// Holders other than the annotation (running backups and restores).
    pub other_requests: Vec<HolderRequest>,
    /// The node probes, or why none could run (the Secrets are missing or unusable).
    pub probes: Result<Vec<NodeProbe>, Problem>,
    /// Set on the second call of a reconcile, after the first call's action ran. That call
    /// gets the same `previous` (the status as stored before the reconcile), the same probes
    /// and the same `now`, and its events replace the first call's: they describe the whole
    /// reconcile, compared with what was stored before it.
    pub outcome: Option<ActionOutcome>,
    pub now: Time,
}

/// What to do next.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterPlan {
    /// The status to store (write it only if it differs from the stored one).
    pub status: EscClusterStatus,
    /// The mode change to send now, if any. Store `status` first: it records the holder.
    pub action: Option<ModeAction>,
    pub events: Vec<PlannedEvent>,
    /// Probe again after this long (the probe interval, or earlier for a maxDuration deadline).
    pub next_probe: Duration,
    /// A wanted mode change could not happen yet (refused, blocked): retry with backoff rather
    /// than wait a whole probe interval.
    pub retry: bool,
}

/// Decides. Pure: same input, same output.
pub fn plan(input: &ClusterInput<'_>) -> ClusterPlan {
    let spec = input.spec;
    let previous = input.previous;
    let mut events = Vec::new();

    let nodes = node_statuses(spec, &input.probes);
    let roles = RoleView::of(spec, &nodes);
    let probed = observed_mode(spec, &input.probes, &roles);
    let observed = match &input.outcome {
        Some(ActionOutcome::Done(action)) => Some(action.target_mode()),
        Some(ActionOutcome::Failed(..)) | None => probed,
    };

    // Holders: which requests are active, which ran past maxDuration.
    let mut requests: Vec<HolderRequest> = input.annotation.request(previous).into_iter().collect();
    requests.extend(input.other_requests.iter().cloned());
    let mut expired: Vec<MaintenanceHolder> = previous
        .expired_holders
        .iter()
        .filter(|h| requests.iter().any(|r| r.matches(h)))
        .cloned()
        .collect();
    let mut holders = Vec::new();
    let mut next_probe: Duration = spec.probe_interval.into();
    for request in &requests {
        if expired.iter().any(|h| request.matches(h)) {
            continue;
        }
        let since = previous
            .maintenance_holders
            .iter()
            .find(|h| request.matches(h))
            .map(|h| h.since.clone())
            .unwrap_or_else(|| input.now.clone());
        let holder = MaintenanceHolder {
            kind: request.kind,
            name: request.name.clone(),
            since,
        };
        // Only a person's request expires: a running restore must never be pushed back into
        // operation halfway; backups and restores bound themselves with their own deadlines.
        if let (HolderKind::Annotation, Some(max)) = (holder.kind, spec.maintenance.max_duration) {
            let max: Duration = max.into();
            let held_for = elapsed(&holder.since, &input.now);
            if held_for >= max {
                events.push(PlannedEvent::warning(
                    "MaxDurationExceeded",
                    format!(
                        "maintenance asked by the annotation {MAINTENANCE_ANNOTATION} lasted longer than \
                         spec.maintenance.maxDuration ({}); returning ESC to operation. Remove the \
                         annotation and set it again to start a new window",
                        spec.maintenance.max_duration.map(|d| d.to_string()).unwrap_or_default()
                    ),
                ));
                expired.push(holder);
                continue;
            }
            next_probe = next_probe.min(max - held_for);
        }
        holders.push(holder);
    }

    let wanted = if holders.is_empty() {
        OpMode::Operation
    } else {
        OpMode::Maintenance
    };
    // The operator owns the window while status lists holders: only then does it end one.
    let owned = !previous.maintenance_holders.is_empty();
    let blocked = roles.blocker(&input.probes, &nodes);

    if let Some(ActionOutcome::Done(ModeAction::Enter { .. })) = &input.outcome
        && probed == Some(OpMode::Operation)
        && owned
        && previous.op_mode == Some(StatusMode::Maintenance)
    {
        events.push(PlannedEvent::warning(
            "MaintenanceDrift",
            format!(
                "ESC left maintenance mode outside the operator while held by {}; entered it again",
                describe(&holders)
            ),
        ));
    }

    let mut action = None;
    let mut retry = false;
    let mut maintenance = match (observed, wanted) {
        (Some(OpMode::Maintenance), OpMode::Maintenance) => Desired::new(
            MAINTENANCE,
            true,
            "Held",
            format!("ESC is in maintenance mode, held by {}", describe(&holders)),
        ),
        (Some(OpMode::Operation), OpMode::Operation) => {
            if let Some(h) = expired.first() {
                Desired::new(
                    MAINTENANCE,
                    false,
                    "MaxDurationExceeded",
                    format!(
                        "ESC returned to operation: {} held maintenance longer than maxDuration; \
                         remove and set the annotation again to start a new window",
                        describe(std::slice::from_ref(h))
                    ),
                )
            } else {
                Desired::new(MAINTENANCE, false, "Operation", "ESC is in operation mode")
            }
        }
        (Some(OpMode::Operation), OpMode::Maintenance) => {
            let drift = owned && previous.op_mode == Some(StatusMode::Maintenance);
            if drift {
                // Reported here, with the mode as probed; the second call (after the action)
                // sees the outcome instead — see ClusterInput::outcome.
                events.push(PlannedEvent::warning(
                    "MaintenanceDrift",
                    format!(
                        "ESC left maintenance mode outside the operator while held by {}; \
                         entering it again",
                        describe(&holders)
                    ),
                ));
            }
            match (&input.outcome, &blocked) {
                (Some(ActionOutcome::Failed(ModeAction::Enter { .. }, problem)), _) => {
                    retry = true;
                    Desired::new(
                        MAINTENANCE,
                        false,
                        problem.reason.clone(),
                        format!(
                            "maintenance asked by {} but not entered yet: {}",
                            describe(&holders),
                            problem.message
                        ),
                    )
                }
                (_, Some(problem)) => {
                    retry = true;
                    Desired::new(
                        MAINTENANCE,
                        false,
                        "Blocked",
                        format!(
                            "maintenance asked by {} but no mode change is safe: {}",
                            describe(&holders),
                            problem.message
                        ),
                    )
                }
                (_, None) => {
                    let node = roles.mode_node.clone().unwrap_or_default();
                    let ipt_check = requests
                        .iter()
                        .find_map(|r| r.ipt_check)
                        .unwrap_or(spec.maintenance.ipt_check);
                    action = Some(ModeAction::Enter { node, ipt_check });
                    Desired::new(MAINTENANCE, false, "Entering", "entering maintenance mode")
                }
            }
        }
        (Some(OpMode::Maintenance), OpMode::Operation) if owned => {
            match (&input.outcome, &blocked) {
                (Some(ActionOutcome::Failed(ModeAction::Exit { .. }, problem)), _) => {
                    retry = true;
                    Desired::new(
                        MAINTENANCE,
                        true,
                        problem.reason.clone(),
                        format!("returning to operation failed: {}", problem.message),
                    )
                }
                (_, Some(problem)) => {
                    retry = true;
                    Desired::new(
                        MAINTENANCE,
                        true,
                        "Blocked",
                        format!(
                            "no holder is left, but returning to operation is not safe yet: {}",
                            problem.message
                        ),
                    )
                }
                (_, None) => {
                    let node = roles.mode_node.clone().unwrap_or_default();
                    action = Some(ModeAction::Exit { node });
                    Desired::new(MAINTENANCE, true, "Exiting", "returning to operation mode")
                }
            }
        }
        (Some(OpMode::Maintenance), OpMode::Operation) => {
            // Nobody asked through the operator: someone ran escadm by hand. Report, never undo
            // it — they may be in the middle of a manual procedure.
            Desired::new(
                MAINTENANCE,
                true,
                "ManualMaintenance",
                "ESC is in maintenance mode but no holder asked for it (escadm run by hand?); \
                 the operator leaves it so. Set the annotation escoperator.dev/maintenance=true \
                 and remove it to hand the window to the operator",
            )
        }
        (None, _) => {
            retry = wanted == OpMode::Maintenance || owned;
            match &blocked {
                Some(problem) => Desired::new(
                    MAINTENANCE,
                    false,
                    "Blocked",
                    format!(
                        "the operation mode is not known and no mode change is safe: {}",
                        problem.message
                    ),
                ),
                None => Desired::new(
                    MAINTENANCE,
                    false,
                    "Unknown",
                    "the operation mode could not be read from the node that holds it",
                ),
            }
        }
    };
    if maintenance.reason == "ManualMaintenance"
        && conditions::find(&previous.conditions, MAINTENANCE)
            .is_none_or(|c| c.reason != "ManualMaintenance")
    {
        events.push(PlannedEvent::warning(
            "ManualMaintenance",
            maintenance.message.clone(),
        ));
    }

    // What status lists as holders: the wanted ones while in (or entering) maintenance; while
    // leaving, the previous ones stay until ESC is back in operation, so the operator still
    // knows the window is its own to close.
    let listed = if wanted == OpMode::Maintenance {
        holders.clone()
    } else if observed == Some(OpMode::Operation) {
        Vec::new()
    } else {
        previous.maintenance_holders.clone()
    };

    match &input.outcome {
        Some(ActionOutcome::Done(ModeAction::Enter { node, .. })) => {
            events.push(PlannedEvent::normal(
                "MaintenanceEntered",
                format!(
                    "ESC entered maintenance mode on {node}, held by {}",
                    describe(&holders)
                ),
            ))
        }
        Some(ActionOutcome::Done(ModeAction::Exit { node })) => events.push(PlannedEvent::normal(
            "MaintenanceExited",
            format!("ESC returned to operation mode on {node}"),
        )),
        Some(ActionOutcome::Failed(_, problem)) => {
            let before = conditions::find(&previous.conditions, MAINTENANCE);
            if before.is_none_or(|c| c.reason != problem.reason) {
                events.push(PlannedEvent::warning(
                    &problem.reason,
                    problem.message.clone(),
                ));
            }
        }
        None => {}
    }

    let reachable = reachable_condition(&input.probes, &nodes);
    let degraded = roles.degraded_condition(&nodes);
    let settled = action.is_none() && !retry && observed.is_some();
    let ready = ready_condition(
        &reachable,
        &degraded,
        &maintenance,
        &nodes,
        settled,
        &input.annotation,
    );
    if let AnnotationRequest::Invalid(value) = &input.annotation {
        maintenance.message = format!(
            "{}; the annotation {MAINTENANCE_ANNOTATION} has the value {value:?}: set \"true\" or \"false\"",
            maintenance.message
        );
    }

    for (desired, warn_reason, ok_reason) in [
        (&reachable, true, "Reachable"),
        (&degraded, false, "Healthy"),
    ] {
        let before = conditions::find(&previous.conditions, desired.type_);
        let bad = desired.status != warn_reason;
        let changed = before.is_none_or(|c| c.reason != desired.reason);
        if changed && bad {
            events.push(PlannedEvent::warning(
                &desired.reason,
                desired.message.clone(),
            ));
        } else if changed && !bad && before.is_some() {
            events.push(PlannedEvent::normal(ok_reason, desired.message.clone()));
        }
    }

    let conditions = conditions::merge(
        &previous.conditions,
        &[ready, reachable, maintenance, degraded],
        input.generation,
        &input.now,
    );
    let status = EscClusterStatus {
        observed_generation: input.generation,
        op_mode: Some(match observed {
            Some(OpMode::Operation) => StatusMode::Operation,
            Some(OpMode::Maintenance) => StatusMode::Maintenance,
            None => StatusMode::Unknown,
        }),
        master: roles.mode_node.clone(),
        nodes,
        maintenance_holders: listed,
        expired_holders: expired,
        conditions,
    };
    ClusterPlan {
        status,
        action,
        events,
        next_probe,
        retry,
    }
}

fn elapsed(since: &Time, now: &Time) -> Duration {
    let d: SignedDuration = now.0.duration_since(since.0);
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}

/// `annotation escoperator.dev/maintenance (since …), EscBackup nightly (since …)`.
fn describe(holders: &[MaintenanceHolder]) -> String {
    if holders.is_empty() {
        return "no holder".to_owned();
    }
    holders
        .iter()
        .map(|h| {
            let what = match h.kind {
                HolderKind::Annotation => "annotation",
                HolderKind::EscBackup => "EscBackup",
                HolderKind::EscRestore => "EscRestore",
            };
            format!("{what} {} (since {})", h.name, h.since.0)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every spec node's status, in spec order.
fn node_statuses(
    spec: &EscClusterSpec,
    probes: &Result<Vec<NodeProbe>, Problem>,
) -> Vec<EscNodeStatus> {
    spec.nodes
        .iter()
        .map(|n| {
            let probe = probes
                .as_ref()
                .ok()
                .and_then(|ps| ps.iter().find(|p| p.name == n.name));
            let unknown = EscNodeStatus {
                name: n.name.clone(),
                role: NodeRole::Unknown,
                reachable: false,
                services: ServicesState::Unknown,
                stopped_services: Vec::new(),
                esc_version: None,
            };
            let Some(Ok(answer)) = probe.map(|p| &p.result) else {
                return unknown;
            };
            let Ok(status) = &answer.status else {
                return EscNodeStatus {
                    reachable: true,
                    ..unknown
                };
            };
            node_status(&n.name, status)
        })
        .collect()
}

/// A node that answered `status --v`, as status shows it (fail closed: see [`services_state`]).
pub fn node_status(name: &str, status: &NodeStatus) -> EscNodeStatus {
    EscNodeStatus {
        name: name.to_owned(),
        role: match status.role {
            HaRole::Master => NodeRole::Master,
            HaRole::Backup => NodeRole::Backup,
            HaRole::Standalone => NodeRole::Standalone,
            HaRole::Unknown => NodeRole::Unknown,
        },
        reachable: true,
        services: services_state(status),
        stopped_services: status
            .services
            .iter()
            .filter(|s| s.state == ServiceRunState::Stopped)
            .map(|s| s.name.clone())
            .collect(),
        esc_version: status.esc_version.as_ref().map(ToString::to_string),
    }
}

/// Fail closed: `Running` and `Stopped` come only from the domain's own positive-evidence
/// predicates; lines that disagree are `Partial`; anything else is `Unknown`.
pub fn services_state(status: &NodeStatus) -> ServicesState {
    if status.is_healthy() {
        return ServicesState::Running;
    }
    if status.all_services_stopped() {
        return ServicesState::Stopped;
    }
    let running = status
        .services
        .iter()
        .filter(|s| matches!(s.state, ServiceRunState::Running { .. }))
        .count();
    let some_running = running > 0;
    let some_stopped = running < status.services.len();
    if some_running && (some_stopped || status.health == Health::Unhealthy) {
        ServicesState::Partial
    } else {
        ServicesState::Unknown
    }
}

/// Who is MASTER, and whether a mode change may be sent.
struct RoleView {
    /// The node that holds the operation mode: the single MASTER, or the standalone node.
    mode_node: Option<String>,
    /// Why the roles forbid mode changes (HA only).
    role_problem: Option<Problem>,
}

impl RoleView {
    fn of(spec: &EscClusterSpec, nodes: &[EscNodeStatus]) -> Self {
        if spec.topology == Topology::Standalone {
            let node = &nodes[0];
            return RoleView {
                mode_node: node.reachable.then(|| node.name.clone()),
                role_problem: None,
            };
        }
        let masters: Vec<&str> = nodes
            .iter()
            .filter(|n| n.role == NodeRole::Master)
            .map(|n| n.name.as_str())
            .collect();
        let running: Vec<&str> = nodes
            .iter()
            .filter(|n| matches!(n.services, ServicesState::Running | ServicesState::Partial))
            .map(|n| n.name.as_str())
            .collect();
        match masters.as_slice() {
            [one] => RoleView {
                mode_node: Some((*one).to_owned()),
                role_problem: None,
            },
            [] if !running.is_empty() => RoleView {
                mode_node: None,
                role_problem: Some(Problem::new(
                    "NoMaster",
                    format!(
                        "no node reports MASTER while {} run(s) ESC services; check keepalived \
                         (escadm status --v) before any maintenance change",
                        running.join(" and ")
                    ),
                )),
            },
            [] => RoleView {
                mode_node: None,
                role_problem: None,
            },
            many => RoleView {
                mode_node: None,
                role_problem: Some(Problem::new(
                    "SplitBrain",
                    format!(
                        "{} all report MASTER (split brain: keepalived/VRRP cannot see its peer); \
                         the operator sends no mode change until exactly one MASTER remains",
                        many.join(" and ")
                    ),
                )),
            },
        }
    }

    /// Why no `op_mode set` may be sent now, if anything forbids it.
    fn blocker(
        &self,
        probes: &Result<Vec<NodeProbe>, Problem>,
        nodes: &[EscNodeStatus],
    ) -> Option<Problem> {
        if let Some(p) = &self.role_problem {
            return Some(p.clone());
        }
        if let Err(p) = probes {
            return Some(p.clone());
        }
        let Some(mode_node) = &self.mode_node else {
            return Some(Problem::new(
                "MasterUnknown",
                "the node that holds the operation mode (the MASTER) is not known: it is \
                 unreachable or reports no role",
            ));
        };
        // escadm refuses `op_mode set` while services are stopped (a restore, a migration, a
        // person at work): wait for them rather than send a command that cannot succeed.
        // Fail closed: only positive evidence of running services unblocks.
        if let Some(n) = nodes.iter().find(|n| &n.name == mode_node)
            && n.services != ServicesState::Running
        {
            return Some(Problem::new(
                "ServicesNotRunning",
                format!(
                    "ESC services on {mode_node} show {:?}: the operation mode can change only \
                     while they run",
                    n.services
                ),
            ));
        }
        None
    }

    fn degraded_condition(&self, nodes: &[EscNodeStatus]) -> Desired {
        if let Some(p) = &self.role_problem {
            return Desired::new(DEGRADED, true, p.reason.clone(), p.message.clone());
        }
        let partial: Vec<&str> = nodes
            .iter()
            .filter(|n| n.services == ServicesState::Partial)
            .map(|n| n.name.as_str())
            .collect();
        if !partial.is_empty() {
            return Desired::new(
                DEGRADED,
                true,
                "ServicesDegraded",
                format!(
                    "{} run(s) only part of the ESC services or report Unhealthy (see status.nodes)",
                    partial.join(" and ")
                ),
            );
        }
        Desired::new(DEGRADED, false, "Healthy", "roles and services as expected")
    }
}

/// The operation mode, read on the node that holds it (all HA nodes share it through the
/// replicated database; if the MASTER is not known, the nodes must agree).
fn observed_mode(
    spec: &EscClusterSpec,
    probes: &Result<Vec<NodeProbe>, Problem>,
    roles: &RoleView,
) -> Option<OpMode> {
    let probes = probes.as_ref().ok()?;
    let mode_of = |name: &str| -> Option<OpMode> {
        let probe = probes.iter().find(|p| p.name == name)?;
        probe.result.as_ref().ok()?.op_mode.as_ref().ok().copied()
    };
    if let Some(node) = &roles.mode_node {
        return mode_of(node);
    }
    if roles.role_problem.is_some() || spec.topology == Topology::Standalone {
        return None;
    }
    let modes: Vec<OpMode> = spec.nodes.iter().filter_map(|n| mode_of(&n.name)).collect();
    match modes.as_slice() {
        [first, rest @ ..] if rest.iter().all(|m| m == first) => Some(*first),
        _ => None,
    }
}

fn reachable_condition(
    probes: &Result<Vec<NodeProbe>, Problem>,
    nodes: &[EscNodeStatus],
) -> Desired {
    let probes = match probes {
        Err(p) => return Desired::new(REACHABLE, false, p.reason.clone(), p.message.clone()),
        Ok(ps) => ps,
    };
    let failures: Vec<(&str, &Problem)> = probes
        .iter()
        .filter_map(|p| p.result.as_ref().err().map(|e| (p.name.as_str(), e)))
        .collect();
    match failures.first() {
        None => Desired::new(
            REACHABLE,
            true,
            "Reachable",
            format!("all {} node(s) answer over SSH", nodes.len()),
        ),
        Some((_, first)) => Desired::new(
            REACHABLE,
            false,
            first.reason.clone(),
            failures
                .iter()
                .map(|(name, p)| format!("{name}: {}", p.message))
                .collect::<Vec<_>>()
                .join("; "),
        ),
    }
}

fn ready_condition(
    reachable: &Desired,
    degraded: &Desired,
    maintenance: &Desired,
    nodes: &[EscNodeStatus],
    settled: bool,
    annotation: &AnnotationRequest,
) -> Desired {
    if !reachable.status {
        return Desired::new(
            READY,
            false,
            reachable.reason.clone(),
            reachable.message.clone(),
        );
    }
    if degraded.status {
        return Desired::new(
            READY,
            false,
            degraded.reason.clone(),
            degraded.message.clone(),
        );
    }
    if let AnnotationRequest::Invalid(value) = annotation {
        return Desired::new(
            READY,
            false,
            "InvalidAnnotation",
            format!(
                "the annotation {MAINTENANCE_ANNOTATION} has the value {value:?}: set \"true\" or \"false\""
            ),
        );
    }
    if let Some(n) = nodes.iter().find(|n| n.services != ServicesState::Running) {
        let (reason, what) = match n.services {
            ServicesState::Stopped => ("ServicesStopped", "has its ESC services stopped"),
            ServicesState::Partial => ("ServicesDegraded", "runs only part of its services"),
            _ => (
                "StatusUnknown",
                "gave a status the operator does not recognise",
            ),
        };
        return Desired::new(READY, false, reason, format!("{} {what}", n.name));
    }
    if !settled {
        return Desired::new(
            READY,
            false,
            maintenance.reason.clone(),
            maintenance.message.clone(),
        );
    }
    Desired::new(
        READY,
        true,
        "Ready",
        format!(
            "ESC answers on every node; {}",
            maintenance.message.trim_end_matches('.')
        ),
    )
}

#[cfg(test)]
mod tests;
