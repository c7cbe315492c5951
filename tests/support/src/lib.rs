//! The test bed: real parts started on loopback for the tests, the benchmarks and the demo.
//!
//! Test infrastructure only. Every process it starts runs in its own process group and is
//! stopped when its handle drops — and, through [`process::ExitWatchdog`], also when the test
//! process dies without running destructors (a panic in a shared static, `abort`, SIGKILL).

pub mod certs;
pub mod cluster;
pub mod flux;
pub mod helm;
pub mod node;
pub mod operator;
pub mod operator_image;
pub mod process;
pub mod s3;
pub mod sshd;

/// The reader of `/proc` (processes, mounts) and `free_port`, for the tests too: they reach it
/// through the test bed and need no dependency of their own.
pub use host_procs;
