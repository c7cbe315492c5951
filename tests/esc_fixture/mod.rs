//! What the operator tests that run against simulated ESC nodes share: the SSH Secrets of a
//! simulation, an EscCluster spec pointing at it, status predicates and polling.
//!
//! A module of the test files that `mod esc_fixture;` it (not a test target of its own).
// Each test file compiles its own copy and uses a part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use esc_operator::api::{
    EscCluster, EscClusterSpec, EscClusterStatus, EscNodeSpec, LocalObjectRef, MaintenanceSpec,
    SshSpec, Topology,
};
use esc_testbed::sshd::SimEsc;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};

/// The names of the two Secrets an EscCluster's `spec.ssh` refers to.
pub struct SshSecrets {
    pub credentials: String,
    pub known_hosts: String,
}

/// Creates `<prefix>-ssh` (the first node's client key, which `share_first_client_key` made
/// valid on every node) and `<prefix>-known-hosts` (every node's host key) in `ns`.
pub async fn create_ssh_secrets(
    client: &kube::Client,
    ns: &str,
    prefix: &str,
    sim: &SimEsc,
) -> Result<SshSecrets> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let names = SshSecrets {
        credentials: format!("{prefix}-ssh"),
        known_hosts: format!("{prefix}-known-hosts"),
    };
    let key = sim.nodes()[0].private_key_pem()?;
    let known_hosts: String = sim
        .nodes()
        .iter()
        .map(|n| n.known_hosts_line() + "\n")
        .collect();
    for (name, field, value) in [
        (&names.credentials, "ssh-privatekey", key),
        (&names.known_hosts, "known_hosts", known_hosts),
    ] {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(
                field.to_owned(),
                ByteString(value.into_bytes()),
            )])),
            ..Secret::default()
        };
        api.create(&PostParams::default(), &secret).await?;
    }
    Ok(names)
}

/// A spec for the simulated nodes (Standalone for one, HA for two), probed every 5 s, the
/// shortest interval the CRD allows.
pub fn cluster_spec(sim: &SimEsc, secrets: &SshSecrets) -> EscClusterSpec {
    let nodes = sim.nodes();
    EscClusterSpec {
        topology: if nodes.len() == 1 {
            Topology::Standalone
        } else {
            Topology::Ha
        },
        nodes: nodes
            .iter()
            .map(|n| EscNodeSpec {
                name: n.name().into(),
                host: n.address().to_string(),
                port: n.port(),
            })
            .collect(),
        ssh: SshSpec {
            user: nodes[0].key_user().into(),
            credentials_secret_ref: LocalObjectRef {
                name: secrets.credentials.clone(),
            },
            known_hosts_secret_ref: LocalObjectRef {
                name: secrets.known_hosts.clone(),
            },
            sudo: false,
            connect_timeout: Duration::from_secs(5).into(),
        },
        maintenance: MaintenanceSpec::default(),
        probe_interval: Duration::from_secs(5).into(),
    }
}

/// (status, reason, message) of the condition of type `t`.
pub fn condition<'a>(s: &'a EscClusterStatus, t: &str) -> Option<(&'a str, &'a str, &'a str)> {
    s.conditions
        .iter()
        .find(|c| c.type_ == t)
        .map(|c| (c.status.as_str(), c.reason.as_str(), c.message.as_str()))
}

pub fn is(s: &EscClusterStatus, t: &str, status: &str) -> bool {
    condition(s, t).is_some_and(|c| c.0 == status)
}

pub fn ready(s: &EscClusterStatus) -> bool {
    is(s, "Ready", "True")
}

/// Polls the EscCluster until `pred` holds on its status; on timeout the error shows the
/// status and `context()` (e.g. the operator's log tail).
pub async fn wait_for(
    api: &Api<EscCluster>,
    name: &str,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&EscClusterStatus) -> bool,
    context: impl Fn() -> String,
) -> Result<EscClusterStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        let status = api.get(name).await?.status.unwrap_or_default();
        if pred(&status) {
            return Ok(status);
        }
        if Instant::now() > deadline {
            bail!(
                "EscCluster {name}: not {what} within {timeout:?}; status: {}\n{}",
                serde_json::to_string_pretty(&status)?,
                context()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
