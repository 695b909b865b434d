use std::process::ExitCode;

// glibc's allocator showed up as ~13% of the leader's CPU under load (many small, short-lived
// allocations across threads); mimalloc serves those from thread-local pages.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    flotilla_node::cli::run_from_args(std::env::args_os().skip(1).collect())
}
