//! Tests of the ESC domain as a whole: the error reasons across every module, and the direction
//! of the imports between the modules.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::*;

fn node() -> NodeAddr {
    NodeAddr::new("10.0.0.5", 22)
}

fn host_key_errors() -> Vec<HostKeyError> {
    let fingerprint = || "SHA256:x".to_owned();
    vec![
        HostKeyError::Unknown {
            node: node(),
            algorithm: "ssh-ed25519".into(),
            fingerprint: fingerprint(),
        },
        HostKeyError::Mismatch {
            node: node(),
            algorithm: "ssh-ed25519".into(),
            fingerprint: fingerprint(),
            known: String::new(),
        },
        HostKeyError::Revoked {
            node: node(),
            fingerprint: fingerprint(),
        },
        HostKeyError::CertificateUnsupported {
            node: node(),
            fingerprint: fingerprint(),
        },
    ]
}

/// One of every variant; wrapped errors once per variant of what they wrap.
fn ssh_errors() -> Vec<SshError> {
    let io = || std::io::Error::other("x");
    let command = || "cat -- /tmp/x".to_owned();
    let after = Duration::from_secs(1);
    let mut all = vec![
        SshError::InvalidPrivateKey { detail: "x".into() },
        SshError::Connect {
            node: node(),
            source: io(),
        },
        SshError::ConnectTimeout {
            node: node(),
            after,
        },
        SshError::Handshake {
            node: node(),
            message: "x".into(),
        },
        SshError::AuthRejected {
            node: node(),
            user: "admin".into(),
            method: "publickey",
            accepted: "none".into(),
        },
        SshError::AuthTimeout {
            node: node(),
            user: "admin".into(),
            after,
        },
        SshError::Exec {
            node: node(),
            command: command(),
            message: "x".into(),
        },
        SshError::CommandTimeout {
            node: node(),
            command: command(),
            after,
        },
        SshError::StreamStalled {
            node: node(),
            command: command(),
            after,
        },
        SshError::OutputTooLarge {
            node: node(),
            command: command(),
            stream: "stdout",
            limit: 1,
            head: String::new(),
        },
        SshError::ConnectionLost {
            node: node(),
            command: command(),
            detail: "x".into(),
            received: 0,
        },
        SshError::RemoteFailed {
            node: node(),
            command: command(),
            exit: "exit status 1".into(),
            stderr: String::new(),
        },
        SshError::SizeMismatch {
            node: node(),
            path: "/tmp/x".into(),
            expected: 2,
            actual: 1,
        },
        SshError::UnexpectedOutput {
            node: node(),
            command: "stat -c %s",
            expected: "one decimal number",
            output: String::new(),
        },
        SshError::Path(RemotePath::new("relative").unwrap_err()),
        SshError::LocalIo {
            context: "x".into(),
            source: io(),
        },
    ];
    all.extend(host_key_errors().into_iter().map(SshError::HostKey));
    all
}

fn escadm_failures() -> Vec<EscadmFailure> {
    vec![
        EscadmFailure::InFlightTransactions { count: Some(2) },
        EscadmFailure::NotInMaintenance,
        EscadmFailure::WrongRole,
        EscadmFailure::ServicesRunning,
        EscadmFailure::ServicesNotRunning,
        EscadmFailure::Usage,
        EscadmFailure::Io,
        EscadmFailure::Other,
    ]
}

fn driver_errors() -> Vec<DriverError> {
    let mut all = vec![
        DriverError::Parse {
            node: node(),
            source: parse::parse_status("").unwrap_err(),
        },
        DriverError::ModeNotReached {
            node: node(),
            wanted: OpMode::Maintenance,
            got: OpMode::Operation,
        },
        DriverError::BackupPathMismatch {
            node: node(),
            requested: "/tmp/a".into(),
            reported: "/tmp/b".into(),
        },
        DriverError::Path(RemotePath::new("relative").unwrap_err()),
    ];
    all.extend(ssh_errors().into_iter().map(DriverError::Ssh));
    all.extend(
        escadm_failures()
            .into_iter()
            .map(|kind| DriverError::Escadm {
                node: node(),
                command: "escadm backup".into(),
                kind,
                exit: "exit status 3".into(),
                message: String::new(),
            }),
    );
    all
}

/// Which variant a sample is: written without a wildcard, so that a new variant does not
/// compile until it has a sample here.
fn driver_variant(e: &DriverError) -> &'static str {
    match e {
        DriverError::Ssh(_) => "Ssh",
        DriverError::Parse { .. } => "Parse",
        DriverError::Escadm { .. } => "Escadm",
        DriverError::ModeNotReached { .. } => "ModeNotReached",
        DriverError::BackupPathMismatch { .. } => "BackupPathMismatch",
        DriverError::Path(_) => "Path",
    }
}

fn ssh_variant(e: &SshError) -> &'static str {
    match e {
        SshError::InvalidPrivateKey { .. } => "InvalidPrivateKey",
        SshError::Connect { .. } => "Connect",
        SshError::ConnectTimeout { .. } => "ConnectTimeout",
        SshError::HostKey(_) => "HostKey",
        SshError::Handshake { .. } => "Handshake",
        SshError::AuthRejected { .. } => "AuthRejected",
        SshError::AuthTimeout { .. } => "AuthTimeout",
        SshError::Exec { .. } => "Exec",
        SshError::CommandTimeout { .. } => "CommandTimeout",
        SshError::StreamStalled { .. } => "StreamStalled",
        SshError::OutputTooLarge { .. } => "OutputTooLarge",
        SshError::ConnectionLost { .. } => "ConnectionLost",
        SshError::RemoteFailed { .. } => "RemoteFailed",
        SshError::SizeMismatch { .. } => "SizeMismatch",
        SshError::UnexpectedOutput { .. } => "UnexpectedOutput",
        SshError::Path(_) => "Path",
        SshError::LocalIo { .. } => "LocalIo",
    }
}

fn is_camel_case(s: &str) -> bool {
    s.len() >= 2
        && s.starts_with(|c: char| c.is_ascii_uppercase())
        && s.chars().all(|c| c.is_ascii_alphanumeric())
        && s.chars().any(|c| c.is_ascii_lowercase())
}

/// Every reason of every error of the domain, by the variant (path) it stands for: each
/// CamelCase, and no two variants sharing one — a condition reason or a metric label must
/// tell them apart.
#[test]
fn reasons_are_camel_case_and_unique_per_variant() {
    let mut reasons: BTreeMap<&'static str, String> = BTreeMap::new();
    let mut add = |reason: &'static str, variant: String| {
        assert!(
            is_camel_case(reason),
            "{variant}: {reason:?} is not CamelCase"
        );
        if let Some(other) = reasons.insert(reason, variant.clone()) {
            assert_eq!(other, variant, "{reason:?} is the reason of two variants");
        }
    };
    for e in driver_errors() {
        let variant = match &e {
            DriverError::Ssh(inner) => match inner {
                SshError::HostKey(hk) => format!("Ssh::HostKey::{}", hk.reason()),
                // The same PathError, wrapped by either: one variant of meaning.
                SshError::Path(_) => "Path".to_owned(),
                other => format!("Ssh::{}", ssh_variant(other)),
            },
            DriverError::Escadm { kind, .. } => format!("Escadm::{kind:?}"),
            other => driver_variant(other).to_owned(),
        };
        add(e.reason(), variant);
    }
    add(
        "x".parse::<EscVersion>().unwrap_err().reason(),
        "VersionError".into(),
    );
    add(
        "x".parse::<Sha256Digest>().unwrap_err().reason(),
        "DigestError".into(),
    );

    // Every variant has a sample above.
    let drivers: std::collections::BTreeSet<_> =
        driver_errors().iter().map(driver_variant).collect();
    assert_eq!(drivers.len(), 6, "{drivers:?}");
    let sshs: std::collections::BTreeSet<_> = ssh_errors().iter().map(ssh_variant).collect();
    assert_eq!(sshs.len(), 17, "{sshs:?}");
    assert_eq!(host_key_errors().len(), 4);
    assert_eq!(escadm_failures().len(), 8);
    // Driver: ModeNotReached, BackupPathMismatch, Parse, Path; SSH: 15 of its own; host key:
    // 4; escadm: 8; version and digest: 2.
    assert_eq!(reasons.len(), 4 + 15 + 4 + 8 + 2, "{reasons:#?}");
}

#[test]
fn camel_case_check_itself() {
    assert!(is_camel_case("HostKeyMismatch"));
    assert!(!is_camel_case("host_key"));
    assert!(!is_camel_case("HOSTKEY"));
    assert!(!is_camel_case("Host Key"));
}

#[test]
fn errors_name_their_node() {
    for e in driver_errors() {
        let msg = e.to_string();
        if let Some(n) = e.node() {
            assert_eq!(n, &node());
            assert!(msg.contains("10.0.0.5 port 22"), "{msg}");
        }
    }
}

/// Every source file of the domain, by module. A file missing here fails
/// `every_module_is_checked`.
const SOURCES: &[(&str, &str)] = &[
    ("detached", include_str!("detached.rs")),
    ("driver", include_str!("driver.rs")),
    ("escadm", include_str!("escadm.rs")),
    ("history", include_str!("history.rs")),
    ("known_hosts", include_str!("known_hosts.rs")),
    ("mod", include_str!("mod.rs")),
    ("parse", include_str!("parse.rs")),
    ("remote", include_str!("remote.rs")),
    ("ssh", include_str!("ssh/mod.rs")),
    ("ssh/credentials", include_str!("ssh/credentials.rs")),
    ("ssh/error", include_str!("ssh/error.rs")),
    ("ssh/exec", include_str!("ssh/exec.rs")),
    ("ssh/host_key", include_str!("ssh/host_key.rs")),
    ("ssh/session", include_str!("ssh/session.rs")),
    ("ssh/transfer", include_str!("ssh/transfer.rs")),
    ("tests", include_str!("tests.rs")),
    ("text", include_str!("text.rs")),
    ("version", include_str!("version.rs")),
    ("vocab", include_str!("vocab.rs")),
];

/// The modules a source imports with `use crate::esc::…` (`ssh/x` for a file of the transport,
/// `ssh` for its re-exports).
fn imports(source: &str) -> BTreeSet<String> {
    source
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            l.strip_prefix("pub ")
                .unwrap_or(l)
                .strip_prefix("use crate::esc::")
        })
        .map(|path| {
            let mut parts = path.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
            let first = parts.next().unwrap_or_default();
            let second = parts.find(|p| !p.is_empty()).unwrap_or_default();
            let child = [
                "credentials",
                "error",
                "exec",
                "host_key",
                "session",
                "transfer",
            ];
            if first == "ssh" && child.contains(&second) {
                format!("ssh/{second}")
            } else {
                first.to_owned()
            }
        })
        .collect()
}

fn import_graph() -> BTreeMap<&'static str, BTreeSet<String>> {
    SOURCES
        .iter()
        .filter(|(m, _)| !matches!(*m, "mod" | "tests"))
        .map(|(m, src)| (*m, imports(src)))
        .collect()
}

#[test]
fn every_module_is_checked() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/esc");
    let mut found = BTreeSet::new();
    for sub in ["", "ssh"] {
        for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if let Some(stem) = name.strip_suffix(".rs") {
                let module = match (sub, stem) {
                    ("ssh", "mod") => "ssh".to_owned(),
                    ("ssh", s) => format!("ssh/{s}"),
                    (_, s) => s.to_owned(),
                };
                found.insert(module);
            }
        }
    }
    let listed: BTreeSet<String> = SOURCES.iter().map(|(m, _)| m.to_string()).collect();
    assert_eq!(found, listed);
}

/// The layering the module headers promise: leaves import nothing of the domain, the transport
/// never the parsers, nothing the driver, and no circle anywhere.
#[test]
fn imports_point_one_way() {
    let graph = import_graph();
    assert_eq!(
        graph["ssh/transfer"],
        [
            "remote",
            "ssh/error",
            "ssh/exec",
            "ssh/session",
            "text",
            "vocab"
        ]
        .map(String::from)
        .into()
    );
    for leaf in ["text", "vocab"] {
        assert!(graph[leaf].is_empty(), "{leaf} imports {:?}", graph[leaf]);
    }
    for (module, deps) in &graph {
        assert!(!deps.contains("driver"), "{module} imports the driver");
        if module.starts_with("ssh") {
            for banned in ["parse", "escadm", "version"] {
                assert!(!deps.contains(banned), "{module} imports {banned}");
            }
        }
        if !module.starts_with("ssh") && *module != "driver" {
            assert!(
                !deps.iter().any(|d| d.starts_with("ssh")),
                "{module} imports the transport"
            );
        }
    }
    // No circle: peel off modules whose imports are all peeled already. `ssh` (the re-exports)
    // stands for all of its files.
    let deps_of = |m: &str| -> Vec<String> {
        graph[m]
            .iter()
            .flat_map(|d| {
                if d == "ssh" {
                    graph
                        .keys()
                        .filter(|k| k.starts_with("ssh/"))
                        .map(|k| k.to_string())
                        .collect()
                } else {
                    vec![d.clone()]
                }
            })
            .collect()
    };
    let mut done: BTreeSet<String> = BTreeSet::new();
    while done.len() < graph.len() {
        let ready: Vec<&str> = graph
            .keys()
            .copied()
            .filter(|m| !done.contains(*m) && deps_of(m).iter().all(|d| done.contains(d)))
            .collect();
        assert!(
            !ready.is_empty(),
            "import circle among {:?}",
            graph
                .keys()
                .filter(|m| !done.contains(**m))
                .collect::<Vec<_>>()
        );
        done.extend(ready.into_iter().map(String::from));
    }
}

#[test]
fn the_import_scan_sees_what_it_must() {
    let src = "use crate::esc::ssh::exec::{A, B};\npub use crate::esc::vocab::X;\n    use crate::esc::ssh::{\n// use crate::esc::driver::Z;\n";
    assert_eq!(
        imports(src),
        ["ssh", "ssh/exec", "vocab"].map(String::from).into()
    );
}
