//! esc-sim: a simulator of Cisco ESC's `escadm`, meant to be served by a real OpenSSH `sshd`.
//!
//! - [`model`]: the pure state machine (modes, services, HA roles, failover rule);
//! - [`formats`]: every string escadm prints (the assumed ones labelled so);
//! - [`store`]: the on-disk world (node state, faults, journal) under one lock;
//! - [`faults`]: fault injection per node and command;
//! - [`escadm`]: the `escadm` command itself (argv[0] = `escadm`);
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
pub mod store;
