//! One binary, two names: `escadm` (the simulated ESC tool, run through a node's sshd) and
//! `esc-sim` (the CLI that creates, inspects and faults nodes, and `up` for the demo).

fn main() {
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_default();
    let name = std::path::Path::new(&argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let code = if name == "escadm" {
        esc_sim::escadm::main(args.collect())
    } else {
        esc_sim::cli::main()
    };
    std::process::exit(code);
}
