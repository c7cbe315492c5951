//! PURE decisions: observed state + the resource's status in, the next action and the new
//! status out. No I/O, no clock reads, no randomness — the caller passes `now` and every
//! observation — so each rule is a unit test without a server.
//!
//! May import: [`crate::api`] (the resource types) and the pure parts of [`crate::esc`] (parsed
//! escadm values). Must not import a Kubernetes client, tokio, russh, or anything above it
//! (`controller`, `runtime`, `cli`); `tests/layering.rs` holds that.

pub mod backup;
pub mod cluster;
pub mod conditions;
pub mod cron;
pub mod report;
pub mod restore;
pub mod run;
pub mod schedule;
