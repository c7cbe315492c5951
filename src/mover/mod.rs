//! The data mover: what runs inside a backup or restore Job, where an operator restart does not
//! cut a long transfer. Today it owns the artifact: one tar archive, `manifest.json` first, then
//! the database backup, the logs and the dynamic mapping file, streamed from the ESC nodes over
//! SSH straight into the sink, never copied whole to the Job's disk or memory. The format is
//! documented in `docs/artifact-format.md`.
//!
//! Modules, and what each may import (`tests/layering.rs` holds the layer's edges: the mover
//! uses [`crate::esc`] and [`crate::api`] types, never the controllers, plans, runtime, command
//! line or a Kubernetes client):
//! ```text
//! manifest → esc (vocabulary), api (Time)                (the schema; pure)
//! ```
//!
//! The manifest comes first in the archive but holds every member's size and SHA-256, so both
//! are taken on the node before the transfer (`stat`, `sha256sum`).

pub mod manifest;

pub use manifest::{
    ClusterRef, FORMAT_VERSION, MANIFEST_PATH, Manifest, ManifestError, Member, MemberKind,
    NodeEntry, NodeRole, parse_manifest,
};
