//! The one binary of esc-operator; everything it does is in `esc_operator::cli`.

fn main() -> std::process::ExitCode {
    esc_operator::cli::main()
}
