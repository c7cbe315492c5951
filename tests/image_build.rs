//! The operator image as CI and the test node get it: `tools/image/build.sh` builds it (release
//! binary, mmdebstrap base, the Dockerfile's runtime stage with buildah) and `tools/image/check.sh`
//! checks the OCI archive — name, OCI labels against Cargo.toml, user 65532, entrypoint, contents,
//! size, and `esc-operator version` run inside the unpacked image as UID 65532.
//!
//! The checks live in the shell script so a person (or CI) can run them on any archive; this test
//! makes them part of `cargo test` and fails with the script's report.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

#[test]
fn image_archive_passes_check_sh() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(repo.join("tools/image/check.sh"))
        .current_dir(repo)
        .output()
        .expect("run tools/image/check.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    println!("build + check: {:.1?}", started.elapsed());
    assert!(
        out.status.success(),
        "tools/image/check.sh failed ({}):\n{}",
        out.status,
        stdout
            .lines()
            .filter(|l| l.starts_with("not ok"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let closing = stdout.lines().last().unwrap_or_default();
    assert!(
        closing.ends_with(" passed, 0 failed"),
        "unexpected closing line: {closing}"
    );
}
