//! The event-loop server: one thread, one mio `Poll`. See `--help`.

fn main() -> std::process::ExitCode {
    nonblocking::cli::set_program_name(env!("CARGO_BIN_NAME"));
    nonblocking::app::server_main(nonblocking::app::Model::Reactor)
}
