//! esc-operator: Cisco ESC maintenance, backup and restore as Kubernetes custom resources.
//!
//! Dependencies point one way — `cli → runtime → controller → plan → {api, esc}` and
//! `mover → {api, esc}` — and `tests/layering.rs` fails the build's tests when an import runs
//! against it:
//! - [`cli`]: the command line, one file per subcommand; nothing imports it;
//! - [`runtime`]: what every controller shares at run time — leader election, HTTP (`/healthz`,
//!   `/readyz`, `/metrics`), logging, shutdown;
//! - [`controller`]: one reconciler per kind, the shared context (Kubernetes client, Events,
//!   metrics, the SSH connection pool) and the I/O around the pure decisions;
//! - [`plan`]: the pure decisions (observed state in → actions and status out); no I/O;
//! - [`api`]: the custom resource types (the CRDs are generated from them);
//! - [`esc`]: the ESC domain — escadm commands, output parsers, the SSH transport. No Kubernetes;
//! - [`mover`]: runs inside the backup/restore Jobs — the artifact (manifest + tar), streamed;
//! - [`access`]: what this identity may see of the operator's resources (`check-access`).

pub mod access;
pub mod api;
pub mod cli;
pub mod controller;
pub mod esc;
pub mod mover;
pub mod plan;
pub mod runtime;
