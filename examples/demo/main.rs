//! `cargo run --release --example demo` (what `tools/demo.sh` runs): the main job — a full backup
//! and restore of a simulated ESC HA pair on a local test bed, live in the terminal, then a
//! report whose every claim is checked. Ctrl-C stops it and cleans up; `--keep` leaves it all
//! running until Ctrl-C and prints how to explore it.

mod run;

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(about = "A full ESC backup and restore through esc-operator on a local test bed")]
struct Args {
    /// After the report, leave everything running (until Ctrl-C) and print how to explore it.
    #[arg(long)]
    keep: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        tokio::select! {
            code = demo(args.keep) => code,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("\ninterrupted: stopping everything the demo started");
                ExitCode::from(130)
            }
        }
    })
    // Dropping what the demo started (the select dropped its future) stopped the test bed.
}

async fn demo(keep: bool) -> ExitCode {
    let mut demo = match run::start().await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let report = match demo.run().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", run::render(&report, demo.kubeconfig()));
    let ok = run::all_good(&report);
    if keep {
        println!(
            "Left running until Ctrl-C. Explore with:\n  export KUBECONFIG={}\n  kubectl -n {ns} get esc,escbackup,escrestore\n  kubectl esc -n {ns} status esc      (kubectl-esc linked onto the PATH; or: cargo run -- kubectl-esc ...)\n  kubectl esc -n {ns} backups\n  curl -s {metrics} | grep ^esc_",
            demo.kubeconfig().display(),
            ns = report.namespace,
            metrics = demo.metrics_url
        );
        std::future::pending::<()>().await;
    }
    demo.stop_s3();
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
