//! esc-operator: Cisco ESC maintenance, backup and restore as Kubernetes custom resources.
//!
//! The layout follows the dependency direction — outer layers use inner ones, never the reverse:
//! - [`api`]: the custom resource types (the CRDs are generated from them);
//! - [`esc`]: the ESC domain — escadm commands, output parsers, the SSH transport. No Kubernetes;
//! - [`access`]: `check-access`, what this identity may see of the operator's resources.

pub mod access;
pub mod api;
pub mod esc;
