//! Shared helpers of the simulator's tests against real sshd.

#![allow(dead_code)]

use esc_testbed::sshd::{SimEsc, SimSpec};

/// Starts a simulation with this crate's freshly built binary.
pub fn start(spec: SimSpec) -> SimEsc {
    SimEsc::start(spec.esc_sim_bin(env!("CARGO_BIN_EXE_esc-sim"))).expect("start simulated ESC")
}

pub fn standalone() -> SimEsc {
    start(SimSpec::standalone())
}

pub fn ha() -> SimEsc {
    start(SimSpec::ha())
}
