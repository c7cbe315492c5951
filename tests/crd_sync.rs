//! `crds/` holds exactly what `esc-operator crd` generates: never edited by hand, never stale.

use std::path::Path;

#[test]
fn committed_crds_match_the_generated_ones() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let crds = esc_operator::api::crds();
    let mut expected_files = Vec::new();
    for crd in &crds {
        let name = crd.metadata.name.as_deref().unwrap();
        let file = dir.join(format!("{name}.yaml"));
        let generated = esc_operator::api::crds_yaml(std::slice::from_ref(crd)).unwrap();
        let committed = std::fs::read_to_string(&file).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run `esc-operator crd --out-dir crds`",
                file.display()
            )
        });
        assert!(
            committed == generated,
            "{} is stale: run `cargo run -- crd --out-dir crds` and commit the result",
            file.display()
        );
        expected_files.push(format!("{name}.yaml"));
    }
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    present.sort();
    expected_files.sort();
    assert_eq!(
        present, expected_files,
        "crds/ holds files the code does not generate"
    );
}

#[test]
fn the_crd_command_prints_every_kind() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_esc-operator"))
        .arg("crd")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for kind in [
        "kind: EscCluster",
        "kind: EscBackup",
        "kind: EscRestore",
        "kind: EscBackupSchedule",
    ] {
        assert!(text.contains(kind), "missing {kind}");
    }
    assert_eq!(text.matches("kind: CustomResourceDefinition").count(), 4);
}

/// The chart ships the same CRDs (Helm installs them from its `crds/`).
#[test]
fn the_charts_crds_are_the_generated_ones() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let list = |dir: &Path| {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        files.sort();
        files
    };
    let (crds, chart) = (root.join("crds"), root.join("charts/esc-operator/crds"));
    assert_eq!(
        list(&crds),
        list(&chart),
        "charts/esc-operator/crds/ differs from crds/"
    );
    for file in list(&crds) {
        assert!(
            std::fs::read(crds.join(&file)).unwrap() == std::fs::read(chart.join(&file)).unwrap(),
            "charts/esc-operator/crds/{} is stale: run `cargo run -- crd --out-dir charts/esc-operator/crds`",
            file.to_string_lossy()
        );
    }
}
