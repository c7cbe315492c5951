//! The dependency direction holds: `cli → runtime → controller → plan → {api, esc}` and
//! `mover → {api, esc}`, and nothing imports `cli`. Read from the source text, so it fails the moment a file reaches the
//! wrong way (a `use` line or an inline path), without waiting for a design review.

use std::path::{Path, PathBuf};

/// What the files under a folder of `src/` must not mention, and why.
struct Rule {
    layer: &'static str,
    forbidden: &'static [&'static str],
    why: &'static str,
}

const RULES: &[Rule] = &[
    Rule {
        layer: "esc",
        forbidden: &[
            "kube",
            "kube_lease_manager",
            "k8s_openapi",
            "crate::api",
            "crate::plan",
            "crate::controller",
            "crate::runtime",
            "crate::cli",
            "prometheus_client",
            "axum",
        ],
        why: "the ESC domain knows nothing of Kubernetes or of the layers above it",
    },
    Rule {
        layer: "api",
        forbidden: &[
            "crate::esc",
            "crate::plan",
            "crate::controller",
            "crate::runtime",
            "crate::cli",
            "tokio",
            "russh",
            "kube::Client",
            "kube::Api",
            "kube::runtime",
        ],
        why: "the resource types are data: no I/O, no domain logic",
    },
    Rule {
        layer: "plan",
        forbidden: &[
            "tokio",
            "russh",
            "kube::Client",
            "kube::Api",
            "kube::api",
            "kube::runtime",
            "crate::controller",
            "crate::runtime",
            "crate::cli",
            "EscNode",
            "SshSession",
            "std::time::Instant",
            "SystemTime::now",
            "Timestamp::now",
            "rand::",
            "std::fs",
            "prometheus_client",
            "axum",
        ],
        why: "decisions are pure: the caller passes `now` and every observation",
    },
    Rule {
        layer: "mover",
        forbidden: &[
            "crate::controller",
            "crate::plan",
            "crate::runtime",
            "crate::cli",
            "kube::Client",
            "kube::Api",
            "kube::api",
            "kube::runtime",
            "prometheus_client",
            "axum",
        ],
        why: "the mover runs in a Job on the ESC domain's types: no controller, no API client",
    },
    Rule {
        layer: "controller",
        forbidden: &["crate::runtime", "crate::cli", "axum"],
        why: "controllers do not depend on the process around them",
    },
    Rule {
        layer: "runtime",
        forbidden: &["crate::cli"],
        why: "nothing imports the command line",
    },
];

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("read {}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Code lines only: comments and doc comments may name anything.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter_map(|(i, line)| {
        let code = line.split("//").next().unwrap_or("");
        (!code.trim().is_empty()).then_some((i + 1, code))
    })
}

/// `needle` as a whole path or name: `EscNode` does not match `EscNodeStatus`, `tokio` does not
/// match `my_tokio`.
fn contains_path(line: &str, needle: &str) -> bool {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    line.match_indices(needle).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + needle.len()..].chars().next();
        let starts_ok = !needle.starts_with(ident) || before.is_none_or(|c| !ident(c));
        let ends_ok = !needle.ends_with(ident) || after.is_none_or(|c| !ident(c));
        starts_ok && ends_ok
    })
}

fn violations(root: &Path, rules: &[Rule]) -> Vec<String> {
    let mut found = Vec::new();
    for rule in rules {
        for file in rust_files(&root.join("src").join(rule.layer)) {
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in code_lines(&text) {
                for needle in rule.forbidden {
                    if contains_path(line, needle) {
                        found.push(format!(
                            "{}:{n}: `{needle}` in {}: {} — {}",
                            file.strip_prefix(root).unwrap().display(),
                            rule.layer,
                            line.trim(),
                            rule.why
                        ));
                    }
                }
            }
        }
    }
    found
}

#[test]
fn every_layer_imports_only_downward() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let found = violations(root, RULES);
    assert!(
        found.is_empty(),
        "imports against the direction:\n{}",
        found.join("\n")
    );
}

#[test]
fn nothing_but_the_binary_imports_cli() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    for dir in [
        "src",
        "tests",
        "examples",
        "esc-sim/src",
        "tests/support/src",
    ] {
        for file in rust_files(&root.join(dir)) {
            let rel = file.strip_prefix(root).unwrap();
            if rel.starts_with("src/cli")
                || rel == Path::new("src/main.rs")
                || rel == Path::new("src/lib.rs")
                || rel == Path::new("tests/layering.rs")
            {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in code_lines(&text) {
                if line.contains("crate::cli") || line.contains("esc_operator::cli") {
                    found.push(format!("{}:{n}: {}", rel.display(), line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "only src/main.rs may use cli:\n{}",
        found.join("\n")
    );
}

/// The check itself can fail: a planted import against the direction is caught.
#[test]
fn a_planted_violation_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("src/plan");
    std::fs::create_dir_all(&plan).unwrap();
    std::fs::write(
        plan.join("bad.rs"),
        "// tokio in a comment is fine\nuse tokio::time::sleep;\n",
    )
    .unwrap();
    let found = violations(dir.path(), &RULES[2..3]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("src/plan/bad.rs:2"), "{found:?}");
}
