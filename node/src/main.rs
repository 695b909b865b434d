use std::process::ExitCode;

fn main() -> ExitCode {
    flotilla_node::cli::run_from_args(std::env::args_os().skip(1).collect())
}
