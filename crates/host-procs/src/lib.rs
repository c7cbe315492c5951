//! What the test bed reads about the Linux host it runs on: the process table (`/proc/<pid>`),
//! the mounts (`/proc/self/mountinfo`) and free TCP ports.
//!
//! One reader for the harness (`esc-testbed`), the simulator (`esc-sim`) and the tests, so that
//! `/proc` is parsed in one place, with unit tests for the awkward cases (a command name with
//! spaces and parentheses, an escaped mount point). A leaf crate: std only, no other crate of
//! the workspace, so anything may depend on it.
//!
//! Reads are snapshots of a moving system: a process listed a moment ago may be gone when its
//! `cmdline` is read, and its pid may be reused. Callers that act on a pid (signal it) accept
//! that, as every process tool does.

mod mounts;
mod net;
mod process;

pub use mounts::{mount_points, mounts_under, parse_mount_point};
pub use net::free_port;
pub use process::{
    Environ, Process, cmdline, descendants, environ, is_alive, parse_stat, process, processes,
    proportional_bytes, resident_bytes, status_number,
};
