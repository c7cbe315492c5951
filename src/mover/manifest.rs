//! The artifact's manifest: `manifest.json`, the first member of every backup archive. It names
//! the cluster and its nodes, the ESC version, when the backup was taken, and each member's path,
//! kind, size and SHA-256 — so a restore knows what it holds before reading any of it.
//!
//! Owns: [`Manifest`] (the current schema, format version [`FORMAT_VERSION`]), its validation,
//! [`parse_manifest`] (every format version this build reads) and [`ManifestError`]. Imports the
//! ESC vocabulary ([`EscVersion`], [`HaRole`], [`Sha256Digest`]) and [`crate::api::Time`];
//! no I/O. The format is documented in `docs/artifact-format.md`; a test parses that page's
//! example, so the page and the code cannot drift apart.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use crate::api::Time;
use crate::esc::{EscVersion, HaRole, RemotePath, Sha256Digest};

/// The format version this build writes, and the newest it reads.
///
/// Every change to the manifest's schema or to the archive layout bumps it: readers refuse
/// fields they do not know (fail closed), so a compatible-looking addition is still a new
/// version. When it is bumped, the version-1 schema moves to its own module and
/// [`parse_manifest`] converts it into the new [`Manifest`]: a restore reads every older format.
pub const FORMAT_VERSION: u32 = 1;

/// The manifest's path in the archive; always the first member.
pub const MANIFEST_PATH: &str = "manifest.json";

/// The largest manifest a reader accepts. A real one is a few KiB; the bound keeps a hostile or
/// corrupt archive from making the reader allocate without limit.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// The longest path a member may have in the archive: what a ustar header's name field holds,
/// so no member needs an extended header for its name.
pub const MAX_MEMBER_PATH: usize = 100;

/// What a manifest says about a backup artifact (format version [`FORMAT_VERSION`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    /// The format version this manifest was written in (see [`FORMAT_VERSION`]).
    pub format_version: u32,
    /// The EscCluster the backup was taken from.
    pub cluster: ClusterRef,
    /// The cluster's nodes and their roles at backup time.
    pub nodes: Vec<NodeEntry>,
    /// The ESC version of the master (or standalone node) the database was taken from; restore
    /// refuses to go back to an older ESC.
    #[serde(with = "version_text")]
    pub esc_version: EscVersion,
    /// When the backup began (maintenance entered, before the first escadm command).
    pub created_at: Time,
    /// When every member was ready on its node and its SHA-256 taken: the artifact's content
    /// is fixed from this moment. The upload that follows is not recorded here (the manifest is
    /// written before it); the EscBackup's status records it.
    pub finished_at: Time,
    /// The members after the manifest, in archive order.
    pub members: Vec<Member>,
}

/// The EscCluster a backup belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterRef {
    pub namespace: String,
    pub name: String,
}

/// One ESC node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeEntry {
    /// The node's name in the EscCluster's spec.
    pub name: String,
    pub role: NodeRole,
}

/// A node's HA role at backup time, spelled as `escadm status --v` prints it.
///
/// The artifact format's own type, not the CRD's: a change to the custom resources must not
/// change what older artifacts mean. There is no "unknown": a backup is only taken from nodes
/// whose role is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum NodeRole {
    Master,
    Backup,
    Standalone,
}

impl TryFrom<HaRole> for NodeRole {
    type Error = ManifestError;

    fn try_from(role: HaRole) -> Result<Self, Self::Error> {
        match role {
            HaRole::Master => Ok(NodeRole::Master),
            HaRole::Backup => Ok(NodeRole::Backup),
            HaRole::Standalone => Ok(NodeRole::Standalone),
            HaRole::Unknown => Err(ManifestError::invalid(
                "a node's HA role is unknown; a backup records only known roles",
            )),
        }
    }
}

/// What a member holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MemberKind {
    /// The `escadm backup` archive of the master (or standalone node). Exactly one.
    Database,
    /// One node's `escadm log collect` archive. Zero or one per node.
    Logs,
    /// The dynamic mapping file, when the node has one. At most one.
    DynamicMapping,
}

impl MemberKind {
    /// The folder of this kind's members in the archive, and the stem of their names.
    fn folder(self) -> &'static str {
        match self {
            MemberKind::Database => "database",
            MemberKind::Logs => "logs",
            MemberKind::DynamicMapping => "dynamic-mapping",
        }
    }
}

impl fmt::Display for MemberKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.folder())
    }
}

/// One file of the archive after the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Member {
    /// Unique in the artifact: `database`, `dynamic-mapping`, or `logs-NODE`.
    pub name: String,
    /// The member's path in the tar archive (see [`Member::new`] for the layout).
    pub path: String,
    pub kind: MemberKind,
    /// Size in bytes.
    pub size: u64,
    /// Hex SHA-256 of the member's bytes, as `sha256sum` on the node computed it before the
    /// transfer; the archive writer refuses bytes that do not match it.
    #[serde(with = "digest_hex")]
    pub sha256: Sha256Digest,
    /// The name of the node the file was taken from (one of the manifest's `nodes`).
    pub source_node: String,
}

impl Member {
    /// A member of `kind` taken from `source` on `node`, with its size and SHA-256 as the node
    /// reported them. The layout lives here, in one place:
    /// - `database/FILE` (name `database`),
    /// - `logs/NODE/FILE` (name `logs-NODE`),
    /// - `dynamic-mapping/FILE` (name `dynamic-mapping`),
    ///
    /// where `FILE` is the last component of `source`.
    pub fn new(
        kind: MemberKind,
        node: &str,
        source: &RemotePath,
        size: u64,
        sha256: Sha256Digest,
    ) -> Result<Member, ManifestError> {
        let file = source.as_str().rsplit('/').next().unwrap_or_default();
        let (name, path) = match kind {
            MemberKind::Logs => (format!("logs-{node}"), format!("logs/{node}/{file}")),
            other => (
                other.folder().to_owned(),
                format!("{}/{file}", other.folder()),
            ),
        };
        check_name("member name", &name)?;
        check_path(&path)?;
        Ok(Member {
            name,
            path,
            kind,
            size,
            sha256,
            source_node: node.to_owned(),
        })
    }
}

/// A manifest this build cannot accept.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ManifestError {
    /// Not JSON, or no usable `formatVersion`: not a manifest of this format at all.
    #[error("the artifact's manifest is unreadable: {detail}")]
    Unreadable { detail: String },
    /// Written by a newer esc-operator.
    #[error(
        "the artifact's format version {found} is newer than this esc-operator reads (1 to {supported}); restore it with a newer esc-operator"
    )]
    NewerFormat { found: u64, supported: u32 },
    /// A known format version, but the content breaks its schema or its rules.
    #[error("the artifact's manifest is invalid: {detail}")]
    Invalid { detail: String },
}

impl ManifestError {
    fn invalid(detail: impl Into<String>) -> Self {
        ManifestError::Invalid {
            detail: detail.into(),
        }
    }

    /// A short, stable CamelCase reason: a Kubernetes condition reason and a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            ManifestError::Unreadable { .. } => "ManifestUnreadable",
            ManifestError::NewerFormat { .. } => "ArtifactFormatTooNew",
            ManifestError::Invalid { .. } => "ManifestInvalid",
        }
    }
}

/// Reads a manifest of any format version this build reads (today: 1), and checks its rules
/// ([`Manifest::validate`]). A newer version is refused with [`ManifestError::NewerFormat`]
/// before anything else of it is read; so are unknown fields, missing fields and broken rules.
pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest, ManifestError> {
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(ManifestError::Unreadable {
            detail: format!(
                "{} bytes, more than the {MAX_MANIFEST_BYTES} a manifest may have",
                bytes.len()
            ),
        });
    }
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ManifestError::Unreadable {
            detail: format!("not JSON: {e}"),
        })?;
    // The version first, on its own: a newer format may have changed everything else, and its
    // reader deserves "too new", not a complaint about a field it renamed.
    let version = match value.get("formatVersion") {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        _ => None,
    }
    .ok_or_else(|| ManifestError::Unreadable {
        detail: "no formatVersion (a positive integer)".into(),
    })?;
    let manifest: Manifest = match version {
        1 => serde_json::from_value(value).map_err(|e| ManifestError::invalid(e.to_string()))?,
        v if v > u64::from(FORMAT_VERSION) => {
            return Err(ManifestError::NewerFormat {
                found: v,
                supported: FORMAT_VERSION,
            });
        }
        v => {
            return Err(ManifestError::Unreadable {
                detail: format!("formatVersion {v} was never written by esc-operator"),
            });
        }
    };
    manifest.validate()?;
    Ok(manifest)
}

impl Manifest {
    /// The manifest's bytes in the archive: pretty JSON (a person reads it with
    /// `tar -xOf ARTIFACT manifest.json`), ending in a newline. Refuses a manifest that breaks
    /// the rules: nothing writes an artifact its own restore would refuse.
    pub fn to_json(&self) -> Result<Vec<u8>, ManifestError> {
        if self.format_version != FORMAT_VERSION {
            return Err(ManifestError::invalid(format!(
                "this build writes format version {FORMAT_VERSION}, not {}",
                self.format_version
            )));
        }
        self.validate()?;
        let mut out =
            serde_json::to_vec_pretty(self).map_err(|e| ManifestError::invalid(e.to_string()))?;
        out.push(b'\n');
        if out.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(ManifestError::invalid(format!(
                "{} bytes of manifest, more than the {MAX_MANIFEST_BYTES} a reader accepts",
                out.len()
            )));
        }
        Ok(out)
    }

    /// The member called `name`.
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }

    /// The database backup (a valid manifest has exactly one).
    pub fn database(&self) -> Option<&Member> {
        self.members.iter().find(|m| m.kind == MemberKind::Database)
    }

    /// The rules beyond the schema: each one is a way a reader could otherwise be misled.
    pub fn validate(&self) -> Result<(), ManifestError> {
        let node_names = self.validate_header()?;
        self.validate_members(&node_names)
    }

    /// The rules on everything but the members (a mover request's manifest has none yet);
    /// returns the node names.
    pub(crate) fn validate_header(&self) -> Result<HashSet<&str>, ManifestError> {
        check_name("cluster namespace", &self.cluster.namespace)?;
        check_name("cluster name", &self.cluster.name)?;
        if self.nodes.is_empty() {
            return Err(ManifestError::invalid("no nodes"));
        }
        let mut node_names = HashSet::new();
        for node in &self.nodes {
            check_name("node name", &node.name)?;
            if !node_names.insert(node.name.as_str()) {
                return Err(ManifestError::invalid(format!(
                    "node {:?} is listed twice",
                    node.name
                )));
            }
        }
        if self.finished_at < self.created_at {
            return Err(ManifestError::invalid("finishedAt is before createdAt"));
        }
        Ok(node_names)
    }

    fn validate_members(&self, node_names: &HashSet<&str>) -> Result<(), ManifestError> {
        let mut names = HashSet::new();
        let mut paths = HashSet::new();
        for m in &self.members {
            check_name("member name", &m.name)?;
            check_path(&m.path)?;
            if !names.insert(m.name.as_str()) {
                return Err(ManifestError::invalid(format!(
                    "two members are named {:?}",
                    m.name
                )));
            }
            if !paths.insert(m.path.as_str()) {
                return Err(ManifestError::invalid(format!(
                    "two members have the path {:?}",
                    m.path
                )));
            }
            if !node_names.contains(m.source_node.as_str()) {
                return Err(ManifestError::invalid(format!(
                    "member {:?} comes from node {:?}, which is not among the nodes",
                    m.name, m.source_node
                )));
            }
        }
        let count = |kind| self.members.iter().filter(|m| m.kind == kind).count();
        match count(MemberKind::Database) {
            1 => {}
            n => {
                return Err(ManifestError::invalid(format!(
                    "{n} database members; exactly one is required"
                )));
            }
        }
        if count(MemberKind::DynamicMapping) > 1 {
            return Err(ManifestError::invalid(
                "more than one dynamic mapping member",
            ));
        }
        Ok(())
    }
}

/// Names (cluster, namespace, nodes, members): what a Kubernetes name may hold — lower-case
/// letters, digits, `-` and `.`, starting and ending with a letter or digit.
fn check_name(what: &str, name: &str) -> Result<(), ManifestError> {
    let ok_char = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.';
    let ok_edge = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = name.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 253
        && bytes.iter().all(|&b| ok_char(b))
        && ok_edge(bytes[0])
        && ok_edge(bytes[bytes.len() - 1]);
    if ok {
        Ok(())
    } else {
        Err(ManifestError::invalid(format!(
            "{what} {name:?} is not a name (lower-case letters, digits, '-' and '.')"
        )))
    }
}

/// Member paths are relative, plain and short: components of letters, digits, `.`, `_` and `-`
/// (never `.` or `..`) joined by `/`, at most [`MAX_MEMBER_PATH`] bytes, never the manifest's.
/// An extracting `tar` therefore never writes outside its folder.
fn check_path(path: &str) -> Result<(), ManifestError> {
    let ok_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    let ok = !path.is_empty()
        && path.len() <= MAX_MEMBER_PATH
        && path != MANIFEST_PATH
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && c.bytes().all(ok_char));
    if ok {
        Ok(())
    } else {
        Err(ManifestError::invalid(format!(
            "member path {path:?} is not a relative path of at most {MAX_MEMBER_PATH} bytes of letters, digits, '.', '_', '-' and '/'"
        )))
    }
}

/// `Sha256Digest` as 64 lower-case hex digits.
pub(crate) mod digest_hex {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Sha256Digest, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(d)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Sha256Digest, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// `EscVersion` as its dotted text.
mod version_text {
    use super::*;

    pub fn serialize<S: Serializer>(v: &EscVersion, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<EscVersion, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::{Value, json};

    pub(crate) fn digest_of(bytes: &[u8]) -> Sha256Digest {
        use sha2::{Digest, Sha256};
        Sha256Digest(Sha256::digest(bytes).into())
    }

    fn time(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    /// An HA cluster's manifest with the given members (all from `esc-0`, the master).
    pub(crate) fn manifest_with(members: Vec<Member>) -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            cluster: ClusterRef {
                namespace: "esc".into(),
                name: "prod".into(),
            },
            nodes: vec![
                NodeEntry {
                    name: "esc-0".into(),
                    role: NodeRole::Master,
                },
                NodeEntry {
                    name: "esc-1".into(),
                    role: NodeRole::Backup,
                },
            ],
            esc_version: "5.10.0.86".parse().unwrap(),
            created_at: time("2026-11-20T10:00:00Z"),
            finished_at: time("2026-11-20T10:04:31Z"),
            members,
        }
    }

    pub(crate) fn member(kind: MemberKind, node: &str, file: &str, data: &[u8]) -> Member {
        let path = RemotePath::new(format!("/var/tmp/{file}")).unwrap();
        Member::new(kind, node, &path, data.len() as u64, digest_of(data)).unwrap()
    }

    fn sample() -> Manifest {
        manifest_with(vec![
            member(MemberKind::Database, "esc-0", "esc-db.tar.bz2", b"db"),
            member(
                MemberKind::Logs,
                "esc-1",
                "esc_log-1.tar.bz2",
                b"standby logs",
            ),
            member(
                MemberKind::Logs,
                "esc-0",
                "esc_log-2.tar.bz2",
                b"master logs",
            ),
            member(
                MemberKind::DynamicMapping,
                "esc-0",
                "dynamic_mappings.xml",
                b"<m/>",
            ),
        ])
    }

    fn sample_json() -> Value {
        serde_json::from_slice(&sample().to_json().unwrap()).unwrap()
    }

    fn parse_value(v: &Value) -> Result<Manifest, ManifestError> {
        parse_manifest(&serde_json::to_vec(v).unwrap())
    }

    #[test]
    fn round_trips() {
        let m = sample();
        let bytes = m.to_json().unwrap();
        assert!(bytes.ends_with(b"}\n"));
        assert_eq!(parse_manifest(&bytes).unwrap(), m);
        assert_eq!(m.database().unwrap().path, "database/esc-db.tar.bz2");
        assert_eq!(
            m.member("logs-esc-1").unwrap().path,
            "logs/esc-1/esc_log-1.tar.bz2"
        );
        assert_eq!(
            m.member("dynamic-mapping").unwrap().path,
            "dynamic-mapping/dynamic_mappings.xml"
        );
    }

    /// The wire spelling, pinned: every field name, the role and kind words, hex digests,
    /// times in RFC 3339.
    #[test]
    fn spells_the_v1_fields() {
        let v = sample_json();
        assert_eq!(v["formatVersion"], json!(1));
        assert_eq!(v["cluster"], json!({"namespace": "esc", "name": "prod"}));
        assert_eq!(v["nodes"][1], json!({"name": "esc-1", "role": "BACKUP"}));
        assert_eq!(v["escVersion"], json!("5.10.0.86"));
        assert_eq!(v["createdAt"], json!("2026-11-20T10:00:00Z"));
        assert_eq!(v["finishedAt"], json!("2026-11-20T10:04:31Z"));
        assert_eq!(
            v["members"][0],
            json!({
                "name": "database",
                "path": "database/esc-db.tar.bz2",
                "kind": "Database",
                "size": 2,
                "sha256": digest_of(b"db").to_string(),
                "sourceNode": "esc-0",
            })
        );
        assert_eq!(v["members"][3]["kind"], json!("DynamicMapping"));
    }

    /// The example in docs/artifact-format.md is a valid version-1 manifest: the page cannot
    /// describe a format the code does not read.
    #[test]
    fn the_documented_example_parses() {
        let page = include_str!("../../docs/artifact-format.md");
        let start = page.find("```json\n").expect("a json block") + "```json\n".len();
        let end = start + page[start..].find("```").unwrap();
        let m = parse_manifest(&page.as_bytes()[start..end]).unwrap();
        assert_eq!(m.format_version, 1);
        assert_eq!(m.database().unwrap().source_node, "esc-0");
        assert_eq!(m.members.len(), 4);
    }

    #[test]
    fn a_newer_format_is_refused_before_anything_else_is_read() {
        // Everything else of a version-2 manifest may differ; the answer is still "too new".
        let err =
            parse_manifest(br#"{"formatVersion": 2, "artifact": {"whatever": true}}"#).unwrap_err();
        assert_eq!(
            err,
            ManifestError::NewerFormat {
                found: 2,
                supported: 1
            }
        );
        assert_eq!(err.reason(), "ArtifactFormatTooNew");
        assert!(err.to_string().contains("newer esc-operator"), "{err}");
        let mut v = sample_json();
        v["formatVersion"] = json!(u64::MAX);
        assert!(matches!(
            parse_value(&v),
            Err(ManifestError::NewerFormat { .. })
        ));
    }

    #[test]
    fn a_missing_or_odd_version_is_refused() {
        for bad in [json!(0), json!("1"), json!(1.5), json!(-1), json!(null)] {
            let mut v = sample_json();
            v["formatVersion"] = bad.clone();
            let err = parse_value(&v).unwrap_err();
            assert_eq!(err.reason(), "ManifestUnreadable", "{bad}: {err}");
        }
        let mut v = sample_json();
        v.as_object_mut().unwrap().remove("formatVersion");
        assert_eq!(parse_value(&v).unwrap_err().reason(), "ManifestUnreadable");
        assert_eq!(
            parse_manifest(b"not json").unwrap_err().reason(),
            "ManifestUnreadable"
        );
        assert_eq!(
            parse_manifest(b"[1]").unwrap_err().reason(),
            "ManifestUnreadable"
        );
    }

    #[test]
    fn missing_fields_are_refused() {
        for (pointer, field) in [
            ("", "cluster"),
            ("", "nodes"),
            ("", "escVersion"),
            ("", "createdAt"),
            ("", "finishedAt"),
            ("", "members"),
            ("/cluster", "namespace"),
            ("/nodes/0", "role"),
            ("/members/0", "sha256"),
            ("/members/0", "size"),
            ("/members/0", "kind"),
            ("/members/0", "sourceNode"),
            ("/members/0", "path"),
        ] {
            let mut v = sample_json();
            v.pointer_mut(pointer)
                .unwrap()
                .as_object_mut()
                .unwrap()
                .remove(field)
                .unwrap();
            let err = parse_value(&v).unwrap_err();
            assert_eq!(err.reason(), "ManifestInvalid", "{pointer}/{field}: {err}");
            assert!(err.to_string().contains(field), "{field}: {err}");
        }
    }

    /// Fail closed: a field this version does not define means a writer this reader does not
    /// know, so nothing in the manifest can be trusted to mean what the reader thinks.
    #[test]
    fn unknown_fields_are_refused() {
        for pointer in ["", "/cluster", "/nodes/0", "/members/1"] {
            let mut v = sample_json();
            v.pointer_mut(pointer)
                .unwrap()
                .as_object_mut()
                .unwrap()
                .insert("encrypted".into(), json!(true));
            let err = parse_value(&v).unwrap_err();
            assert!(
                err.to_string().contains("unknown field"),
                "{pointer}: {err}"
            );
        }
    }

    #[test]
    fn bad_values_are_refused() {
        let cases: Vec<(&str, Value, &str)> = vec![
            ("/members/0/sha256", json!("abc"), "SHA-256"),
            ("/members/0/size", json!(-1), "-1"),
            ("/members/0/kind", json!("Config"), "Config"),
            ("/nodes/0/role", json!("UNKNOWN"), "UNKNOWN"),
            ("/escVersion", json!("five"), "ESC version"),
            ("/createdAt", json!("yesterday"), ""),
        ];
        for (pointer, value, needle) in cases {
            let mut v = sample_json();
            *v.pointer_mut(pointer).unwrap() = value;
            let err = parse_value(&v).unwrap_err();
            assert_eq!(err.reason(), "ManifestInvalid", "{pointer}: {err}");
            assert!(err.to_string().contains(needle), "{pointer}: {err}");
        }
    }

    #[test]
    fn broken_rules_are_refused() {
        type Edit = fn(&mut Manifest);
        let cases: &[(&str, Edit)] = &[
            ("no nodes", |m| m.nodes.clear()),
            ("listed twice", |m| m.nodes[1].name = "esc-0".into()),
            ("not among the nodes", |m| {
                m.members[1].source_node = "esc-9".into()
            }),
            ("0 database members", |m| {
                m.members.remove(0);
            }),
            ("2 database members", |m| {
                let mut extra = m.members[0].clone();
                extra.name = "database-2".into();
                extra.path = "database/second".into();
                m.members.push(extra);
            }),
            ("more than one dynamic mapping", |m| {
                let mut extra = m.members[3].clone();
                extra.name = "dynamic-mapping-2".into();
                extra.path = "dynamic-mapping/second".into();
                m.members.push(extra);
            }),
            ("named \"database\"", |m| {
                m.members[1].name = "database".into()
            }),
            ("the path", |m| {
                m.members[1].path = m.members[2].path.clone()
            }),
            ("member path", |m| {
                m.members[1].path = "../etc/passwd".into()
            }),
            ("member path", |m| m.members[1].path = "/etc/passwd".into()),
            ("member path", |m| m.members[1].path = "logs//x".into()),
            ("member path", |m| m.members[1].path = "logs/./x".into()),
            ("member path", |m| m.members[1].path = "logs/a b".into()),
            ("member path", |m| m.members[1].path = MANIFEST_PATH.into()),
            ("member path", |m| m.members[1].path = "x".repeat(101)),
            ("member name", |m| m.members[1].name = "Logs".into()),
            ("cluster name", |m| m.cluster.name = String::new()),
            ("cluster namespace", |m| m.cluster.namespace = "-esc".into()),
            ("finishedAt is before", |m| {
                m.finished_at = time("2026-11-20T09:59:59Z")
            }),
        ];
        for (needle, edit) in cases {
            let mut m = sample();
            edit(&mut m);
            let err = m.to_json().unwrap_err();
            assert!(err.to_string().contains(needle), "{needle}: {err}");
            // What the writer refuses, the reader refuses too.
            let raw = serde_json::to_vec(&m).unwrap();
            assert_eq!(parse_manifest(&raw).unwrap_err(), err, "{needle}");
        }
        let mut m = sample();
        m.format_version = 2;
        assert!(m.to_json().is_err(), "this build writes version 1 only");
    }

    #[test]
    fn oversized_manifests_are_refused_unread() {
        let mut raw = br#"{"formatVersion": 1, "pad": ""#.to_vec();
        raw.resize(MAX_MANIFEST_BYTES as usize + 1, b' ');
        let err = parse_manifest(&raw).unwrap_err();
        assert!(err.to_string().contains("more than"), "{err}");
    }

    #[test]
    fn member_layout_and_roles() {
        let src = RemotePath::new("/var/tmp/esc_log-20261120.tar.bz2").unwrap();
        let m = Member::new(MemberKind::Logs, "esc-1", &src, 7, digest_of(b"x")).unwrap();
        assert_eq!(
            (m.name.as_str(), m.path.as_str()),
            ("logs-esc-1", "logs/esc-1/esc_log-20261120.tar.bz2")
        );
        let odd = RemotePath::new("/var/tmp/has space").unwrap();
        assert!(Member::new(MemberKind::Database, "esc-0", &odd, 1, digest_of(b"")).is_err());
        assert_eq!(
            NodeRole::try_from(HaRole::Backup).unwrap(),
            NodeRole::Backup
        );
        assert!(NodeRole::try_from(HaRole::Unknown).is_err());
    }
}
