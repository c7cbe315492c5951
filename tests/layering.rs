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
        layer: "mover/request.rs",
        forbidden: &[
            "tokio",
            "russh",
            "russh_sftp",
            "aws_sdk_s3",
            "crate::mover::sink",
            "crate::mover::backup",
            "crate::mover::stage",
        ],
        why: "the request is the contract the controller writes: data and checks, no I/O",
    },
    Rule {
        layer: "mover/report.rs",
        forbidden: &[
            "tokio",
            "russh",
            "russh_sftp",
            "aws_sdk_s3",
            "crate::mover::sink",
            "crate::mover::backup",
            "crate::mover::stage",
        ],
        why: "the report is the contract the controller reads: data, no I/O but a printed line",
    },
    Rule {
        layer: "mover/sink",
        forbidden: &[
            "crate::mover::backup",
            "crate::mover::stage",
            "crate::mover::report",
        ],
        why: "a sink stores and reads bytes; the runs and their report are above it",
    },
    Rule {
        layer: "controller",
        forbidden: &["crate::runtime", "crate::cli", "axum"],
        why: "controllers do not depend on the process around them",
    },
    Rule {
        layer: "plan/cron.rs",
        forbidden: &["kube", "k8s_openapi", "crate::api", "crate::esc", "serde"],
        why: "cron text and time zones in, instants out: no resource types, so the rules of \
              time can be read and tested alone",
    },
    Rule {
        layer: "runtime",
        forbidden: &["crate::cli"],
        why: "nothing imports the command line",
    },
];

/// The Rust files under `dir`, or `dir` itself when a rule names one file.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    if dir.is_file() {
        return vec![dir.to_path_buf()];
    }
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

/// `module → modules it names as crate::X`, for the top-level modules of the crate in `src`.
fn module_graph(
    src: &Path,
) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let mut graph: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for file in rust_files(src) {
        let rel = file.strip_prefix(src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .into_owned();
        let module = first.trim_end_matches(".rs").to_owned();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let edges = graph.entry(module.clone()).or_default();
        for (_, line) in code_lines(&text) {
            for (at, _) in line.match_indices("crate::") {
                let target: String = line[at + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !target.is_empty() && target != module {
                    edges.insert(target);
                }
            }
        }
    }
    graph
}

/// A cycle in `graph`, if there is one, as the path that closes it.
fn find_cycle(
    graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = Default::default();
    graph
        .keys()
        .find_map(|k| visit(k, graph, &mut Vec::new(), &mut done))
}

/// No import circle between the top-level modules of the operator or of the simulator (the
/// simulator's model renders nothing; its formats module renders the model).
#[test]
fn no_import_circle_between_modules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for src in ["src", "esc-sim/src"] {
        let graph = module_graph(&root.join(src));
        assert!(graph.len() > 3, "{src}: read too little: {graph:?}");
        if let Some(cycle) = find_cycle(&graph) {
            panic!("{src}: import circle {}", cycle.join(" → "));
        }
    }
}

#[test]
fn a_planted_circle_is_found() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.rs"), "use crate::formats::x;\n").unwrap();
    std::fs::write(dir.path().join("formats.rs"), "use crate::model::Mode;\n").unwrap();
    std::fs::write(
        dir.path().join("store.rs"),
        "// crate::model in a comment\n",
    )
    .unwrap();
    let graph = module_graph(dir.path());
    let cycle = find_cycle(&graph).expect("a cycle");
    assert_eq!(cycle.first(), cycle.last());
    assert!(
        cycle.contains(&"model".to_owned()) && cycle.contains(&"formats".to_owned()),
        "{cycle:?}"
    );
    assert!(graph["store"].is_empty(), "comments are not imports");
}

/// A rule may name one file: the mover's contract stays free of I/O.
#[test]
fn a_planted_violation_in_a_single_file_rule_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let mover = dir.path().join("src/mover");
    std::fs::create_dir_all(&mover).unwrap();
    std::fs::write(mover.join("request.rs"), "use tokio::fs::read;\n").unwrap();
    let rules: Vec<&Rule> = RULES
        .iter()
        .filter(|r| r.layer == "mover/request.rs")
        .collect();
    assert_eq!(rules.len(), 1);
    let found = violations(dir.path(), std::slice::from_ref(rules[0]));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("src/mover/request.rs:1"), "{found:?}");
}
