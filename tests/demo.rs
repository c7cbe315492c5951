//! The README's main job, run non-interactively: the same code as `tools/demo.sh` (the `demo`
//! example), and its report's claims checked against the simulator's journal and MinIO
//! directly, not taken from the report.

#[path = "../examples/demo/run.rs"]
#[allow(dead_code)]
mod run;

use anyhow::Result;
use esc_testbed::sshd::What;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_main_job_backs_up_and_restores_and_its_report_holds() -> Result<()> {
    let mut demo = run::start().await?;
    let report = demo.run().await?;
    let text = run::render(&report, demo.kubeconfig());
    eprintln!("{text}");
    assert!(run::all_good(&report), "{text}");

    // MinIO, read here: the object is the artifact the report names.
    let s3 = demo.s3.as_ref().expect("MinIO runs");
    let bytes = s3.get_object(run::BUCKET, &report.key).await?;
    assert_eq!(bytes.len() as u64, report.artifact_size);
    use sha2::Digest;
    let sha: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(sha, report.artifact_sha256);
    assert_eq!(s3.list_multipart_uploads(run::BUCKET).await?, []);

    // The journal, read here: the manual's order for both operations, one window each.
    let journal: Vec<String> = demo
        .sim
        .journal()?
        .commands(None)
        .iter()
        .filter_map(|e| match &e.what {
            What::Command {
                command,
                args,
                exit: 0,
                ..
            } => {
                // The simulator journals escadm's subcommand and the whole argument list.
                let word = match command.as_str() {
                    "op_mode set" if args.iter().any(|a| a.contains("maintenance")) => {
                        "set-maintenance"
                    }
                    "op_mode set" => "set-operation",
                    "log collect" => "log-collect",
                    "backup" | "stop" | "restore" | "restart" => command.as_str(),
                    _ => return None,
                };
                Some(format!("{}:{word}", e.node))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        journal, report.journal,
        "the report's journal is the journal"
    );
    assert_eq!(
        journal,
        [
            "esc-b:log-collect",
            "esc-a:set-maintenance",
            "esc-a:backup",
            "esc-a:set-operation",
            "esc-a:log-collect",
            "esc-a:set-maintenance",
            "esc-b:stop",
            "esc-a:stop",
            "esc-a:restore",
            "esc-a:restart",
            "esc-b:restart",
            "esc-a:set-operation",
        ]
    );
    let modes = demo.sim.journal()?.mode_changes();
    assert_eq!(
        modes.last().map(|m| m.2),
        Some(esc_testbed::sshd::Mode::Operation)
    );
    demo.stop_s3();
    Ok(())
}
