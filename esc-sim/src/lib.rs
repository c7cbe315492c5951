//! esc-sim: a simulator of Cisco ESC's `escadm`, meant to be served by a real OpenSSH `sshd`.
//!
//! - [`model`]: the pure state machine (modes, services, HA roles, failover rule); it answers
//!   in types (outcomes, refusals), never in text;
//! - [`reply`]: what one escadm run answers, typed (a report, or a failure and what it began);
//! - [`formats`]: the renderer: every string and exit code escadm prints, made from those types
//!   (the assumed ones labelled so);
//! - [`store`]: the on-disk world (node state, faults, journal) under one lock;
//! - [`faults`]: fault injection per node and command;
//! - [`escadm`]: the `escadm` command itself (argv[0] = `escadm`); its core runs in-process too;
//! - [`provision`]: creating node directories, keys and sshd configs (used by the test harness
//!   in `esc-testbed` and by `esc-sim up`).
//!
//! See README.md for the layout, the rules and the assumed formats.

pub mod cli;
pub mod escadm;
pub mod faults;
pub mod formats;
pub mod model;
pub mod northbound;
pub mod provision;
pub mod reply;
pub mod store;
